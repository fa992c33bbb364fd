//go:build linux

package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
)

// decoder collects the errors of one Parse call.
type decoder struct {
	source string
	opts   Options
	at     map[string]pos    // key path -> position, from scanPositions
	errs   *multierror.Error // every problem found so far, each a *Problem
}

// table reads one TOML table by hand. It remembers the keys it was asked
// for, so that whatever is left over is an unknown key (what the decoder's
// MetaData.Undecoded would report, but exact in case and with the index of
// each [[service]]).
type table struct {
	d     *decoder
	path  string // key path: "service[1].env"; "" for the root
	label string // how errors name it: `service "gateway"`, "jobs"
	at    pos    // of the table itself
	m     map[string]any
	seen  map[string]bool
}

// root returns a reader of the whole document.
func (d *decoder) root(m map[string]any) *table {
	return &table{d: d, m: m, seen: map[string]bool{}}
}

// keyPath is the full key path of key in t.
func (t *table) keyPath(key string) string { return joinPath(t.path, key) }

// posOf is the position of key in t, or that of t when the key has none.
func (t *table) posOf(key string) pos {
	if at, ok := t.d.at[t.keyPath(key)]; ok {
		return at
	}
	return t.at
}

// elemPos is the position of element i of the array at key in t, or that
// of the key when the element has none.
func (t *table) elemPos(key string, i int) pos {
	if at, ok := t.d.at[elemPath(t.keyPath(key), i)]; ok {
		return at
	}
	return t.posOf(key)
}

// errorf records an error about key of t, at the key.
func (t *table) errorf(key, format string, args ...any) {
	t.errorAt(t.posOf(key), key, format, args...)
}

// errorAt records an error about key of t at at, naming t and the key.
func (t *table) errorAt(at pos, key, format string, args ...any) {
	err := fmt.Errorf(format, args...)
	switch {
	case t.label == "":
		err = fmt.Errorf("%s: %w", key, err)
	case key == "":
		err = fmt.Errorf("%s: %w", t.label, err)
	default:
		err = fmt.Errorf("%s: %s: %w", t.label, key, err)
	}
	t.d.report(at, err)
}

// get returns the value of key and marks it as known.
func (t *table) get(key string) (any, bool) {
	t.seen[key] = true
	v, ok := t.m[key]
	return v, ok
}

// typeErr records that key holds the wrong type of value.
func (t *table) typeErr(key, want string, v any) {
	t.errorf(key, "must be %s, not %s", want, tomlType(v))
}

// str returns the string at key; ok is false when it is absent, not a
// string, or holds a NUL byte, which no system call takes in a string
// (execve(2), chdir(2) and the rest would fail with EINVAL, and bind(2)
// would cut a socket path short).
func (t *table) str(key string) (s string, ok bool) {
	v, present := t.get(key)
	if !present {
		return "", false
	}
	if s, ok = v.(string); !ok {
		t.typeErr(key, "a string", v)
	} else if strings.IndexByte(s, 0) >= 0 {
		t.errorf(key, "contains a NUL byte")
		return "", false
	}
	return s, ok
}

// boolean returns the boolean at key, or false.
func (t *table) boolean(key string) bool {
	v, present := t.get(key)
	if !present {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		t.typeErr(key, "true or false", v)
	}
	return b
}

// integer returns the integer at key, or def when it is absent, refusing
// values below least.
func (t *table) integer(key string, def, least int) int {
	v, present := t.get(key)
	if !present {
		return def
	}
	n, ok := v.(int64)
	if !ok {
		t.typeErr(key, "an integer", v)
		return def
	}
	if n < int64(least) {
		t.errorf(key, "%d is less than %d", n, least)
		return def
	}
	if n > math.MaxInt32 { // no limit here needs more; keeps int conversions safe
		t.errorf(key, "%d is too large", n)
		return def
	}
	return int(n)
}

// strs returns the array of strings at key, or nil when it is absent or
// refused. Each element is refused with a NUL byte, as str refuses one.
func (t *table) strs(key string) []string {
	v, present := t.get(key)
	if !present {
		return nil
	}
	arr, ok := v.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, isStr := e.(string)
		ok = ok && isStr
		out = append(out, s)
	}
	if !ok {
		t.typeErr(key, "an array of strings", v)
		return nil
	}
	for i, s := range out {
		if strings.IndexByte(s, 0) >= 0 {
			t.errorAt(t.elemPos(key, i), elemPath(key, i), "contains a NUL byte")
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return out
}

// codes returns the array of exit codes (0-255) at key, or nil.
func (t *table) codes(key string) []int {
	v, present := t.get(key)
	if !present {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		t.typeErr(key, "an array of exit codes", v)
		return nil
	}
	out := make([]int, 0, len(arr))
	for i, e := range arr {
		n, isInt := e.(int64)
		if !isInt || n < 0 || n > 255 {
			t.errorAt(t.elemPos(key, i), key, "exit code %v is not an integer in 0-255", e)
			continue
		}
		out = append(out, int(n))
	}
	return out
}

// duration returns the duration at key, or def when it is absent. A
// duration is a string for time.ParseDuration ("1m30s", or "0"); negative
// durations are refused, and so is zero when positive is set.
func (t *table) duration(key string, def time.Duration, positive bool) time.Duration {
	s, ok := t.str(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		t.errorf(key, "%w", err)
	case d < 0:
		t.errorf(key, "negative duration %q", s)
	case d == 0 && positive:
		t.errorf(key, "must be more than 0")
	default:
		return d
	}
	return def
}

// table returns a reader of the table at key; an absent key gives an empty one.
func (t *table) table(key string) *table {
	sub := &table{d: t.d, path: t.keyPath(key), label: t.keyPath(key), at: t.posOf(key), seen: map[string]bool{}}
	v, present := t.get(key)
	if !present {
		return sub
	}
	if sub.m, present = v.(map[string]any); !present {
		t.typeErr(key, "a table", v)
	}
	return sub
}

// tables returns readers of the array of tables at key ([[key]]).
func (t *table) tables(key string) []*table {
	v, present := t.get(key)
	if !present {
		return nil
	}
	arr, ok := v.([]map[string]any)
	if inline, isArr := v.([]any); isArr {
		// key = [{...}, {...}] decodes as a plain array.
		ok = true
		for _, e := range inline {
			m, isMap := e.(map[string]any)
			ok = ok && isMap
			arr = append(arr, m)
		}
	}
	if !ok {
		t.typeErr(key, "an array of tables ([["+key+"]])", v)
		return nil
	}
	out := make([]*table, len(arr))
	for i, m := range arr {
		p := elemPath(t.keyPath(key), i)
		out[i] = &table{d: t.d, path: p, label: p, at: t.elemPos(key, i), m: m, seen: map[string]bool{}}
	}
	return out
}

// unknown records every key of t that was never asked for, in sorted order.
func (t *table) unknown() {
	for _, k := range slices.Sorted(maps.Keys(t.m)) {
		if t.seen[k] {
			continue
		}
		hint := ""
		for known := range t.seen {
			if strings.EqualFold(known, k) { // keys are case-sensitive in TOML
				hint = fmt.Sprintf(" (did you mean %q?)", known)
			}
		}
		t.errorAt(t.posOf(k), joinPath("", k), "unknown key%s", hint)
	}
}

// tomlType names the TOML type of a decoded value, for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("a %T", v) // dates and times
	}
}
