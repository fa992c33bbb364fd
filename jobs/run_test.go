//go:build linux

package jobs

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// TestExitCodesExact runs 2,000 jobs from 8 goroutines through 32 slots and
// a queue: every job's exit code must be its own, and each job's events
// must be started then exited.
func TestExitCodesExact(t *testing.T) {
	m, rec := newManager(t, Config{MaxRunning: 32, MaxQueued: 4000})
	orphans := testReaper.Orphans()
	const n, workers = 2000, 8
	var mu sync.Mutex
	want := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				j, err := m.Submit(SubmitRequest{JobRequest: sh("exit " + strconv.Itoa(i%256))})
				if err != nil {
					t.Errorf("Submit job %d: %v", i, err)
					return
				}
				mu.Lock()
				want[j.ID] = i % 256
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(want) != n {
		t.Fatalf("%d distinct ids for %d jobs", len(want), n)
	}
	// One deadline for all: on a loaded 2-core machine the last of 2,000
	// forks under -race can come long after the first.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for id, code := range want {
		j, err := m.Wait(ctx, root, id, 0)
		if err != nil {
			t.Fatalf("Wait(%s): %v (state %s)", id, err, j.State)
		}
		if j.ExitCode == nil || *j.ExitCode != code || j.Reason != api.ReasonExited {
			t.Errorf("job %s: exit_code %s reason %q, want %d exited", id, intp(j.ExitCode), j.Reason, code)
		}
		if got := rec.of(id); !slices.Equal(got, []string{api.EventJobStarted, api.EventJobExited}) {
			t.Errorf("job %s events %v, want started then exited", id, got)
		}
	}
	if started, running, queued := m.Counters(); started != n || running != 0 || queued != 0 {
		t.Errorf("Counters() = %d, %d, %d; want %d, 0, 0", started, running, queued, n)
	}
	if o := testReaper.Orphans() - orphans; o != 0 {
		t.Errorf("reaper counted %d orphans; jobs' exits went astray", o)
	}
}

// TestQueueLimits: with one slot and two queue places the fourth job is
// refused and the queued ones run in order.
func TestQueueLimits(t *testing.T) {
	m, rec := newManager(t, Config{MaxRunning: 1, MaxQueued: 2})
	first := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30")})
	q1 := submit(t, m, SubmitRequest{JobRequest: sh("exit 1")})
	q2 := submit(t, m, SubmitRequest{JobRequest: sh("exit 2")})
	if first.State != api.StateRunning || q1.State != api.StateQueued || q2.State != api.StateQueued {
		t.Fatalf("states %s %s %s, want running queued queued", first.State, q1.State, q2.State)
	}
	if q1.PID != nil || q1.StartedAt != nil {
		t.Errorf("queued job has pid %s and started_at %v", intp(q1.PID), q1.StartedAt)
	}
	_, err := m.Submit(SubmitRequest{JobRequest: sh("exit 3")})
	if statusCode(err) != http.StatusTooManyRequests {
		t.Fatalf("4th Submit: %v, want 429", err)
	}
	if _, _, queued := m.Counters(); queued != 2 {
		t.Errorf("queued = %d, want 2", queued)
	}
	if err := m.Signal(root, first.ID, api.SignalRequest{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	a, b := waitJob(t, m, root, q1.ID), waitJob(t, m, root, q2.ID)
	if *a.ExitCode != 1 || *b.ExitCode != 2 {
		t.Errorf("queued jobs exited %d, %d; want 1, 2", *a.ExitCode, *b.ExitCode)
	}
	if b.StartedAt.Before(*a.EndedAt) {
		t.Errorf("second queued job started at %v, before the first ended at %v", b.StartedAt, a.EndedAt)
	}
	var order []string
	rec.mu.Lock()
	for _, ev := range rec.events {
		if ev.Type == api.EventJobStarted {
			order = append(order, ev.Job.ID)
		}
	}
	rec.mu.Unlock()
	if !slices.Equal(order, []string{first.ID, q1.ID, q2.ID}) {
		t.Errorf("start order %v, want %v", order, []string{first.ID, q1.ID, q2.ID})
	}
	k := waitJob(t, m, root, first.ID)
	if strp(k.Signal) != "SIGKILL" || k.ExitCode != nil || k.Reason != api.ReasonSignaled {
		t.Errorf("killed job: signal %s exit_code %s reason %q; want SIGKILL null signaled",
			strp(k.Signal), intp(k.ExitCode), k.Reason)
	}
}

// TestQueuedExecFails: a queued job whose command cannot run ends with
// exec_failed and the shell's code, and is published only as exited.
func TestQueuedExecFails(t *testing.T) {
	for _, tc := range []struct {
		path  string
		code  int
		errno string
	}{
		{"/nonexistent/prog", 127, "ENOENT"},
		{"/etc/passwd", 126, "EACCES"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			m, rec := newManager(t, Config{MaxRunning: 1, MaxQueued: 1})
			blocker := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30")})
			q := submit(t, m, SubmitRequest{JobRequest: api.JobRequest{Argv: []string{tc.path}}})
			if q.State != api.StateQueued {
				t.Fatalf("state %s, want queued", q.State)
			}
			if err := m.Signal(root, blocker.ID, api.SignalRequest{}); err != nil {
				t.Fatal(err)
			}
			j := waitJob(t, m, root, q.ID)
			if j.Reason != api.ReasonExecFailed || intp(j.ExitCode) != strconv.Itoa(tc.code) || j.PID != nil {
				t.Errorf("reason %q exit_code %s pid %s, want exec_failed %d null", j.Reason, intp(j.ExitCode), intp(j.PID), tc.code)
			}
			if !strings.Contains(j.Error, tc.errno) || !strings.Contains(j.Error, tc.path) {
				t.Errorf("error %q does not name %s and %s", j.Error, tc.path, tc.errno)
			}
			if got := rec.of(q.ID); !slices.Equal(got, []string{api.EventJobExited}) {
				t.Errorf("events %v, want only job.exited", got)
			}
		})
	}
}

// TestTimeout: the whole group gets SIGTERM, grandchild included.
func TestTimeout(t *testing.T) {
	m, _ := newManager(t, Config{Timeout: time.Hour})
	r, w := pipe(t)
	req := sh("sleep 30 & echo $!; wait")
	req.Timeout = "300ms"
	req.Stdio = []int{1}
	j := submit(t, m, SubmitRequest{JobRequest: req, Files: []*os.File{w}})
	gpid, err := strconv.Atoi(readLine(t, r))
	if err != nil {
		t.Fatal(err)
	}
	got := waitJob(t, m, root, j.ID)
	if got.Reason != api.ReasonTimeout || strp(got.Signal) != "SIGTERM" {
		t.Errorf("reason %q signal %s, want timeout SIGTERM", got.Reason, strp(got.Signal))
	}
	if d := got.EndedAt.Sub(*got.StartedAt); d < 300*time.Millisecond {
		t.Errorf("ended after %v, before its 300ms timeout", d)
	}
	waitGone(t, gpid)
}

// TestTimerStoppedAtExit: a job that ends before its timeout leaves no
// timer behind (invariant 8: idle means idle).
func TestTimerStoppedAtExit(t *testing.T) {
	m, _ := newManager(t, Config{Timeout: time.Hour})
	j := submit(t, m, SubmitRequest{JobRequest: sh("exit 0")})
	if got := waitJob(t, m, root, j.ID); got.Reason != api.ReasonExited {
		t.Errorf("reason %q, want exited", got.Reason)
	}
	if n := timers(m); n != 0 {
		t.Errorf("%d timers after the job exited", n)
	}
}

// waitGone waits until pid no longer exists (the test process is a
// subreaper, so the orphan is reaped here).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignalTreeKill: a job and its grandchild ignore SIGTERM; a tree signal
// with kill ends both with SIGKILL after StopGrace, reason killed.
func TestSignalTreeKill(t *testing.T) {
	const grace = 300 * time.Millisecond
	m, _ := newManager(t, Config{StopGrace: grace})
	r, w := pipe(t)
	req := sh(`trap "" TERM; sleep 30 & echo $!; wait`)
	req.Stdio = []int{1}
	j := submit(t, m, SubmitRequest{JobRequest: req, Files: []*os.File{w}})
	gpid, err := strconv.Atoi(readLine(t, r))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := m.Signal(root, j.ID, api.SignalRequest{Signal: "SIGTERM", Tree: true, Kill: true}); err != nil {
		t.Fatal(err)
	}
	got := waitJob(t, m, root, j.ID)
	if d := time.Since(sent); d < grace {
		t.Errorf("killed after %v, before StopGrace %v", d, grace)
	}
	if got.Reason != api.ReasonKilled || strp(got.Signal) != "SIGKILL" {
		t.Errorf("reason %q signal %s, want killed SIGKILL", got.Reason, strp(got.Signal))
	}
	waitGone(t, gpid)
	if err := m.Signal(root, j.ID, api.SignalRequest{}); statusCode(err) != http.StatusConflict {
		t.Errorf("Signal(exited) = %v, want 409", err)
	}
}
