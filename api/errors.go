//go:build linux

package api

import "fmt"

// StatusError is an answer with an HTTP status and a message: the server's
// packages return it to say which status a failure gets, and the client
// returns it for every non-2xx answer.
type StatusError struct {
	Code int    // HTTP status, e.g. 404
	Msg  string // what was wrong, for a person
}

func (e *StatusError) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Msg) }

// Errorf returns a *StatusError with a formatted message.
func Errorf(code int, format string, args ...any) *StatusError {
	return &StatusError{Code: code, Msg: fmt.Sprintf(format, args...)}
}
