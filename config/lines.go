//go:build linux

package config

import (
	"bytes"
	"strconv"
	"strings"
)

// bareKey reports whether key is a TOML key that needs no quotes. (A loop,
// not a regexp: package-level regexps compile at every start of tend,
// init mode included.)
func bareKey(key string) bool { return key != "" && onlyOf(key, "_-") }

// onlyOf reports whether s holds only ASCII letters, digits and bytes of
// extra.
func onlyOf(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// joinPath appends key to a key path, quoting it when it is not bare, so
// that "a.b" = 1 is not mistaken for a.b = 1.
func joinPath(path, key string) string {
	if !bareKey(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// elemPath is the path of element i of the array at path: "service[0]".
func elemPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// pos is a place in the file: a 1-based line and a 1-based byte column
// (counted after a UTF-8 BOM on line 1), as toml.ParseError counts them.
// The zero pos is unknown.
type pos struct{ line, col int }

// scanPositions finds the position of every table header, key and array
// element in a document the decoder has already accepted, by key path as
// table readers name them: "service[1].restrt", "service[0].env.HOME",
// "service[0].command[2]". BurntSushi/toml v1.6 keeps key positions
// private, and its MetaData names the keys of every [[service]] alike, so
// tend finds them itself. A header's tables are at its first '['; a key is
// at its first byte, and so is an element. On anything it does not
// understand the scan stops, and whatever comes after has no position.
func scanPositions(src []byte) map[string]pos {
	s := &scanner{src: src, line: 1, at: map[string]pos{}, counts: map[string]int{}}
	if bytes.HasPrefix(src, []byte("\xef\xbb\xbf")) { // the decoder skips it too
		s.i, s.lineStart = 3, 3
	}
	table := "" // path of the current table
	for s.blank(); s.i < len(s.src) && !s.failed; s.blank() {
		if s.has("[") {
			at := s.pos()
			array := s.has("[[")
			if s.i++; array {
				s.i++
			}
			table = s.header(s.keys(), array, at)
			s.toEOL() // the closing brackets and maybe a comment
			continue
		}
		s.keyValue(table)
	}
	return s.at
}

// scanner walks a TOML document byte by byte, counting lines, and records
// positions by key path.
type scanner struct {
	src       []byte
	i         int
	line      int
	lineStart int // offset of the current line's first byte
	failed    bool

	at     map[string]pos
	counts map[string]int // elements so far of each array of tables
}

// key is one part of a dotted key and where it starts.
type key struct {
	name string
	at   pos
}

// pos is the position of the cursor.
func (s *scanner) pos() pos { return pos{s.line, s.i - s.lineStart + 1} }

// record keeps the first position seen for path: a table made implicitly
// by a dotted key ("env.A = 1") is where it first appears.
func (s *scanner) record(path string, at pos) {
	if _, ok := s.at[path]; !ok {
		s.at[path] = at
	}
}

// header turns the keys of a [table] or [[array]] header at at into a
// path, giving each array of tables on the way the index of its latest
// element, and records the position of the path and of the tables it
// implies.
func (s *scanner) header(keys []key, array bool, at pos) string {
	path := ""
	for i, k := range keys {
		path = joinPath(path, k.name)
		s.record(path, at) // an array of tables is where it first appears
		n := s.counts[path]
		if array && i == len(keys)-1 {
			s.counts[path]++
			path = elemPath(path, n)
		} else if n > 0 {
			path = elemPath(path, n-1)
		}
		s.record(path, at)
	}
	return path
}

// keyValue reads key = value in the table at path, recording the key and
// whatever the value holds.
func (s *scanner) keyValue(path string) {
	keys := s.keys()
	for _, k := range keys {
		path = joinPath(path, k.name)
		s.record(path, k.at)
	}
	if len(keys) == 0 || !s.has("=") {
		s.failed = true
		return
	}
	s.i++
	s.spaces()
	s.value(path)
}

// value moves past the value of path: a string, a scalar, or an array or
// inline table, whose elements and keys it records.
func (s *scanner) value(path string) {
	switch {
	case s.has(`"`) || s.has("'"):
		s.str()
	case s.has("["):
		s.array(path)
	case s.has("{"):
		s.inline(path)
	default: // numbers, booleans, dates: a date-time may hold a space
		for s.i < len(s.src) && bytes.IndexByte([]byte(",]}#\n"), s.src[s.i]) < 0 {
			s.i++
		}
	}
}

// array moves past an array, which may span lines and hold comments,
// recording each element as path[i].
func (s *scanner) array(path string) {
	s.i++ // [
	for n := 0; !s.failed; n++ {
		if s.blank(); s.has("]") {
			s.i++
			return
		}
		elem := elemPath(path, n)
		s.record(elem, s.pos())
		s.value(elem)
		if s.blank(); !s.more(']') {
			return
		}
	}
}

// inline moves past an inline table, which TOML 1.1 lets span lines and
// hold comments, recording its keys.
func (s *scanner) inline(path string) {
	s.i++ // {
	for !s.failed {
		if s.blank(); s.has("}") {
			s.i++
			return
		}
		s.keyValue(path)
		if s.blank(); !s.more('}') {
			return
		}
	}
}

// more moves past the comma before another element and reports true, or
// past the closing end and reports false; on anything else the scan fails.
func (s *scanner) more(end byte) bool {
	switch {
	case s.has(","):
		s.i++
		return true
	case s.i < len(s.src) && s.src[s.i] == end:
		s.i++
		return false
	}
	s.failed = true
	return false
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
		s.lineStart = s.i + 1
	}
	s.i++
}

// toEOL moves to the end of the line.
func (s *scanner) toEOL() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

// spaces moves past blanks within the line.
func (s *scanner) spaces() {
	for s.has(" ") || s.has("\t") {
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

// isBare reports whether c may be part of a bare key.
func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// keys reads a dotted key: a.b, "a b".c, 'a'.
func (s *scanner) keys() []key {
	var keys []key
	for {
		s.spaces()
		start, at := s.i, s.pos()
		switch {
		case s.has(`"`) || s.has("'"):
			s.str()
			raw := string(s.src[start+1 : max(start+1, min(s.i-1, len(s.src)))])
			if s.src[start] == '"' {
				// TOML escapes are close to Go's; on the rest keep the raw text.
				if k, err := strconv.Unquote(`"` + raw + `"`); err == nil {
					raw = k
				}
			}
			keys = append(keys, key{raw, at})
		default:
			for s.i < len(s.src) && isBare(s.src[s.i]) {
				s.i++
			}
			if s.i == start {
				return keys
			}
			keys = append(keys, key{string(s.src[start:s.i]), at})
		}
		s.spaces()
		if !s.has(".") {
			return keys
		}
		s.i++
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
