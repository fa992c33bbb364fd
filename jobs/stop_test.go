//go:build linux

package jobs

import (
	"context"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// TestBindDisconnected: a bound job lives while any of its connections (the
// submitting one, or one that waits on it) is open; a bound queued job is
// dropped when its connection closes.
func TestBindDisconnected(t *testing.T) {
	m, rec := newManager(t, Config{MaxRunning: 1, MaxQueued: 1, StopGrace: time.Second})
	req := sh("exec sleep 30")
	req.Bind = true
	j := submit(t, m, SubmitRequest{JobRequest: req, Conn: 7})
	q := submit(t, m, SubmitRequest{JobRequest: req, Conn: 9})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	got, err := m.Wait(ctx, root, j.ID, 8) // binds connection 8 too
	cancel()
	if err != context.DeadlineExceeded || got.State != api.StateRunning {
		t.Fatalf("Wait with a short ctx = %s, %v; want running, DeadlineExceeded", got.State, err)
	}
	m.ConnClosed(7)
	m.ConnClosed(42) // not bound to anything
	if got, _ := m.Get(root, j.ID); got.State != api.StateRunning {
		t.Fatalf("job %s after its first connection closed, want running (8 still open)", got.State)
	}
	m.ConnClosed(9)
	if got, _ := m.Get(root, q.ID); got.State != api.StateExited || got.Reason != api.ReasonDisconnected {
		t.Errorf("bound queued job: %s %q, want exited disconnected", got.State, got.Reason)
	}
	if ev := rec.of(q.ID); !slices.Equal(ev, []string{api.EventJobExited}) {
		t.Errorf("dropped job's events %v, want only job.exited", ev)
	}
	m.ConnClosed(8)
	got = waitJob(t, m, root, j.ID)
	if got.Reason != api.ReasonDisconnected || strp(got.Signal) != "SIGTERM" {
		t.Errorf("reason %q signal %s, want disconnected SIGTERM", got.Reason, strp(got.Signal))
	}
	m.mu.Lock()
	if len(m.conns) != 0 {
		t.Errorf("%d connections still indexed", len(m.conns))
	}
	m.mu.Unlock()
}

// TestUnboundIgnoresConnClosed: without bind, a closing connection does
// nothing.
func TestUnboundIgnoresConnClosed(t *testing.T) {
	m, _ := newManager(t, Config{})
	j := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30"), Conn: 3})
	m.ConnClosed(3)
	time.Sleep(50 * time.Millisecond)
	if got, _ := m.Get(root, j.ID); got.State != api.StateRunning {
		t.Errorf("unbound job %s after ConnClosed, want running", got.State)
	}
}

// TestShutdown: queued jobs are dropped, a running job that ignores SIGTERM
// is killed at the deadline, the channel closes, and Submit answers 503.
func TestShutdown(t *testing.T) {
	m, _ := newManager(t, Config{MaxRunning: 1, MaxQueued: 5, StopGrace: time.Minute})
	r, w := pipe(t)
	req := sh(`trap "" TERM; echo ready; sleep 30`)
	req.Stdio = []int{1}
	run := submit(t, m, SubmitRequest{JobRequest: req, Files: []*os.File{w}})
	readLine(t, r)
	q := submit(t, m, SubmitRequest{JobRequest: sh("exit 0")})

	start := time.Now()
	done := m.Shutdown(start.Add(300 * time.Millisecond))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown channel not closed 5s after a 300ms deadline")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("drained after %v, before the deadline", d)
	}
	got, _ := m.Get(root, run.ID)
	if got.Reason != api.ReasonShutdown || strp(got.Signal) != "SIGKILL" {
		t.Errorf("running job: reason %q signal %s, want shutdown SIGKILL", got.Reason, strp(got.Signal))
	}
	got, _ = m.Get(root, q.ID)
	if got.State != api.StateExited || got.Reason != api.ReasonShutdown || got.PID != nil {
		t.Errorf("queued job: %s %q pid %s, want exited shutdown null", got.State, got.Reason, intp(got.PID))
	}
	if _, err := m.Submit(SubmitRequest{JobRequest: sh("true")}); statusCode(err) != http.StatusServiceUnavailable {
		t.Errorf("Submit after Shutdown: %v, want 503", err)
	}
	if _, running, queued := m.Counters(); running != 0 || queued != 0 {
		t.Errorf("after Shutdown running %d queued %d", running, queued)
	}
}

func TestShutdownIdle(t *testing.T) {
	m, _ := newManager(t, Config{})
	select {
	case <-m.Shutdown(time.Now().Add(time.Hour)):
	default:
		t.Error("Shutdown with nothing running: channel not closed at once")
	}
}

// TestSignalErrors covers the refusals of Signal and the queued-job drop.
func TestSignalErrors(t *testing.T) {
	m, rec := newManager(t, Config{MaxRunning: 1, MaxQueued: 2})
	run := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30")})
	q := submit(t, m, SubmitRequest{JobRequest: sh("exit 0")})
	for _, tc := range []struct {
		name string
		id   string
		req  api.SignalRequest
		code int
	}{
		{"bad name", run.ID, api.SignalRequest{Signal: "SIGNOPE"}, http.StatusBadRequest},
		{"zero", run.ID, api.SignalRequest{Signal: "0"}, http.StatusBadRequest},
		{"missing", "j-00000000", api.SignalRequest{}, http.StatusNotFound},
		{"queued WINCH", q.ID, api.SignalRequest{Signal: "WINCH"}, http.StatusConflict},
	} {
		if err := m.Signal(root, tc.id, tc.req); statusCode(err) != tc.code {
			t.Errorf("%s: Signal = %v, want %d", tc.name, err, tc.code)
		}
	}
	if err := m.Signal(root, q.ID, api.SignalRequest{Signal: "TERM"}); err != nil {
		t.Fatalf("Signal(queued, TERM) = %v, want the job dropped", err)
	}
	got, _ := m.Get(root, q.ID)
	if got.State != api.StateExited || got.Reason != api.ReasonKilled || got.Signal == nil || *got.Signal != "SIGTERM" {
		t.Errorf("dropped queued job: %s %q signal %v, want exited killed SIGTERM", got.State, got.Reason, got.Signal)
	}
	if ev := rec.of(q.ID); !slices.Equal(ev, []string{api.EventJobExited}) {
		t.Errorf("dropped job's events %v", ev)
	}
	if err := m.Signal(root, run.ID, api.SignalRequest{Signal: "9"}); err != nil {
		t.Fatal(err)
	}
	if got := waitJob(t, m, root, run.ID); got.Reason != api.ReasonSignaled {
		t.Errorf("reason %q, want signaled (a signal request without kill)", got.Reason)
	}
}
