//go:build linux

package control

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// fakeJobs is a jobs manager that reports what it was asked over channels.
type fakeJobs struct {
	submitted chan Submit            // every Submit, with its files (the test closes them)
	closed    chan uint64            // every ConnClosed
	callers   chan Caller            // the caller of every List
	labels    chan map[string]string // the labels of every List
	queries   chan ListQuery         // every List's query
	signals   chan JobSignal
	release   chan struct{} // closing it ends every Wait on "j-1"
}

func newFakeJobs() *fakeJobs {
	return &fakeJobs{
		submitted: make(chan Submit, 16),
		closed:    make(chan uint64, 2048),
		callers:   make(chan Caller, 2048),
		labels:    make(chan map[string]string, 2048),
		queries:   make(chan ListQuery, 2048),
		signals:   make(chan JobSignal, 16),
		release:   make(chan struct{}),
	}
}

func running(id string, uid int) api.Job {
	pid := 42
	return api.Job{ID: id, PID: &pid, State: api.StateRunning, UID: uid, Argv: []string{"sleep", "9"}}
}

func (f *fakeJobs) Submit(_ context.Context, req Submit) (api.Job, error) {
	if req.Argv[0] == "full" {
		closeNow(req.Files...)
		return api.Job{}, api.Errorf(http.StatusTooManyRequests, "queue full")
	}
	f.submitted <- req
	return running("j-1", req.Caller.UID), nil
}

func (f *fakeJobs) Get(c Caller, id string) (api.Job, error) {
	if id != "j-1" {
		return api.Job{}, api.Errorf(http.StatusNotFound, "no job %s", id)
	}
	return running(id, c.UID), nil
}

// List pages through j-2, j-1 (newest first); a page cut short by
// its limit names the next.
func (f *fakeJobs) List(c Caller, q ListQuery) ([]api.Job, string, error) {
	select {
	case f.callers <- c:
	default:
	}
	select {
	case f.labels <- q.Labels:
	default:
	}
	select {
	case f.queries <- q:
	default:
	}
	ids := []string{"j-2", "j-1"}
	if q.After != "" {
		i := slices.Index(ids, q.After)
		if i < 0 {
			return nil, "", api.Errorf(http.StatusNotFound, "after: no job %q", q.After)
		}
		ids = ids[i+1:]
	}
	var page []api.Job
	for _, id := range ids {
		if len(page) == q.Limit {
			return page, page[len(page)-1].ID, nil
		}
		page = append(page, running(id, c.UID))
	}
	return page, "", nil
}

func (f *fakeJobs) Wait(ctx context.Context, c Caller, id string, conn uint64) (api.Job, error) {
	if id != "j-1" {
		return api.Job{}, api.Errorf(http.StatusNotFound, "no job %s", id)
	}
	select {
	case <-f.release:
		j := running(id, c.UID)
		j.State = api.StateExited
		return j, nil
	case <-ctx.Done():
		return api.Job{}, ctx.Err()
	}
}

func (f *fakeJobs) Signal(c Caller, id string, req JobSignal) error {
	if id != "j-1" {
		return api.Errorf(http.StatusNotFound, "no job %s", id)
	}
	f.signals <- req
	return nil
}

func (f *fakeJobs) ConnClosed(conn uint64) { f.closed <- conn }

func (f *fakeJobs) Counters() api.Counters {
	return api.Counters{JobsStarted: 7, JobsRunning: 2, JobsQueued: 1, JobsKept: 4}
}

// fakeServices is a supervisor with two services; "boom" panics.
type fakeServices struct {
	mu      sync.Mutex
	healthy bool
	ops     []string // "name op sig", guarded by mu
}

func (f *fakeServices) Services() []api.Service {
	return []api.Service{{Name: "gateway", State: "running"}, {Name: "worker", State: "backoff"}}
}

// calls returns the ServiceOp calls so far. The race detector does not see
// the ordering a socket gives (answer read after the handler wrote it), so
// tests read the fake under its lock.
func (f *fakeServices) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

func (f *fakeServices) ServiceOp(name, op string, sig unix.Signal) error {
	switch name {
	case "boom":
		panic("boom")
	case "gateway", "worker":
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ops = append(f.ops, name+" "+op+" "+sig.String())
		return nil
	}
	return api.Errorf(http.StatusNotFound, "no service %s", name)
}

func (f *fakeJobs) PidFD(c Caller, id string) (int, error) {
	return -1, api.Errorf(409, "fake: no pidfd")
}

func (f *fakeServices) Zombies(c Caller) []api.ZombieParent {
	return []api.ZombieParent{{PID: 40, UID: c.UID, Command: "gateway", Zombies: 3, ZombiePIDs: []int{41, 42, 43}}}
}

func (f *fakeServices) Reload() (api.Reload, error) { return api.Reload{}, nil }

func (f *fakeServices) Metrics() Metrics {
	return Metrics{Reaped: 7, Orphans: 2, Jobs: api.Counters{JobsStarted: 3, JobsRunning: 1},
		JobsEnded: map[string]uint64{api.ReasonExited: 2}, Services: f.Services()}
}

func (f *fakeServices) Health(string) api.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healthy {
		return api.Health{Healthy: true}
	}
	return api.Health{NotReady: []string{"gateway"}}
}

func (f *fakeServices) Stopping() bool { return false }

func (f *fakeServices) Reaped() (uint64, uint64) { return 10, 3 }

// fakeHub is an event source with events.Hub's contract: a subscriber
// whose buffer is full is dropped and its channel closed.
type fakeHub struct {
	mu         sync.Mutex
	subs       map[*fakeSub]bool
	subscribed chan struct{} // one value per Subscribe
	canceled   chan struct{} // one value per cancel
}

type fakeSub struct {
	c          chan *api.Event
	overflowed bool // guarded by fakeHub.mu
}

func newFakeHub() *fakeHub {
	return &fakeHub{subs: map[*fakeSub]bool{}, subscribed: make(chan struct{}, 64), canceled: make(chan struct{}, 64)}
}

func (h *fakeHub) Subscribe(uid, n int) (<-chan *api.Event, func() bool, func(), error) {
	s := &fakeSub{c: make(chan *api.Event, n)}
	h.mu.Lock()
	h.subs[s] = true
	h.mu.Unlock()
	h.subscribed <- struct{}{}
	var once sync.Once
	overflowed := func() bool { h.mu.Lock(); defer h.mu.Unlock(); return s.overflowed }
	cancel := func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
			h.canceled <- struct{}{}
		})
	}
	return s.c, overflowed, cancel, nil
}

// Publish never blocks: a full subscriber is dropped.
func (h *fakeHub) Publish(e api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.c <- &e:
		default:
			s.overflowed = true
			close(s.c)
			delete(h.subs, s)
		}
	}
}

// harness is a server on a fresh socket with fakes behind it.
type harness struct {
	srv  *Server
	jobs *fakeJobs
	svcs *fakeServices
	hub  *fakeHub
	path string
}

func startServer(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{jobs: newFakeJobs(), svcs: &fakeServices{healthy: true}, hub: newFakeHub()}
	h.path = filepath.Join(t.TempDir(), "tend.sock")
	cfg := Config{Path: h.path, Version: "test", Jobs: h.jobs, Services: h.svcs, Events: h.hub.Subscribe,
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := Serve(cfg)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	h.srv = srv
	t.Cleanup(func() {
		if err := srv.Close(time.Now().Add(5 * time.Second)); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// client returns an HTTP client of the socket; its idle connections are
// closed at the end of the test.
func (h *harness) client(t *testing.T) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.path)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends one request and returns the status and body.
func (h *harness) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://tend"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// dial opens a raw connection to the socket, closed at the end of the test.
func (h *harness) dial(t *testing.T) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *fakeServices) PidsReserve() *api.PidsReserve { return nil }
