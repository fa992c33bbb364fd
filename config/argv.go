//go:build linux

package config

import (
	"errors"
	"fmt"
	"strings"
)

// splitArgs splits a command line into argv the way sh(1) splits words,
// but with no expansion of any kind and no shell run: blanks separate
// words; '...' keeps everything in it as it is; "..." keeps everything but
// a backslash before " \ $ ` or a newline, which escapes it; outside quotes
// a backslash escapes the next character, and a backslash-newline joins
// lines. Quotes group: a"b c"d is the one word "ab cd", and empty quotes
// make an empty word.
func splitArgs(s string) ([]string, error) {
	var argv []string
	var word strings.Builder
	inWord := false // an empty quoted word still counts
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r':
			if inWord {
				argv = append(argv, word.String())
				word.Reset()
				inWord = false
			}
		case '\\':
			if i++; i == len(s) {
				return nil, fmt.Errorf("%q ends with a backslash", s)
			}
			if s[i] != '\n' {
				word.WriteByte(s[i])
				inWord = true
			}
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			word.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					if i++; s[i] == '\n' {
						continue
					}
				}
				word.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		argv = append(argv, word.String())
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return argv, nil
}
