//go:build linux

package config

import (
	"bytes"
	"regexp"
	"strconv"
)

// bareKey is a TOML key that needs no quotes.
var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinPath appends key to a key path, quoting it when it is not bare, so
// that "a.b" = 1 is not mistaken for a.b = 1.
func joinPath(path, key string) string {
	if !bareKey.MatchString(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// scanLines finds the line of every table header and key in a document
// the decoder has already accepted, by key path as table readers name them
// ("service[1].restrt"). BurntSushi/toml v1.6 keeps key positions private,
// and its MetaData names the keys of every [[service]] alike, so tend finds
// them itself. Keys inside inline tables are not found: the line of their
// table stands in. On anything it does not understand the scan stops, and
// the keys after that point have no line.
func scanLines(src []byte) map[string]int {
	s := &scanner{src: src, line: 1}
	lines := map[string]int{}
	counts := map[string]int{} // elements so far of each array of tables
	table := ""                // path of the current table
	for s.blank(); s.i < len(s.src); s.blank() {
		line := s.line
		if s.has("[") {
			array := s.has("[[")
			if s.i++; array {
				s.i++
			}
			table = headerPath(s.keys(), array, counts, lines, line)
			s.toEOL() // the closing brackets and maybe a comment
			continue
		}
		path := table
		for _, k := range s.keys() {
			path = joinPath(path, k)
			record(lines, path, line)
		}
		if !s.has("=") {
			return lines
		}
		s.i++
		s.value()
	}
	return lines
}

// record keeps the first line seen for path: a table made implicitly by a
// dotted key ("env.A = 1") is where it first appears.
func record(lines map[string]int, path string, line int) {
	if _, ok := lines[path]; !ok {
		lines[path] = line
	}
}

// headerPath turns the keys of a [table] or [[array]] header on line into
// a path, giving each array of tables on the way the index of its latest
// element, and records the line of the path and of the tables it implies.
func headerPath(keys []string, array bool, counts, lines map[string]int, line int) string {
	path := ""
	for i, k := range keys {
		path = joinPath(path, k)
		n := counts[path]
		if array && i == len(keys)-1 {
			counts[path]++
			path += "[" + strconv.Itoa(n) + "]"
		} else if n > 0 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
		record(lines, path, line)
	}
	return path
}

// isBare reports whether c may be part of a bare key.
func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// scanner walks a TOML document byte by byte, counting lines.
type scanner struct {
	src  []byte
	i    int
	line int
}

// has reports whether the input at the cursor starts with p.
func (s *scanner) has(p string) bool {
	return s.i < len(s.src) && bytes.HasPrefix(s.src[s.i:], []byte(p))
}

// step moves past one byte.
func (s *scanner) step() {
	if s.i >= len(s.src) {
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
	}
	s.i++
}

// toEOL moves to the end of the line.
func (s *scanner) toEOL() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

// blank moves past whitespace, newlines and comments.
func (s *scanner) blank() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.step()
		case '#':
			s.toEOL()
		default:
			return
		}
	}
}

// keys reads a dotted key: a.b, "a b".c, 'a'.
func (s *scanner) keys() []string {
	var keys []string
	for {
		for s.has(" ") || s.has("\t") {
			s.i++
		}
		start := s.i
		switch {
		case s.has(`"`) || s.has("'"):
			s.str()
			raw := string(s.src[start+1 : min(s.i-1, len(s.src))])
			if s.src[start] == '"' {
				// TOML escapes are close to Go's; on the rest keep the raw text.
				if k, err := strconv.Unquote(`"` + raw + `"`); err == nil {
					raw = k
				}
			}
			keys = append(keys, raw)
		default:
			for s.i < len(s.src) && isBare(s.src[s.i]) {
				s.i++
			}
			if s.i == start {
				return keys
			}
			keys = append(keys, string(s.src[start:s.i]))
		}
		for s.has(" ") || s.has("\t") {
			s.i++
		}
		if !s.has(".") {
			return keys
		}
		s.i++
	}
}

// value moves past a value, which may span lines inside arrays, inline
// tables (TOML 1.1) and multi-line strings, and past a trailing comment.
func (s *scanner) value() {
	depth := 0
	for s.i < len(s.src) {
		switch c := s.src[s.i]; c {
		case '\n':
			if depth <= 0 {
				return
			}
			s.step()
		case '#':
			s.toEOL()
		case '"', '\'':
			s.str()
		case '[', '{':
			depth++
			s.i++
		case ']', '}':
			depth--
			s.i++
		default:
			s.i++
		}
	}
}

// str moves past a string of any of TOML's four kinds.
func (s *scanner) str() {
	q := s.src[s.i]
	basic := q == '"'
	if triple := string([]byte{q, q, q}); s.has(triple) {
		for s.i += 3; s.i < len(s.src) && !s.has(triple); s.step() {
			if basic && s.src[s.i] == '\\' {
				s.step() // the escaped byte is stepped over below
			}
		}
		s.i += 3
		// Up to two quotes may end the content right before the delimiter.
		for n := 0; n < 2 && s.i < len(s.src) && s.src[s.i] == q; n++ {
			s.i++
		}
		return
	}
	for s.i++; s.i < len(s.src) && s.src[s.i] != q && s.src[s.i] != '\n'; s.i++ {
		if basic && s.src[s.i] == '\\' {
			s.i++
		}
	}
	s.i++
}
