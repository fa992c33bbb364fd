//go:build linux

package control

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// fuzzJobs is a jobs manager for the fuzzers: it answers at once and
// records what it was asked, so that the fuzzer can check that nothing
// malformed ever got past the API's decoding.
type fuzzJobs struct {
	mu        sync.Mutex
	submitted []Submit    // guarded by mu
	signals   []JobSignal // guarded by mu
	lists     []ListQuery // guarded by mu
}

func (f *fuzzJobs) Submit(_ context.Context, req Submit) (api.Job, error) {
	closeNow(req.Files...)
	f.mu.Lock()
	f.submitted = append(f.submitted, req)
	f.mu.Unlock()
	return running("j-1", req.Caller.UID), nil
}

func (f *fuzzJobs) Get(c Caller, id string) (api.Job, error) {
	if id != "j-1" {
		return api.Job{}, api.Errorf(http.StatusNotFound, "no job %s", id)
	}
	return running(id, c.UID), nil
}

func (f *fuzzJobs) List(c Caller, q ListQuery) ([]api.Job, string, error) {
	f.mu.Lock()
	f.lists = append(f.lists, q)
	f.mu.Unlock()
	return []api.Job{running("j-1", c.UID)}, "", nil
}

func (f *fuzzJobs) Wait(ctx context.Context, c Caller, id string, conn uint64) (api.Job, error) {
	return f.Get(c, id)
}

func (f *fuzzJobs) Signal(c Caller, id string, req JobSignal) error {
	if id != "j-1" {
		return api.Errorf(http.StatusNotFound, "no job %s", id)
	}
	f.mu.Lock()
	f.signals = append(f.signals, req)
	f.mu.Unlock()
	return nil
}

func (f *fuzzJobs) ConnClosed(uint64)      {}
func (f *fuzzJobs) Counters() api.Counters { return api.Counters{} }

// fuzzServices is a supervisor with two services that records every op.
type fuzzServices struct {
	mu  sync.Mutex
	ops []string // guarded by mu
}

func (f *fuzzServices) Services() []api.Service {
	return []api.Service{{Name: "gateway", State: "running"}}
}

func (f *fuzzServices) ServiceOp(name, op string, sig unix.Signal) error {
	if name != "gateway" {
		return api.Errorf(http.StatusNotFound, "no service %s", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, name+" "+op+" "+sig.String())
	return nil
}

func (f *fuzzServices) Health(string) api.Health          { return api.Health{Healthy: true} }
func (f *fuzzServices) Metrics() Metrics                  { return Metrics{} }
func (f *fuzzServices) Reload() (api.Reload, error)       { return api.Reload{}, nil }
func (f *fuzzJobs) PidFD(Caller, string) (int, error)     { return -1, api.Errorf(409, "fuzz") }
func (f *fuzzServices) Zombies(Caller) []api.ZombieParent { return nil }
func (f *fuzzServices) Stopping() bool                    { return false }
func (f *fuzzServices) Reaped() (uint64, uint64)          { return 0, 0 }

// closedEvents is an event source that has nothing more to say: a request
// for the event stream answers its header and ends.
func closedEvents(int, int) (<-chan *api.Event, func() bool, func(), error) {
	c := make(chan *api.Event)
	close(c)
	return c, func() bool { return false }, func() {}, nil
}

// panicLog records whether anything was logged at Error level: a handler
// panic or an internal error, both of which a bad request must never cause.
type panicLog struct {
	mu   sync.Mutex
	msgs []string
}

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		p.mu.Lock()
		p.msgs = append(p.msgs, r.Message)
		p.mu.Unlock()
	}
	return nil
}
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicLog) WithGroup(string) slog.Handler      { return p }

var fuzzMethods = []string{"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "get"}

// fuzzCallers are the peers a request may come from: root, tend's own uid
// (1500 here), a member of the socket's group (2000), and a stranger.
var fuzzCallers = []Caller{
	{PID: 10, UID: 0, GID: 0},
	{PID: 11, UID: 1500, GID: 1500},
	{PID: 12, UID: 1000, GID: 1000, Groups: []int{1000, 2000}},
	{PID: 13, UID: 1001, GID: 1001},
}

// FuzzRequest drives the whole API handler (authorization, routing, body
// and query decoding) with arbitrary requests. It must never panic or
// answer 500; every refusal is a 4xx with a JSON message; a stranger is
// always 403; nothing malformed reaches the jobs manager or the services.
func FuzzRequest(f *testing.F) {
	f.Add(uint8(1), "/v1/jobs", "", []byte(`{"argv":["ls","-l"],"env":["A=b"],"dir":"/tmp","labels":{"k":"v"},"timeout":"30s","bind":true,"stdio":[]}`), uint8(0))
	f.Add(uint8(1), "/v1/jobs", "", []byte(`{"argv":["ls"],"user":"nobody"}`), uint8(2))
	f.Add(uint8(1), "/v1/jobs", "", []byte(`{"argv":["ls"],"stdio":[0]}`), uint8(0))
	f.Add(uint8(1), "/v1/jobs", "", []byte(`{"argv":[""]} {}`), uint8(0))
	f.Add(uint8(1), "/v1/jobs/j-1/signal", "", []byte(`{"signal":"SIGKILL","tree":true,"kill":true}`), uint8(0))
	f.Add(uint8(1), "/v1/jobs/j-1/signal", "", []byte(`{"signal":"64"}`), uint8(2))
	f.Add(uint8(1), "/v1/services/gateway/signal", "", []byte(`{"signal":"HUP"}`), uint8(1))
	f.Add(uint8(1), "/v1/services/gateway/restart", "", []byte(``), uint8(3))
	f.Add(uint8(1), "/v1/services/gateway/stop", "", []byte(`{}`), uint8(2))
	f.Add(uint8(0), "/v1/jobs", "label=a=b&label=c=d", []byte(nil), uint8(2))
	f.Add(uint8(0), "/v1/jobs", "label=%zz", []byte(nil), uint8(0))
	f.Add(uint8(0), "/v1/jobs/j-1/wait", "timeout=1ns", []byte(nil), uint8(0))
	f.Add(uint8(0), "/v1/jobs/j-1/wait", "timeout=-5s", []byte(nil), uint8(0))
	f.Add(uint8(0), "/v1/status", "", []byte(nil), uint8(3))
	f.Add(uint8(0), "/v1/health", "", []byte(`{}`), uint8(0))
	f.Add(uint8(0), "/v1/events", "", []byte(nil), uint8(2))
	f.Add(uint8(4), "/v1/jobs", "", []byte(nil), uint8(0))
	f.Fuzz(func(t *testing.T, method uint8, path, rawQuery string, body []byte, who uint8) {
		target := path
		if rawQuery != "" {
			target += "?" + rawQuery
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(path, "/") {
			return // net/http answers 400 before any handler runs
		}
		caller := fuzzCallers[int(who)%len(fuzzCallers)]
		code, msg, fj, svcs, logged := fuzzServe(t, fuzzMethods[int(method)%len(fuzzMethods)], u, body, caller)
		if len(logged) > 0 {
			t.Fatalf("%s %q: logged %q", fuzzMethods[int(method)%len(fuzzMethods)], target, logged)
		}
		switch {
		case code >= 500:
			t.Fatalf("%q with body %q: %d %q", target, body, code, msg)
		case code >= 400 && msg == "":
			t.Fatalf("%q with body %q: %d without a JSON message", target, body, code)
		case code >= 300 && code < 400 && u.Path == cleanPath(u.Path):
			t.Fatalf("%q: redirect %d of a clean path", target, code)
		case code < 200:
			t.Fatalf("%q: status %d", target, code)
		}
		// A GET or HEAD with a body is refused before anything else, so that
		// the connection is closed: that 400 tells a stranger nothing.
		framing := code == http.StatusBadRequest && strings.HasSuffix(msg, "takes no body")
		if caller.UID == 1001 && code != http.StatusForbidden && !framing && (code < 300 || code >= 400) {
			t.Fatalf("a stranger's %q got %d %q, want 403", target, code, msg)
		}
		for _, req := range fj.submitted {
			if !wellFormed(req) {
				t.Fatalf("Submit got a malformed request %+v", req)
			}
			if req.Caller.UID != caller.UID || req.Caller.GID != caller.GID {
				t.Fatalf("Submit got caller %+v, the peer was %+v", req.Caller, caller)
			}
		}
		for _, req := range fj.signals {
			if req.Sig < 1 || req.Sig > 64 {
				t.Fatalf("Signal got a bad signal %d", req.Sig)
			}
		}
		if len(svcs.ops) > 0 && caller.UID != 0 && caller.UID != 1500 {
			t.Fatalf("uid %d controlled a service: %q", caller.UID, svcs.ops)
		}
		if len(body) > config.DefaultMaxBodyBytes && code < 300 {
			t.Fatalf("a %d-byte body was accepted (%d)", len(body), code)
		}
	})
}

// fuzzServe answers one request on a fresh server with fakes behind it.
func fuzzServe(t *testing.T, method string, u *url.URL, body []byte, caller Caller) (int, string, *fuzzJobs, *fuzzServices, []string) {
	fj, svcs, log := &fuzzJobs{}, &fuzzServices{}, &panicLog{}
	s := &Server{
		cfg: withDefaults(Config{Jobs: fj, Services: svcs, Events: closedEvents, Log: slog.New(log),
			IOTimeout: time.Second}),
		ln:  &Listener{gid: 2000},
		uid: 1500,
	}
	r := &http.Request{
		Method: method, URL: u, RequestURI: u.RequestURI(), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Host: "tend",
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
	}
	if body == nil {
		r.Body = http.NoBody
	}
	c := &conn{id: 1, caller: caller, closeFDs: closeNow}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), connKey{}, c), 5*time.Second)
	defer cancel()
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()
	s.routes().ServeHTTP(w, r)
	var e api.Error
	if w.Code >= 400 {
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s %s: %d answer %q is not an api.Error: %v", method, u, w.Code, w.Body.Bytes(), err)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	return w.Code, e.Error, fj, svcs, log.msgs
}

// cleanPath is the path ServeMux would not redirect.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	// ServeMux redirects paths with "//", "/./" or "/../" elements.
	for _, bad := range []string{"//", "/./", "/../"} {
		if strings.Contains(p, bad) {
			return ""
		}
	}
	if strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		return ""
	}
	return p
}

// FuzzDecode runs decode, the one body decoder of every endpoint, on
// arbitrary bodies for both request types: it returns nil or a 4xx
// *api.StatusError, and what it accepts re-encodes to the same value.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"argv":["a"],"env":null,"labels":{"":""},"stdio":[0,1,2]}`), false)
	f.Add([]byte(`{"signal":"SIGTERM","tree":false}`), true)
	f.Add([]byte(`{"argv":["a"]}`+"\n\n \t"), false)
	f.Add([]byte(`{"argv":["\ud800"]}`), false)
	f.Add([]byte(`{"ARGV":["x"]}`), false)
	f.Add([]byte(`{"signal":"x","signal":"y"}`), true)
	f.Add([]byte(`nul`), true)
	s := &Server{cfg: withDefaults(Config{Log: slog.New(slog.DiscardHandler)})}
	f.Fuzz(func(t *testing.T, body []byte, signal bool) {
		var v, again any = &api.JobRequest{}, &api.JobRequest{}
		if signal {
			v, again = &api.SignalRequest{}, &api.SignalRequest{}
		}
		r := httptest.NewRequest("POST", "/v1/jobs", bytes.NewReader(body))
		w := httptest.NewRecorder()
		err := s.decode(w, r, v, signal)
		if err != nil {
			se, ok := err.(*api.StatusError)
			if !ok || se.Code < 400 || se.Code >= 500 || se.Msg == "" {
				t.Fatalf("decode(%q) = %#v, want a 4xx *api.StatusError with a message", body, err)
			}
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("decode(%q) accepted %+v, which does not encode: %v", body, v, err)
		}
		if err := json.Unmarshal(b, again); err != nil {
			t.Fatalf("re-decoding %q: %v", b, err)
		}
		if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
			t.Fatalf("decode(%q): %s then %s", body, b, b2)
		}
	})
}

// FuzzLabels checks the query decoder of GET /v1/jobs: an error is a 400;
// a label filter never has an empty key.
func FuzzLabels(f *testing.F) {
	for _, q := range []string{"label=a=b", "label=a=b&label=a=c", "label==", "label=%", "label=k%3Dv=w&x=1", ";"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		labels, err := parseLabels(q)
		if err != nil {
			if se, ok := err.(*api.StatusError); !ok || se.Code != http.StatusBadRequest {
				t.Fatalf("parseLabels(%q) = %v, want a 400", q, err)
			}
			return
		}
		for k := range labels {
			if k == "" {
				t.Fatalf("parseLabels(%q) = %q: an empty key", q, labels)
			}
		}
	})
}

// FuzzListQuery: whatever GET /v1/jobs's query, parseList answers a 400
// with a short message (a quoted field is cut to 64 bytes, at most 4
// bytes each quoted), or a query the table can page with: a limit from 1
// to max_page_size, an after that is empty or a plausible id.
func FuzzListQuery(f *testing.F) {
	for _, q := range []string{"", "limit=1", "limit=1000", "limit=1001", "limit=0", "limit=-1", "limit=1e3",
		"after=j-1&limit=5", "after=", "after=j-1&after=j-2", "limit=%", "label=a=b&limit=2&after=x", "limit=+5", "limit=0x10"} {
		f.Add(q)
	}
	lim := DefaultLimits()
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseList(raw, lim)
		if err != nil {
			se, ok := err.(*api.StatusError)
			if !ok || se.Code != http.StatusBadRequest || se.Msg == "" || len(se.Msg) > 512 {
				t.Fatalf("parseList(%q) = %v, want a 400 with a short message", raw, err)
			}
			return
		}
		if q.Limit < 1 || q.Limit > lim.MaxPageSize || len(q.After) > maxCursor {
			t.Fatalf("parseList(%q) = %+v: limit outside 1..%d or a long cursor", raw, q, lim.MaxPageSize)
		}
		if _, present := url.Values(must(url.ParseQuery(raw)))["after"]; present && q.After == "" {
			t.Fatalf("parseList(%q): after given but empty in %+v", raw, q)
		}
	})
}

func must[T any](v T, _ error) T { return v }

// wellFormed is what every Submit the backend gets must be, whatever was
// sent: the parser's promises.
func wellFormed(req Submit) bool {
	if len(req.Argv) == 0 || req.Argv[0] == "" || (req.Dir != "" && !filepath.IsAbs(req.Dir)) ||
		req.Timeout < 0 || len(req.Files) > maxFDs || len(req.Stdio) != len(req.Files) {
		return false
	}
	lim := DefaultLimits() // fuzzServe's
	if len(req.Argv) > lim.MaxArgv || execBytes(req.Argv) > lim.MaxArgvBytes || len(req.Env) > lim.MaxEnv ||
		execBytes(req.Env) > lim.MaxEnvBytes || len(req.Dir) > lim.MaxDirBytes || len(req.Labels) > lim.MaxLabels {
		return false
	}
	for k, v := range req.Labels {
		if k == "" || len(k) > lim.MaxLabelKeyBytes || len(v) > lim.MaxLabelValueBytes {
			return false
		}
	}
	seen := map[int]bool{}
	for _, fd := range req.Stdio {
		if fd < 0 || fd >= maxFDs || seen[fd] {
			return false
		}
		seen[fd] = true
	}
	return true
}

func (f *fuzzServices) PidsReserve() *api.PidsReserve { return nil }
