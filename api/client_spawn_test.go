//go:build linux

package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// pipe returns both ends of a pipe, closed when the test ends.
func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestSpawnPassesFiles(t *testing.T) {
	for _, size := range []int{0, 1 << 20} { // 1 MiB of env: more than one sendmsg takes
		s := newRawServer(t, func(req *http.Request, body []byte, files []*os.File) (int, any) {
			var jr JobRequest
			if err := json.Unmarshal(body, &jr); err != nil {
				return 400, err.Error()
			}
			if len(files) != 2 || !slices.Equal(jr.Stdio, []int{1, 2}) {
				return 400, "want 2 files for stdio [1 2]"
			}
			for i, f := range files {
				f.WriteString([]string{"out", "err"}[i])
				f.Close() // as tend closes its copies right after the start
			}
			return 201, Job{ID: "j-1", State: StateRunning}
		})
		r1, w1 := pipe(t)
		r2, w2 := pipe(t)
		req := JobRequest{Argv: []string{"x"}, Env: []string{"BIG=" + strings.Repeat("x", size)}, Stdio: []int{1, 2}}
		j, err := NewClient(s.sock).Spawn(context.Background(), req, []*os.File{w1, w2})
		if err != nil || j.ID != "j-1" {
			t.Fatalf("Spawn(env %d bytes) = %+v, %v", size, j, err)
		}
		w1.Close()
		w2.Close()
		for i, r := range []*os.File{r1, r2} {
			if b, err := io.ReadAll(r); err != nil || string(b) != []string{"out", "err"}[i] {
				t.Errorf("passed file %d read %q, %v; want what the server wrote", i, b, err)
			}
		}
	}
}

func TestSpawnTooManyFiles(t *testing.T) {
	s := newRawServer(t, func(*http.Request, []byte, []*os.File) (int, any) { return 201, Job{} })
	f := []*os.File{os.Stdin, os.Stdout, os.Stderr, os.Stdin}
	if _, err := NewClient(s.sock).Spawn(context.Background(), JobRequest{Argv: []string{"x"}}, f); err == nil {
		t.Errorf("Spawn with 4 files = nil error, want one")
	}
	if n := s.conns.Load(); n != 0 {
		t.Errorf("Spawn with 4 files made %d connections, want 0", n)
	}
}

func TestSpawnBound(t *testing.T) {
	waits := 0
	s := newRawServer(t, func(req *http.Request, body []byte, files []*os.File) (int, any) {
		switch {
		case req.Method == "POST" && req.URL.Path == "/v1/jobs":
			var jr JobRequest
			json.Unmarshal(body, &jr)
			if !jr.Bind || len(files) != 1 {
				return 400, "want bind and one file"
			}
			files[0].Close()
			return 201, Job{ID: "j-b", State: StateRunning}
		case req.Method == "GET" && req.URL.Path == "/v1/jobs/j-b/wait":
			waits++ // one connection: requests come one at a time
			if waits < 3 {
				return 200, Job{ID: "j-b", State: StateRunning}
			}
			sig := "SIGUSR1"
			return 200, Job{ID: "j-b", State: StateExited, Signal: &sig, Reason: ReasonSignaled}
		}
		return 404, "no " + req.URL.Path
	})
	_, w := pipe(t)
	bj, err := NewClient(s.sock).SpawnBound(context.Background(), JobRequest{Argv: []string{"x"}}, []*os.File{w})
	if err != nil {
		t.Fatalf("SpawnBound() = %v", err)
	}
	j, err := bj.Wait(context.Background())
	if err != nil || j.State != StateExited || j.Signal == nil || *j.Signal != "SIGUSR1" {
		t.Errorf("Wait() = %+v, %v; want exited of SIGUSR1", j, err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("bound spawn and wait used %d connections, want 1", n)
	}
	bj.Close()
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Errorf("the server did not see the bound connection close")
	}
}

func TestBoundWaitCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := newRawServer(t, func(req *http.Request, _ []byte, _ []*os.File) (int, any) {
		if req.Method == "POST" {
			return 201, Job{ID: "j-c", State: StateRunning}
		}
		<-release // the job never ends
		return 200, Job{ID: "j-c", State: StateRunning}
	})
	bj, err := NewClient(s.sock).SpawnBound(context.Background(), JobRequest{Argv: []string{"x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bj.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := bj.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait() = %v, want context.DeadlineExceeded", err)
	}
	if _, err := bj.Wait(context.Background()); err == nil {
		t.Errorf("Wait() after a cancelled Wait = nil error, want the broken connection's")
	}
}

func TestSpawnCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := newRawServer(t, func(*http.Request, []byte, []*os.File) (int, any) {
		<-release
		return 201, Job{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, w := pipe(t)
	if _, err := NewClient(s.sock).Spawn(ctx, JobRequest{Argv: []string{"x"}}, []*os.File{w}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Spawn() with a silent server = %v, want context.DeadlineExceeded", err)
	}
}
