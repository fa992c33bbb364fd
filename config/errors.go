//go:build linux

package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"
)

// Problem is one thing wrong with a config file and where it is. The error
// of Parse is a *multierror.Error of Problems in file order; errors.As
// finds a Problem's cause through it (a toml.ParseError for a syntax
// error, or the error of Options.CheckUser).
type Problem struct {
	File string // the source given to Parse
	Line int    // 1-based; 0 = unknown
	Col  int    // 1-based, in bytes as toml.ParseError counts; 0 = unknown
	// Err says what is wrong, after the table or service it is about and
	// the key: `service "web": restart: "sometimes" is not one of ...`.
	Err error
}

// Error is the problem as compilers print one: "FILE:LINE:COL: ERR".
func (p *Problem) Error() string {
	switch {
	case p.Line > 0 && p.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %v", p.File, p.Line, p.Col, p.Err)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %v", p.File, p.Line, p.Err)
	}
	return fmt.Sprintf("%s: %v", p.File, p.Err)
}

// Unwrap returns the cause.
func (p *Problem) Unwrap() error { return p.Err }

// perLine formats the problems of source one per line, under a line that
// counts them: a refused file is read by a person at a terminal, and each
// line can be jumped to (FILE:LINE:COL, as editors read compiler output).
// This is why config errors do not follow the one-line format of the rest
// of tend's collected errors. One problem is one line alone.
func perLine(source string) multierror.ErrorFormatFunc {
	return func(es []error) string {
		if len(es) == 1 {
			return es[0].Error()
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d errors in %s:", len(es), source)
		for _, err := range es {
			b.WriteString("\n" + err.Error())
		}
		return b.String()
	}
}

// report records err at at.
func (d *decoder) report(at pos, err error) {
	d.errs = multierror.Append(d.errs, &Problem{File: d.source, Line: at.line, Col: at.col, Err: err})
}

// reportf records an error at at that names its table or service itself.
func (d *decoder) reportf(at pos, format string, args ...any) {
	d.report(at, fmt.Errorf(format, args...))
}

// syntax records the decoder's error: a toml.ParseError has the position.
func (d *decoder) syntax(err error) {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		d.report(pos{}, err)
		return
	}
	at := pos{pe.Position.Line, pe.Position.Col}
	if at.line <= 0 { // the decoder knows no line for some errors at the end of the input
		at = pos{}
	}
	d.report(at, syntaxError{pe})
}

// syntaxError is a toml.ParseError without the line its Error starts with.
type syntaxError struct{ pe toml.ParseError }

// Error escapes control characters, which the decoder's messages may quote
// raw ('\x00'): a problem is one line of text.
func (e syntaxError) Error() string {
	msg := "toml: " + e.pe.Message
	if e.pe.LastKey != "" {
		msg += fmt.Sprintf(" (last key %q)", e.pe.LastKey)
	}
	var b strings.Builder
	for _, r := range msg {
		if r < 0x20 || r == 0x7f {
			fmt.Fprintf(&b, `\x%02x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (e syntaxError) Unwrap() error { return e.pe }

// result returns the problems found, sorted by position (those without one
// last), or nil.
func (d *decoder) result() error {
	slices.SortStableFunc(d.errs.Errors, func(a, b error) int {
		pa, pb := a.(*Problem), b.(*Problem)
		return cmpPos(pos{pa.Line, pa.Col}, pos{pb.Line, pb.Col})
	})
	return d.errs.ErrorOrNil()
}

// cmpPos orders positions in the file, with unknown ones after the rest.
func cmpPos(a, b pos) int {
	switch {
	case a == b:
		return 0
	case a.line == 0:
		return 1
	case b.line == 0:
		return -1
	case a.line != b.line:
		return a.line - b.line
	}
	return a.col - b.col
}
