//go:build linux

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// Regression tests of bugs the jobs tests found (see each test).

// TestJobsPassedFdsBlocking passes the ends of os.Pipe pipes, which Go
// makes O_NONBLOCK, as a job's stdin and stdout. O_NONBLOCK belongs to the
// open file description, which the job shares: a job whose stdin is
// non-blocking fails `read` with EAGAIN at once. tend must hand jobs
// blocking stdio ("programs do not expect EAGAIN on fd 0-2", jobs/run.go).
func TestJobsPassedFdsBlocking(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	in, inW := mustPipe(t)
	out, outW := mustPipe(t)
	defer inW.Close()
	defer out.Close()
	script := `flags() { sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/$1; }
echo "$(flags 0) $(flags 1)"
read x; echo "rc=$? x=$x"`
	j := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", script}}, in, outW)
	in.Close()
	outW.Close()
	lines := jobsLines(out)
	flags := strings.Fields(jobsNextLine(t, lines, "fd flags"))
	for i, f := range flags {
		n, err := strconv.ParseUint(f, 8, 64)
		if err != nil || n&0o4000 != 0 {
			t.Errorf("job's fd %d: flags %s: O_NONBLOCK (04000) set, want a blocking fd", i, f)
		}
	}
	if _, err := inW.WriteString("hi\n"); err != nil {
		t.Fatal(err)
	}
	if l := jobsNextLine(t, lines, "read"); l != "rc=0 x=hi" {
		t.Errorf("job's read of its stdin: %q, want \"rc=0 x=hi\"", l)
	}
	if j := jt.waitJob(t, j.ID); jobsExact(j, 0) != nil {
		t.Error(jobsExact(j, 0))
	}
}

// TestJobsWaiterDoesNotHoldBoundJob: a wait request on a bound job from
// another connection (the Go client's pool) must not keep the job alive
// once that request has ended. The bound client leaves; the job is
// killed (reason disconnected) although the pooled connection that once
// waited on it stays open.
func TestJobsWaiterDoesNotHoldBoundJob(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	ctx := jobsCtx(t)
	bj, err := jt.client.SpawnBound(ctx, api.JobRequest{Argv: []string{"sleep", "100"}}, nil)
	if err != nil {
		t.Fatalf("SpawnBound: %v", err)
	}
	id := bj.Job.ID
	// A monitor polls the job with a short timeout; the request ends.
	if j, err := jt.client.Wait(ctx, id, 50*time.Millisecond); err != nil || j.State != api.StateRunning {
		t.Fatalf("Wait(%s, 50ms) = %s, %v; want running", id, j.State, err)
	}
	bj.Close() // the bound client goes away: its job must die
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Get on the same pool keeps the once-waiting connection in use.
		j, err := jt.client.Job(ctx, id)
		if err != nil {
			t.Fatalf("Job(%s): %v", id, err)
		}
		if j.State == api.StateExited {
			if j.Reason != api.ReasonDisconnected {
				t.Errorf("job %s: reason %q, want disconnected", id, j.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s 10s after its bound client left: an ended wait request from another "+
				"connection still holds it (jobs.Manager.Wait binds that connection for good)", id, j.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A job that is not bound is never killed by a waiter's leaving.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	free := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "sleep 0.3; exit 4"}})
	_, _ = jt.client.Wait(wctx, free.ID, 0)
	cancel()
	if j := jt.waitJob(t, free.ID); jobsExact(j, 4) != nil {
		t.Error(fmt.Errorf("unbound job after an abandoned wait: %w", jobsExact(j, 4)))
	}
}

// TestJobsQueuedJobSignalled: tend spawn of a job still queued gets
// SIGTERM (docker stop, kill): tend drops the job (reason killed), and the
// proxy must end as a program killed by SIGTERM, not with 125 and "bad
// answer from tend"; tend wait of a queued job dropped with SIGTERM exits
// 143. The record of a job dropped from the queue has neither exit_code
// nor signal, which both clients refuse (cmd_client.go exitLike).
func TestJobsQueuedJobSignalled(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "[jobs]\nmax_running = 1\n")
	hold := jt.spawn(t, api.JobRequest{Argv: []string{"sleep", "100"}})
	cmd := jt.tendCmd("spawn", "--label", "t=queued", "--", "true")
	wait := jobsStart(t, cmd)
	ctx := jobsCtx(t)
	svPoll(t, jt.tendRun, jobsWait, "the proxy's job queued", func() bool {
		list, err := jt.client.Jobs(ctx, map[string]string{"t": "queued"})
		return err == nil && len(list) == 1 && list[0].State == api.StateQueued
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res := wait(t)
	if res.code() != 128+15 || strings.Contains(res.stderr, "bad answer") {
		t.Errorf("tend spawn of a queued job, sent SIGTERM: %v, stderr %q; want killed by SIGTERM (or 143), no \"bad answer\"", res.ws, res.stderr)
	}
	res = jobsRun(t, jt.tendCmd("spawn", "-d", "--", "true"))
	id := strings.TrimSpace(res.stdout)
	if res := jobsRun(t, jt.tendCmd("signal", id, "TERM")); res.code() != 0 {
		t.Fatalf("tend signal %s TERM (queued): exit %d, stderr %q", id, res.code(), res.stderr)
	}
	if res := jobsRun(t, jt.tendCmd("wait", id)); res.code() != 128+15 || strings.Contains(res.stderr, "bad answer") {
		t.Errorf("tend wait of a queued job dropped by SIGTERM: exit %d, stderr %q; want 143, no \"bad answer\"", res.code(), res.stderr)
	}
	if err := jt.client.Signal(ctx, hold.ID, api.SignalRequest{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	jt.expectHealthy(t)
}

// TestJobsFilesClosedAtStart: tend closes its copy of a passed fd once the
// job has started, not when it exits: while the job runs, no fd of tend's
// is the pipe, and the job still has it (jobs/env_test.go's
// TestFilesClosedAtStart, before the one loop).
func TestJobsFilesClosedAtStart(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	pr, pw := mustPipe(t)
	defer pr.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(pw.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	pipe := fmt.Sprintf("pipe:[%d]", st.Ino)
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sleep", "30"}, Stdio: []int{2}}, []*os.File{pw})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	holds := func(pid int) bool {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range ents {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); l == pipe {
				return true
			}
		}
		return false
	}
	// The close runs on tend's closer thread, just after the start.
	svPoll(t, r, 5*time.Second, "tend has closed its copy of the passed pipe", func() bool { return !holds(r.pid()) })
	if j, err := c.Job(hCtx(t), j.ID); err != nil || j.State != api.StateRunning {
		t.Fatalf("job %+v, %v: want it running, with the pipe", j, err)
	}
	if job := svHostPid(t, r, *j.PID); !holds(job) {
		t.Errorf("the job (pid %d) does not hold the pipe it was passed", job)
	}
	if err := c.Signal(hCtx(t), j.ID, api.SignalRequest{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	pr.SetReadDeadline(time.Now().Add(hWait))
	if _, err := io.ReadAll(pr); err != nil { // EOF with the job's end: nobody else holds it
		t.Errorf("reading the pipe after the job's end: %v", err)
	}
}

// TestJobsGrandchildStopped: a job's timeout and a tree signal with kill
// reach the job's whole unit, grandchild included: the timeout's SIGTERM
// ends both (reason timeout); a tree SIGTERM that both ignore is followed
// by SIGKILL after stop_grace (reason killed), and a signal to the exited
// job is a 409 (jobs/run_test.go's TestTimeout and TestSignalTreeKill,
// before the one loop).
func TestJobsGrandchildStopped(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	jt := startJobsTend(t, opts{}, "[jobs]\nstop_grace = \""+grace.String()+"\"\n")
	for _, tc := range []struct {
		name, script, timeout string
		reason                string
		sig                   string
		treeKill              bool
	}{
		{"timeout", `sleep 30 & echo $!; wait`, "300ms", api.ReasonTimeout, "SIGTERM", false},
		{"tree kill", `trap "" TERM; sleep 30 & echo $!; wait`, "", api.ReasonKilled, "SIGKILL", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w := mustPipe(t)
			defer r.Close()
			j := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", tc.script}, Timeout: tc.timeout, Stdio: []int{1}}, w)
			w.Close()
			line, err := bufio.NewReader(r).ReadString('\n')
			nsPid, perr := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || perr != nil {
				t.Fatalf("the job's grandchild pid: %q, %v, %v", line, err, perr)
			}
			grandchild := svHostPid(t, jt.tendRun, nsPid)
			sent := time.Now()
			if tc.treeKill {
				if err := jt.client.Signal(jobsCtx(t), j.ID, api.SignalRequest{Signal: "SIGTERM", Tree: true, Kill: true}); err != nil {
					t.Fatal(err)
				}
			}
			rec := jt.waitJob(t, j.ID)
			if rec.Reason != tc.reason || rec.Signal == nil || *rec.Signal != tc.sig {
				t.Errorf("record: reason %q signal %v; want %s by %s", rec.Reason, jobsDeref(rec.Signal), tc.reason, tc.sig)
			}
			if d := time.Since(sent); tc.treeKill && d < grace {
				t.Errorf("killed %v after the tree signal, before stop_grace %v", d, grace)
			}
			svPoll(t, jt.tendRun, 5*time.Second, "the job's grandchild is gone", func() bool { return !alive(grandchild, "sleep") })
			if tc.treeKill {
				err := jt.client.Signal(jobsCtx(t), j.ID, api.SignalRequest{})
				if jobsCode(err) != http.StatusConflict {
					t.Errorf("signal to the exited job: %v, want a 409", err)
				}
			}
		})
	}
	jt.expectHealthy(t)
}
