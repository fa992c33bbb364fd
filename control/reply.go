//go:build linux

package control

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tendinit/tend/api"
)

// maxBody is the largest request body accepted.
const maxBody = 1 << 20

// decode reads r's body, one JSON value, into v. Unknown fields, trailing
// data and bodies over maxBody are refused; an empty body leaves v alone
// when emptyOK. Reading is under the deadline front set; it is lifted once
// the whole body is read, and kept after a failure, because net/http then
// reads and discards the rest of the body, and must not wait for it forever.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) (err error) {
	defer func() {
		var se *api.StatusError
		switch {
		case err == nil:
			_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		case errors.As(err, &se) && (se.Code == http.StatusRequestEntityTooLarge || se.Code == http.StatusRequestTimeout):
			// The rest of the body is still on its way: never parse it as
			// a request. (MaxBytesReader would say so itself, but cannot
			// see net/http's response through front's statusWriter.)
			w.Header().Set("Connection", "close")
		}
	}()
	if r.ContentLength > maxBody {
		// Refused before a byte of it is read.
		return api.Errorf(http.StatusRequestEntityTooLarge, "body is %d bytes: the limit is %d", r.ContentLength, maxBody)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if emptyOK && errors.Is(err, io.EOF) {
			return nil
		}
		return bodyError(err, s.cfg.IOTimeout)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return api.Errorf(http.StatusBadRequest, "body: trailing data after the JSON value")
	default:
		var big *http.MaxBytesError
		if errors.As(err, &big) || isTimeout(err) {
			return bodyError(err, s.cfg.IOTimeout)
		}
		return api.Errorf(http.StatusBadRequest, "body: trailing data after the JSON value")
	}
}

// bodyError says what was wrong with a body json could not decode.
func bodyError(err error, timeout time.Duration) *api.StatusError {
	var (
		big *http.MaxBytesError
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &big):
		return api.Errorf(http.StatusRequestEntityTooLarge, "body over %d bytes", big.Limit)
	case isTimeout(err):
		return api.Errorf(http.StatusRequestTimeout, "body not received within %v", timeout)
	case errors.Is(err, io.EOF):
		return api.Errorf(http.StatusBadRequest, "body: empty, want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return api.Errorf(http.StatusBadRequest, "body: JSON ends early")
	case errors.As(err, &syn):
		return api.Errorf(http.StatusBadRequest, "body: malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		return api.Errorf(http.StatusBadRequest, "body: %s must be %v, not a JSON %s", field, typ.Type, typ.Value)
	default: // "json: unknown field \"x\"" has no error type of its own
		return api.Errorf(http.StatusBadRequest, "body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// reply writes v as the JSON answer with code, under a write deadline: a
// client that does not read can never hold tend. The deadline counts from
// the body's read deadline if that is later: before the answer goes out,
// net/http discards a body the handler left unread, until then at most.
func (s *Server) reply(w http.ResponseWriter, code int, v any) {
	start := time.Now()
	if sw, ok := w.(*statusWriter); ok && sw.bodyDeadline.After(start) {
		start = sw.bodyDeadline
	}
	_ = http.NewResponseController(w).SetWriteDeadline(start.Add(s.cfg.IOTimeout))
	if v == nil {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // an error means the client left
}

// fail answers err: an *api.StatusError with its code and message, anything
// else with 500 (and a log line, as it is tend's fault).
func (s *Server) fail(w http.ResponseWriter, err error) {
	var se *api.StatusError
	if !errors.As(err, &se) {
		s.cfg.Log.Error("control request failed", "err", err)
		se = api.Errorf(http.StatusInternalServerError, "internal error: %v", err)
	}
	s.reply(w, se.Code, api.Error{Error: se.Msg})
}
