//go:build linux

package control

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// handlerFunc is an endpoint: it gets the connection the request came on.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *conn)

// routes returns the API: every endpoint of DESIGN.md §5 behind front.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for pattern, h := range map[string]handlerFunc{
		"GET /v1/status":                s.status,
		"GET /v1/health":                s.health,
		"POST /v1/services/{name}/{op}": s.serviceOp,
		"POST /v1/jobs":                 s.submit,
		"GET /v1/jobs":                  s.list,
		"GET /v1/jobs/{id}":             s.get,
		"GET /v1/jobs/{id}/wait":        s.wait,
		"POST /v1/jobs/{id}/signal":     s.signal,
		"GET /v1/events":                s.events,
		"GET /v1/metrics":               s.metrics,
		"GET /v1/zombies":               s.zombies,
		"POST /v1/reload":               s.reload,
	} {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h(w, r, r.Context().Value(connKey{}).(*conn))
		})
	}
	return &front{s: s, mux: mux}
}

// front does what every request needs before its endpoint: it turns a panic
// into a 500, refuses a connection whose fds were refused, authorizes the
// caller and answers unknown endpoints and methods in JSON.
type front struct {
	s   *Server
	mux *http.ServeMux
}

func (f *front) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	defer f.recover(w, r)
	c, ok := r.Context().Value(connKey{}).(*conn)
	if !ok { // not from our Listener: nothing is known about the caller
		f.s.fail(w, api.Errorf(http.StatusForbidden, "unknown peer"))
		return
	}
	if err := f.admit(w, r, c); err != nil {
		f.s.fail(w, err)
		return
	}
	if _, pattern := f.mux.Handler(r); pattern == "" {
		f.noRoute(w, r)
		return
	}
	f.mux.ServeHTTP(w, r)
}

// admit refuses a connection whose fds were refused, a GET with a body, a
// caller who may not use the socket and a URL over max_url_bytes, puts a
// deadline on reading a body and closes the connection after a chunked one.
func (f *front) admit(w *statusWriter, r *http.Request, c *conn) error {
	if len(r.TransferEncoding) > 0 {
		// RFC 9112 §6.3: after a request with both Transfer-Encoding and
		// Content-Length the server must close the connection (the two may
		// frame the body differently: request smuggling). net/http deletes
		// Content-Length before a handler sees it, so every chunked request
		// closes its connection after the answer; tend's clients send none.
		w.Header().Set("Connection", "close")
	}
	if why := c.badReason(); why != "" {
		// The fds are closed; the bytes that came with them may belong to
		// any request, so the connection cannot be trusted further.
		w.Header().Set("Connection", "close")
		return api.Errorf(c.badStatus(), "%s", why)
	}
	if r.ContentLength != 0 {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			w.Header().Set("Connection", "close")
			return api.Errorf(http.StatusBadRequest, "%s takes no body", r.Method)
		}
		// Bounds the reading of the body, by the handler or by net/http,
		// which discards what a handler left unread before answering (a
		// 403 or 404 too). Set only with a body: it also applies to
		// net/http's background read, whose failure cancels the request.
		w.bodyDeadline = time.Now().Add(f.s.cfg.IOTimeout)
		_ = http.NewResponseController(w).SetReadDeadline(w.bodyDeadline)
	}
	if !f.s.mayConnect(c.caller) {
		return api.Errorf(http.StatusForbidden, "uid %d may not use this socket: %s", c.caller.UID, f.s.connectRule())
	}
	if n, limit := len(r.RequestURI), f.s.cfg.Limits.MaxURLBytes; n > limit {
		return api.Errorf(http.StatusRequestURITooLong, "URL is %d bytes, over the limit of %d ([control] max_url_bytes)", n, limit)
	}
	return nil
}

// noRoute answers a request no pattern matched with a JSON 404 or 405: the
// ServeMux's own answers are plain text, so run it on a recorder to learn
// which it is and which methods the path allows.
func (f *front) noRoute(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{header: http.Header{}}
	f.mux.ServeHTTP(rec, r)
	if rec.code == http.StatusMethodNotAllowed {
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		f.s.fail(w, api.Errorf(rec.code, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		return
	}
	f.s.fail(w, api.Errorf(http.StatusNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
}

// recover turns a panic in a handler into a 500 (or, once the answer has
// begun, an aborted connection) and a log line: net/http would recover it
// too, but silently close the connection.
func (f *front) recover(w *statusWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler { // deliberate abort: net/http handles it
		panic(v)
	}
	f.s.cfg.Log.Error("panic in control handler", "method", r.Method, "path", r.URL.Path, "panic", v)
	if w.code != 0 {
		panic(http.ErrAbortHandler) // half an answer is sent: cut the connection
	}
	w.Header().Set("Connection", "close")
	f.s.fail(w, api.Errorf(http.StatusInternalServerError, "internal error"))
}

// mayConnect says whether c may use the socket at all: root, tend's own uid,
// or a member of the socket's group (primary or supplementary).
func (s *Server) mayConnect(c Caller) bool {
	gid := s.ln.Group()
	return c.UID == 0 || c.UID == s.uid || c.GID == gid || slices.Contains(c.Groups, gid)
}

// connectRule says who may connect, with the [control] settings that
// decide it as they were configured, for the 403.
func (s *Server) connectRule() string {
	mode := s.cfg.Mode.Perm()
	if mode == 0 {
		mode = config.DefaultMode
	}
	group := fmt.Sprintf("group = %q", s.cfg.Group)
	if s.cfg.Group == "" {
		group = "group unset: tend's own"
	}
	return fmt.Sprintf("only root, uid %d and members of gid %d may ([control] mode = \"%04o\", %s)",
		s.uid, s.ln.Group(), mode, group)
}

// mayControl says whether c may control services: root and tend's uid only.
func (s *Server) mayControl(c Caller) bool { return c.UID == 0 || c.UID == s.uid }

// statusWriter remembers whether the answer has begun. Unwrap lets
// http.ResponseController reach the connection through it.
type statusWriter struct {
	http.ResponseWriter
	code         int
	bodyDeadline time.Time // of reading the body; zero without one
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recorder keeps the status and headers of a ServeMux's fallback answer.
type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }
