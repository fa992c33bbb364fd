//go:build linux

package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// Load, limits and events of the jobs API: many concurrent clients, the
// queue's bounds, and the order of the event stream.

// TestJobsThousandsExactCodes submits 3,000 jobs `sh -c 'exit N'` from 16
// goroutines and checks that every record has its exact exit code: one
// lost or swapped exit status shows as a wrong code, a missing record or
// an orphan.
func TestJobsThousandsExactCodes(t *testing.T) {
	t.Parallel()
	const (
		total   = 3000
		workers = 16
	)
	jt := startJobsTend(t, opts{}, "[jobs]\nmax_running = 64\nmax_queued = 5000\n")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	ids := make([]string, total)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				req := api.JobRequest{Argv: []string{"sh", "-c", fmt.Sprintf("exit %d", i%256)},
					Labels: map[string]string{"i": strconv.Itoa(i)}}
				j, err := jt.client.Spawn(ctx, req, nil)
				if err != nil {
					errs <- fmt.Errorf("job %d: Spawn: %w", i, err)
					return
				}
				ids[i] = j.ID
			}
			for i := w; i < total; i += workers {
				j, err := jt.client.Wait(ctx, ids[i], 0)
				if err != nil {
					errs <- fmt.Errorf("job %d (%s): Wait: %w", i, ids[i], err)
					return
				}
				if err := jobsExact(j, i%256); err != nil {
					errs <- fmt.Errorf("job %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.Fatalf("tend's stderr:\n%s", jt.stderrNow())
	}
	// The list agrees with what each waiter saw: 3,000 distinct records.
	list, err := jt.client.Jobs(ctx, nil)
	if err != nil {
		t.Fatalf("Jobs(): %v", err)
	}
	if len(list) != total {
		t.Errorf("Jobs() lists %d records, want %d", len(list), total)
	}
	seen := map[string]bool{}
	for _, j := range list {
		i, err := strconv.Atoi(j.Labels["i"])
		if err != nil || seen[j.ID] || ids[i] != j.ID {
			t.Errorf("listed job %s labels %v: not one of ours, or twice", j.ID, j.Labels)
			continue
		}
		seen[j.ID] = true
		if err := jobsExact(j, i%256); err != nil {
			t.Errorf("listed job %d: %v", i, err)
		}
	}
	jt.expectHealthy(t)
	st, err := jt.client.Status(ctx)
	if err != nil {
		t.Fatalf("Status(): %v", err)
	}
	if c := st.Counters; c.JobsStarted != total || c.OrphansReaped != 0 || c.Reaped < total {
		t.Errorf("counters = %+v; want %d started and reaped, no orphan", c, total)
	}
}

// jobsExact checks that j exited by itself with code.
func jobsExact(j api.Job, code int) error {
	if j.State != api.StateExited || j.Reason != api.ReasonExited || j.ExitCode == nil || *j.ExitCode != code ||
		j.Signal != nil || j.PID == nil || j.StartedAt == nil || j.EndedAt == nil {
		return fmt.Errorf("record %s: state %s reason %q exit_code %v signal %v; want exited with %d",
			j.ID, j.State, j.Reason, jobsDeref(j.ExitCode), jobsDeref(j.Signal), code)
	}
	return nil
}

// jobsDeref shows a nullable field.
func jobsDeref[T any](p *T) any {
	if p == nil {
		return "null"
	}
	return *p
}

// TestJobsQueueLimits fills max_running = 1 and max_queued = 2: the 4th
// submission is 429 for the Go client and exit 125 for tend spawn, and the
// queue then drains in order.
func TestJobsQueueLimits(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "[jobs]\nmax_running = 1\nmax_queued = 2\n")
	ctx := jobsCtx(t)
	hold := jt.spawn(t, api.JobRequest{Argv: []string{"sleep", "100"}})
	q1 := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "exit 11"}})
	q2 := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "exit 12"}})
	if hold.State != api.StateRunning || q1.State != api.StateQueued || q2.State != api.StateQueued || q1.PID != nil {
		t.Fatalf("states %s %s %s (pid %v); want running queued queued (null)", hold.State, q1.State, q2.State, jobsDeref(q1.PID))
	}
	_, err := jt.client.Spawn(ctx, api.JobRequest{Argv: []string{"true"}}, nil)
	if jobsCode(err) != http.StatusTooManyRequests {
		t.Errorf("4th Spawn: %v; want a 429", err)
	}
	res := jobsRun(t, jt.tendCmd("spawn", "--", "true"))
	if res.code() != 125 || !strings.Contains(res.stderr, "429") {
		t.Errorf("tend spawn with the queue full: exit %d, stderr %q; want 125 and the 429", res.code(), res.stderr)
	}
	res = jobsRun(t, jt.tendCmd("spawn", "--detach", "--", "true"))
	if res.code() != 125 || res.stdout != "" {
		t.Errorf("tend spawn --detach with the queue full: exit %d, stdout %q; want 125 and nothing", res.code(), res.stdout)
	}
	st, err := jt.client.Status(ctx)
	if err != nil || st.Counters.JobsRunning != 1 || st.Counters.JobsQueued != 2 {
		t.Errorf("Status() counters %+v, %v; want 1 running, 2 queued", st.Counters, err)
	}
	if err := jt.client.Signal(ctx, hold.ID, api.SignalRequest{Signal: "SIGKILL"}); err != nil {
		t.Fatalf("Signal(%s, KILL): %v", hold.ID, err)
	}
	if j := jt.waitJob(t, hold.ID); j.Signal == nil || *j.Signal != "SIGKILL" || j.Reason != api.ReasonSignaled {
		t.Errorf("killed job: signal %v reason %q; want SIGKILL, signaled", jobsDeref(j.Signal), j.Reason)
	}
	j1, j2 := jt.waitJob(t, q1.ID), jt.waitJob(t, q2.ID)
	for _, c := range []struct {
		j    api.Job
		code int
	}{{j1, 11}, {j2, 12}} {
		if err := jobsExact(c.j, c.code); err != nil {
			t.Error(err)
		}
	}
	if j1.StartedAt != nil && j2.StartedAt != nil && j2.StartedAt.Before(*j1.StartedAt) {
		t.Errorf("queue not FIFO: 2nd started %v, before the 1st %v", j2.StartedAt, j1.StartedAt)
	}
	// Room again: a submission is accepted.
	if j := jt.waitJob(t, jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "exit 13"}}).ID); jobsExact(j, 13) != nil {
		t.Error(jobsExact(j, 13))
	}
	jt.expectHealthy(t)
}

// TestJobsEventsOrder subscribes to /v1/events, starts 20 jobs at once and
// checks that seq only grows and that each job's started comes before its
// exited, with the right records.
func TestJobsEventsOrder(t *testing.T) {
	t.Parallel()
	const n = 20
	jt := startJobsTend(t, opts{}, "")
	ctx := jobsCtx(t)
	es, err := jt.client.Events(ctx)
	if err != nil {
		t.Fatalf("Events(): %v", err)
	}
	defer es.Close()
	want := map[string]int{} // job id -> its exit code
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := jt.client.Spawn(ctx, api.JobRequest{Argv: []string{"sh", "-c", fmt.Sprintf("exit %d", 100+i)}}, nil)
			if err != nil {
				t.Errorf("Spawn %d: %v", i, err)
				return
			}
			mu.Lock()
			want[j.ID] = 100 + i
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	started := map[string]uint64{}
	exited := map[string]bool{}
	var last uint64
	for len(exited) < n {
		e, err := es.Next()
		if err != nil {
			t.Fatalf("Next() after %d exits: %v", len(exited), err)
		}
		if e.Seq <= last {
			t.Errorf("event seq %d after %d: want increasing", e.Seq, last)
		}
		last = e.Seq
		if e.Job == nil {
			continue
		}
		code, ours := want[e.Job.ID]
		switch {
		case !ours:
			t.Errorf("event %s of job %s: not one of ours", e.Type, e.Job.ID)
		case e.Type == api.EventJobStarted:
			if started[e.Job.ID] != 0 || exited[e.Job.ID] || e.Job.State != api.StateRunning || e.Job.PID == nil {
				t.Errorf("job.started of %s (seq %d): twice, after its exit, or record %s pid %v", e.Job.ID, e.Seq, e.Job.State, jobsDeref(e.Job.PID))
			}
			started[e.Job.ID] = e.Seq
		case e.Type == api.EventJobExited:
			if started[e.Job.ID] == 0 || exited[e.Job.ID] {
				t.Errorf("job.exited of %s (seq %d) without its job.started before, or twice", e.Job.ID, e.Seq)
			}
			exited[e.Job.ID] = true
			if err := jobsExact(*e.Job, code); err != nil {
				t.Errorf("job.exited: %v", err)
			}
		default:
			t.Errorf("unexpected event %s of job %s", e.Type, e.Job.ID)
		}
	}
	jt.expectHealthy(t)
}

// TestJobsQueuedExecFails: a command missing at submission is a 422 naming
// the path and ENOENT, with no record and no event; a queued job whose
// command passes the lookup at submission but cannot be executed when its
// turn comes (no #! and no ELF: ENOEXEC) ends with reason exec_failed, code
// 126, no pid, an error naming the path and the errno, and only a
// job.exited event: it never started (jobs/run_test.go's
// TestQueuedExecFails and jobs/submit_test.go's
// TestExecFailureNamesPathAndErrno, before the one loop).
func TestJobsQueuedExecFails(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "[jobs]\nmax_running = 1\nmax_queued = 1\n")
	ctx := jobsCtx(t)
	bad := filepath.Join(jt.dir, "badformat")
	if err := os.WriteFile(bad, []byte("not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	es, err := jt.client.Events(ctx)
	if err != nil {
		t.Fatalf("Events(): %v", err)
	}
	defer es.Close()
	// A command missing at submission: 422 naming the path and the errno,
	// no record and no event (the events below would show one).
	missing := filepath.Join(jt.dir, "no-such-prog")
	_, err = jt.client.Spawn(ctx, api.JobRequest{Argv: []string{missing}}, nil)
	if jobsCode(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "ENOENT") {
		t.Errorf("Spawn of a missing command: %v, want a 422 naming %s and ENOENT", err, missing)
	}
	hold := jt.spawn(t, api.JobRequest{Argv: []string{"sleep", "100"}})
	q := jt.spawn(t, api.JobRequest{Argv: []string{bad}})
	if q.State != api.StateQueued {
		t.Fatalf("state %s, want queued", q.State)
	}
	if err := jt.client.Signal(ctx, hold.ID, api.SignalRequest{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	j := jt.waitJob(t, q.ID)
	if j.Reason != api.ReasonExecFailed || j.ExitCode == nil || *j.ExitCode != 126 || j.PID != nil {
		t.Errorf("record %+v: want exec_failed, 126, no pid", j)
	}
	if !strings.Contains(j.Error, bad) || !strings.Contains(j.Error, "ENOEXEC") {
		t.Errorf("error %q does not name %s and ENOEXEC", j.Error, bad)
	}
	var types []string
	for {
		e, err := es.Next()
		if err != nil {
			t.Fatalf("Next(): %v (events of the queued job so far %q)", err, types)
		}
		if e.Job != nil && len(e.Job.Argv) > 0 && e.Job.Argv[0] == missing {
			t.Errorf("event %s for the refused submission: %+v", e.Type, e.Job)
		}
		if e.Job != nil && e.Job.ID == q.ID {
			types = append(types, e.Type)
			if e.Type == api.EventJobExited {
				break
			}
		}
	}
	if !slices.Equal(types, []string{api.EventJobExited}) {
		t.Errorf("the queued job's events %q, want only job.exited", types)
	}
	jt.expectHealthy(t)
}
