//go:build linux

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// httpServer is a fake tend built on net/http, as the real one is.
type httpServer struct {
	sock   string
	conns  atomic.Int32
	mu     sync.Mutex
	got    []string // "METHOD path body" of each POST, guarded by mu
	waits  atomic.Int32
	health atomic.Value // "": healthy, "sick": 503 with Health, "stopping": 503 with Error
}

func newHTTPServer(t *testing.T) *httpServer {
	t.Helper()
	s := &httpServer{sock: filepath.Join(t.TempDir(), "tend.sock")}
	ln, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.mux(), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *httpServer) mux() *http.ServeMux {
	m := http.NewServeMux()
	answer := func(w http.ResponseWriter, code int, v any) {
		if msg, ok := v.(string); ok {
			v = Error{Error: msg}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	m.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, Status{Version: "test", PID: 1, Services: []Service{{Name: "gw", State: "running"}}})
	})
	m.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		want, _ := s.health.Load().(string)
		switch want {
		case "sick":
			answer(w, 503, Health{NotReady: []string{"gw"}})
		case "stopping":
			answer(w, 503, "tend is stopping")
		default:
			answer(w, 200, Health{Healthy: true})
		}
	})
	m.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		// Pages of one: the client must follow Tend-Next-After.
		if r.URL.Query().Get("after") == "j-2" {
			answer(w, 200, []Job{{ID: "j-1"}})
			return
		}
		w.Header().Set(NextHeader, "j-2")
		answer(w, 200, []Job{{ID: "j-2", Labels: map[string]string{"q": fmt.Sprint(r.URL.Query()["label"])}}})
	})
	m.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "j-1" {
			answer(w, 404, "no job "+r.PathValue("id"))
			return
		}
		answer(w, 200, Job{ID: "j-1", State: StateRunning})
	})
	m.HandleFunc("GET /v1/jobs/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		// Two long polls time out before the job exits.
		if n := s.waits.Add(1); n <= 2 || r.URL.Query().Get("timeout") != "" {
			answer(w, 200, Job{ID: r.PathValue("id"), State: StateRunning})
			return
		}
		code := 3
		answer(w, 200, Job{ID: r.PathValue("id"), State: StateExited, ExitCode: &code})
	})
	m.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, fmt.Sprintf("%s %s %s", r.Method, r.URL.Path, b))
		s.mu.Unlock()
		switch r.URL.Path {
		case "/v1/jobs":
			var req JobRequest
			if json.Unmarshal(b, &req) != nil || len(req.Argv) == 0 {
				answer(w, 400, "bad request")
			} else if req.Argv[0] == "busy" {
				answer(w, 429, "queue full (256 queued)")
			} else {
				answer(w, 201, Job{ID: "j-9", State: StateQueued, Argv: req.Argv})
			}
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	m.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, `{"seq":%d,"type":"job.started","job":{"id":"j-%d"}}`+"\n\n", i+1, i)
			w.(http.Flusher).Flush()
		}
	})
	return m
}

func TestNewClientSocket(t *testing.T) {
	t.Setenv("TEND_SOCKET", "")
	if got := NewClient("").Socket(); got != DefaultSocket {
		t.Errorf("NewClient(\"\") without TEND_SOCKET: Socket() = %q, want %q", got, DefaultSocket)
	}
	t.Setenv("TEND_SOCKET", "/x/env.sock")
	if got := NewClient("").Socket(); got != "/x/env.sock" {
		t.Errorf("NewClient(\"\") with TEND_SOCKET: Socket() = %q", got)
	}
	if got := NewClient("/x/flag.sock").Socket(); got != "/x/flag.sock" {
		t.Errorf("NewClient(path): Socket() = %q", got)
	}
}

func TestClientCalls(t *testing.T) {
	s := newHTTPServer(t)
	c := NewClient(s.sock)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Version != "test" || len(st.Services) != 1 {
		t.Errorf("Status() = %+v, %v", st, err)
	}
	jobs, err := c.Jobs(ctx, map[string]string{"b": "2,3", "a": "1"})
	if err != nil || len(jobs) != 2 || jobs[0].Labels["q"] != "[a=1 b=2,3]" || jobs[1].ID != "j-1" {
		t.Errorf("Jobs() = %+v, %v; want 2 jobs over 2 pages and labels [a=1 b=2,3] in the query", jobs, err)
	}
	if page, next, err := c.JobsPage(ctx, nil, 1, ""); err != nil || len(page) != 1 || next != "j-2" {
		t.Errorf("JobsPage(limit 1) = %+v, %q, %v; want one job and next j-2", page, next, err)
	}
	if j, err := c.Job(ctx, "j-1"); err != nil || j.ID != "j-1" {
		t.Errorf("Job(j-1) = %+v, %v", j, err)
	}
	if err := c.Signal(ctx, "j-1", SignalRequest{Signal: "SIGUSR1", Tree: true}); err != nil {
		t.Errorf("Signal() = %v", err)
	}
	if err := c.ServiceOp(ctx, "gw", OpSignal, "SIGHUP"); err != nil {
		t.Errorf("ServiceOp(signal) = %v", err)
	}
	if err := c.ServiceOp(ctx, "gw", OpRestart, ""); err != nil {
		t.Errorf("ServiceOp(restart) = %v", err)
	}
	if err := c.ServiceOp(ctx, "gw", "explode", ""); err == nil {
		t.Errorf("ServiceOp(explode) = nil, want an error")
	}
	want := []string{
		`POST /v1/jobs/j-1/signal {"signal":"SIGUSR1","tree":true}`,
		`POST /v1/services/gw/signal {"signal":"SIGHUP"}`,
		`POST /v1/services/gw/restart `,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fmt.Sprint(s.got) != fmt.Sprint(want) {
		t.Errorf("server got %q, want %q", s.got, want)
	}
}

func TestClientErrors(t *testing.T) {
	s := newHTTPServer(t)
	c := NewClient(s.sock)
	ctx := context.Background()
	_, err := c.Job(ctx, "j-404")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 404 || se.Msg != "no job j-404" {
		t.Errorf("Job(j-404) error = %v, want *StatusError 404 \"no job j-404\"", err)
	}
	_, err = c.Spawn(ctx, JobRequest{Argv: []string{"busy"}}, nil)
	if !errors.As(err, &se) || se.Code != 429 {
		t.Errorf("Spawn(busy) error = %v, want 429", err)
	}
	_, err = c.Spawn(ctx, JobRequest{Argv: []string{"x"}, Bind: true}, nil)
	if err == nil {
		t.Errorf("Spawn(Bind) = nil error, want one (SpawnBound)")
	}
	_, err = NewClient(filepath.Join(t.TempDir(), "none.sock")).Status(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Errorf("Status() without a server: %v, want *UnreachableError", err)
	}
}

func TestHealth(t *testing.T) {
	s := newHTTPServer(t)
	c := NewClient(s.sock)
	for _, tt := range []struct {
		health  string
		healthy bool
		errCode int
	}{{"", true, 0}, {"sick", false, 0}, {"stopping", false, 503}} {
		s.health.Store(tt.health)
		h, err := c.Health(context.Background())
		var se *StatusError
		gotCode := 0
		if errors.As(err, &se) {
			gotCode = se.Code
		}
		if h.Healthy != tt.healthy || gotCode != tt.errCode {
			t.Errorf("Health(%q) = %+v, %v; want healthy %v, error code %d", tt.health, h, err, tt.healthy, tt.errCode)
		}
	}
}

func TestWaitLoopsUntilExited(t *testing.T) {
	s := newHTTPServer(t)
	c := NewClient(s.sock)
	j, err := c.Wait(context.Background(), "j-1", time.Second)
	if err != nil || j.State != StateRunning {
		t.Errorf("Wait(timeout 1s) = %+v, %v; want the running record", j, err)
	}
	j, err = c.Wait(context.Background(), "j-1", 0)
	if err != nil || j.State != StateExited || j.ExitCode == nil || *j.ExitCode != 3 {
		t.Errorf("Wait(0) = %+v, %v; want exited with code 3", j, err)
	}
	if n := s.waits.Load(); n != 3 {
		t.Errorf("server saw %d waits, want 3", n)
	}
}

func TestEvents(t *testing.T) {
	s := newHTTPServer(t)
	es, err := NewClient(s.sock).Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	for i := range 3 {
		e, err := es.Next()
		if err != nil || e.Seq != uint64(i+1) || e.Job == nil || e.Job.ID != fmt.Sprintf("j-%d", i) {
			t.Errorf("Next() #%d = %+v, %v", i, e, err)
		}
	}
	if _, err := es.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next() at the end = %v, want io.EOF", err)
	}
}

func TestKeepAlive(t *testing.T) {
	s := newHTTPServer(t)
	c := NewClient(s.sock)
	for range 200 {
		if _, err := c.Spawn(context.Background(), JobRequest{Argv: []string{"true"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("200 sequential requests used %d connections, want 1", n)
	}
}
