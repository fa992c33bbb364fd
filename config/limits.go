//go:build linux

package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxPids is the largest pids_max: the kernel's PID_MAX_LIMIT (4,194,304
// on 64-bit), above which pids.max answers EINVAL (kernel/cgroup/pids.c).
const MaxPids = 1 << 22

// sizeSuffixes are memory_max's units, IEC powers of 1024.
var sizeSuffixes = map[byte]uint{'K': 10, 'M': 20, 'G': 30, 'T': 40}

// limitMax is the word for "no limit", as the kernel's own files say it.
const limitMax = "max"

// ParseMemoryMax reads a memory_max value, from TOML or a job request: an
// integer number of bytes (>= 1), a string of digits with an optional K,
// M, G or T suffix (powers of 1024: "32M" is 33554432), or "max" for no
// limit, which is NoLimit. Anything else is an error saying what is wanted.
func ParseMemoryMax(v any) (int64, error) {
	const want = `want bytes: an integer, a string such as "512M" (suffixes K, M, G, T: powers of 1024), or "max"`
	switch v := v.(type) {
	case int64:
		if v < 1 {
			return 0, fmt.Errorf("%d is not a size in bytes: %s", v, want)
		}
		return v, nil
	case string:
		if v == limitMax {
			return NoLimit, nil
		}
		digits, shift := v, uint(0)
		if n := len(v); n > 0 {
			if s, ok := sizeSuffixes[v[n-1]]; ok {
				digits, shift = v[:n-1], s
			}
		}
		if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
			return 0, fmt.Errorf("%q is not a size: %s", v, want)
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n > math.MaxInt64>>shift {
			return 0, fmt.Errorf("%q is too large", v)
		}
		if n == 0 {
			return 0, fmt.Errorf("%q is no memory at all: %s", v, want)
		}
		return n << shift, nil
	}
	return 0, fmt.Errorf("must be an integer or a string, not %s", tomlType(v))
}

// ParsePidsMax reads a pids_max value: an integer from 1 to MaxPids, or
// "max" for no limit (NoLimit).
func ParsePidsMax(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		if v < 1 || v > MaxPids {
			return 0, fmt.Errorf("%d is not a number of tasks from 1 to %d (or \"max\")", v, MaxPids)
		}
		return v, nil
	case string:
		if v == limitMax {
			return NoLimit, nil
		}
		return 0, fmt.Errorf("%q is not an integer from 1 to %d or \"max\"", v, MaxPids)
	}
	return 0, fmt.Errorf("must be an integer or \"max\", not %s", tomlType(v))
}

// limit reads memory_max or pids_max at key with parse; absent is def.
func (t *table) limit(key string, def int64, parse func(any) (int64, error)) int64 {
	v, present := t.get(key)
	if !present {
		return def
	}
	if s, ok := v.(string); ok && strings.IndexByte(s, 0) >= 0 {
		t.errorf(key, "contains a NUL byte")
		return def
	}
	n, err := parse(v)
	if err != nil {
		t.errorf(key, "%w", err)
		return def
	}
	return n
}

// FormatBytes writes a memory_max for people: "32M" where it is a whole
// number of MiB (or KiB, GiB, TiB), else the bytes.
func FormatBytes(n int64) string {
	if n == NoLimit {
		return limitMax
	}
	for _, u := range []struct {
		c     byte
		shift uint
	}{{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + string(u.c)
		}
	}
	return strconv.FormatInt(n, 10)
}
