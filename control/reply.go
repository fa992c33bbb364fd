//go:build linux

package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tendinit/tend/api"
)

// decode reads r's body, one JSON value, into v. Unknown fields, trailing
// data and bodies over [control] max_body_bytes are refused; an empty body leaves v alone
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
	limit := int64(s.cfg.Limits.MaxBodyBytes)
	if r.ContentLength > limit {
		// Refused before a byte of it is read.
		return api.Errorf(http.StatusRequestEntityTooLarge, "request body is %d bytes, over the limit of %d ([control] max_body_bytes)", r.ContentLength, limit)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
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
		return api.Errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes ([control] max_body_bytes)", big.Limit)
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

// What net/http writes, in one write to the connection and before any
// handler runs, when it refuses a request head (net/http's server.go,
// conn.serve): over http.Server.MaxHeaderBytes, or malformed, which is also
// what a head cut off by ReadHeaderTimeout looks like to it. No handler's
// answer is ever these exact bytes.
const (
	netHTTPTooLarge   = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large"
	netHTTPBadRequest = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
)

// headAnswers are tend's answers in place of net/http's refusals of a
// request head: JSON errors like every other refusal, naming the limit and
// its setting.
type headAnswers struct {
	tooLarge, tooSlow []byte
}

func newHeadAnswers(maxHeaderBytes int, readHeaderTimeout time.Duration) *headAnswers {
	return &headAnswers{
		tooLarge: rawAnswer(http.StatusRequestHeaderFieldsTooLarge,
			fmt.Sprintf("request line and headers over %d bytes ([control] max_header_bytes)", maxHeaderBytes)),
		tooSlow: rawAnswer(http.StatusRequestTimeout,
			fmt.Sprintf("request line and headers not received within %v ([control] read_header_timeout)", readHeaderTimeout)),
	}
}

// instead is tend's answer in place of b, what net/http is writing, or nil
// to write b itself; timedOut says a read of the connection hit its
// deadline (a bare 400 then means the head came too slowly).
func (a *headAnswers) instead(b []byte, timedOut bool) []byte {
	switch {
	case a == nil:
		return nil
	case string(b) == netHTTPTooLarge:
		return a.tooLarge
	case timedOut && string(b) == netHTTPBadRequest:
		return a.tooSlow
	}
	return nil
}

// rawAnswer is a whole answer that closes the connection, with msg as its
// JSON error.
func rawAnswer(code int, msg string) []byte {
	body, _ := json.Marshal(api.Error{Error: msg})
	body = append(body, '\n') // as json.Encoder ends every other answer
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
}
