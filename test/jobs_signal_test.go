//go:build linux

package test

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// tend spawn as a proxy: signals it gets reach the job, the job's end is
// its own (code, or the same signal re-raised), its death kills the job's
// group, and a timeout is reported.

// TestJobsProxyForwardsSignals sends signals to tend spawn and expects the
// job (a helper that reports every signal) to get each of them; the job's
// stdin is the proxy's, and its exit code is the proxy's.
func TestJobsProxyForwardsSignals(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	cmd := jt.tendCmd(append([]string{"spawn", "--"}, helperArgv("sigreport", "job", "5")...)...)
	inR, inW := mustPipe(t)
	outR, outW := mustPipe(t)
	cmd.Stdin, cmd.Stdout = inR, outW
	wait := jobsStart(t, cmd)
	lines := jobsLines(outR)
	if l := jobsNextLine(t, lines, "job start"); l != "job ready" {
		t.Fatalf("job said %q, want \"job ready\"", l)
	}
	inR.Close()
	outW.Close()
	for _, sig := range []unix.Signal{unix.SIGUSR1, unix.SIGHUP, unix.SIGWINCH, unix.SIGPIPE, unix.SIGTERM, unix.SIGINT, unix.SIGUSR2} {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatalf("signal %v to tend spawn: %v", sig, err)
		}
		if l, want := jobsNextLine(t, lines, fmt.Sprintf("forwarded %v", sig)), fmt.Sprintf("job sig %d", sig); l != want {
			t.Fatalf("after %v to the proxy the job said %q, want %q", sig, l, want)
		}
	}
	inW.Close() // the job's stdin ends: it says bye and exits 5
	if l := jobsNextLine(t, lines, "job end"); l != "job bye" {
		t.Errorf("job said %q, want \"job bye\"", l)
	}
	if res := wait(t); res.code() != 5 || res.ws.Signaled() {
		t.Errorf("tend spawn: %v, stderr %q; want exit 5", res.ws, res.stderr)
	}
	outR.Close()
	jt.expectHealthy(t)
}

// TestJobsProxyReraises: a job that kills itself with a signal makes tend
// spawn die of that same signal (KILL too); exit codes pass through.
func TestJobsProxyReraises(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGABRT, unix.SIGUSR1, unix.SIGPIPE, unix.SIGKILL, unix.SIGTERM, unix.SIGHUP, unix.SIGBUS} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			t.Parallel()
			res := jobsRun(t, jt.tendCmd("spawn", "--", "sh", "-c", fmt.Sprintf("kill -%d $$", sig)))
			if !res.ws.Signaled() || res.ws.Signal() != syscall.Signal(sig) {
				t.Errorf("tend spawn of a job killed by %v: %v (stderr %q); want killed by %v", sig, res.ws, res.stderr, sig)
			}
			if res.ws.CoreDump() {
				t.Errorf("tend spawn dumped core re-raising %v", sig)
			}
		})
	}
	for _, code := range []int{0, 1, 42, 128 + 9, 255} {
		t.Run(fmt.Sprintf("exit%d", code), func(t *testing.T) {
			t.Parallel()
			res := jobsRun(t, jt.tendCmd("spawn", "--", "sh", "-c", fmt.Sprintf("exit %d", code)))
			if res.ws.Signaled() || res.code() != code || res.stderr != "" {
				t.Errorf("tend spawn of exit %d: %v, stderr %q; want exit %d, no message", code, res.ws, res.stderr, code)
			}
		})
	}
}

// TestJobsProxyKilled kills tend spawn with SIGKILL: its bound job and the
// job's child, in its process group and deaf to SIGTERM, are gone after
// stop_grace, and the record says disconnected.
func TestJobsProxyKilled(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	jt := startJobsTend(t, opts{}, "[jobs]\nstop_grace = \"1s\"\n")
	// Both hold the pipe that is the proxy's stdout: its EOF says both
	// are gone (tend keeps no copy of passed fds).
	cmd := jt.tendCmd("spawn", "--label", "t=killed", "--", "sh", "-c", `trap '' TERM; sleep 1000 & echo ready; wait`)
	outR, outW := mustPipe(t)
	defer outR.Close()
	cmd.Stdout = outW
	wait := jobsStart(t, cmd)
	outW.Close()
	ready := make([]byte, 6)
	_ = outR.SetReadDeadline(time.Now().Add(jobsWait))
	if _, err := io.ReadFull(outR, ready); err != nil || string(ready) != "ready\n" {
		t.Fatalf("job said %q, %v; want ready", ready, err)
	}
	ctx := jobsCtx(t)
	list, err := jt.client.Jobs(ctx, map[string]string{"t": "killed"})
	if err != nil || len(list) != 1 || list[0].State != api.StateRunning {
		t.Fatalf("Jobs(t=killed) = %+v, %v; want one running job", list, err)
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if res := wait(t); !res.ws.Signaled() || res.ws.Signal() != syscall.SIGKILL {
		t.Fatalf("tend spawn: %v, want killed", res.ws)
	}
	_ = outR.SetReadDeadline(time.Now().Add(grace + 15*time.Second))
	rest, err := io.ReadAll(outR)
	gone := time.Since(killed)
	if err != nil || len(rest) != 0 {
		t.Fatalf("job's stdout: %q, %v after %v; want EOF: the job or its child is still there", rest, err, gone)
	}
	if gone < grace-100*time.Millisecond {
		t.Errorf("job's group gone %v after the proxy died: before stop_grace %v, yet it ignores SIGTERM", gone, grace)
	}
	j := jt.waitJob(t, list[0].ID)
	if j.Reason != api.ReasonDisconnected || j.Signal == nil || *j.Signal != "SIGKILL" {
		t.Errorf("record: reason %q signal %v; want disconnected, SIGKILL", j.Reason, jobsDeref(j.Signal))
	}
	jt.expectHealthy(t)
}

// TestJobsTimeout: tend spawn --timeout 300ms -- sleep 100 ends with reason
// timeout; the proxy says so and dies of the job's SIGTERM. A job deaf to
// SIGTERM gets SIGKILL after stop_grace.
func TestJobsTimeout(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "[jobs]\nstop_grace = \"500ms\"\n")
	t0 := time.Now()
	res := jobsRun(t, jt.tendCmd("spawn", "--timeout", "300ms", "--label", "t=timeout", "--", "sleep", "100"))
	took := time.Since(t0)
	if !res.ws.Signaled() || res.ws.Signal() != syscall.SIGTERM || !strings.Contains(res.stderr, "timeout") {
		t.Errorf("tend spawn --timeout 300ms: %v, stderr %q; want killed by SIGTERM and the word timeout", res.ws, res.stderr)
	}
	if took < 300*time.Millisecond || took > 15*time.Second {
		t.Errorf("tend spawn --timeout 300ms took %v", took)
	}
	ctx := jobsCtx(t)
	list, err := jt.client.Jobs(ctx, map[string]string{"t": "timeout"})
	if err != nil || len(list) != 1 {
		t.Fatalf("Jobs(t=timeout) = %+v, %v; want one job", list, err)
	}
	if j := list[0]; j.Reason != api.ReasonTimeout || j.Signal == nil || *j.Signal != "SIGTERM" || j.ExitCode != nil {
		t.Errorf("record: reason %q signal %v code %v; want timeout, SIGTERM, null", j.Reason, jobsDeref(j.Signal), jobsDeref(j.ExitCode))
	}

	// Detached, deaf to SIGTERM: SIGKILL after stop_grace; tend wait says 137.
	res = jobsRun(t, jt.tendCmd("spawn", "-d", "--timeout", "200ms", "--", "sh", "-c", `trap '' TERM; sleep 100`))
	id := strings.TrimSpace(res.stdout)
	if res.code() != 0 || !jobIDRe.MatchString(id) {
		t.Fatalf("tend spawn -d --timeout: exit %d, stdout %q, stderr %q", res.code(), res.stdout, res.stderr)
	}
	if res := jobsRun(t, jt.tendCmd("wait", id)); res.code() != 128+9 || !strings.Contains(res.stderr, "timeout") {
		t.Errorf("tend wait of a timed out job deaf to SIGTERM: exit %d, stderr %q; want 137 and the word timeout", res.code(), res.stderr)
	}
	j := jt.waitJob(t, id)
	if j.Reason != api.ReasonTimeout || j.Signal == nil || *j.Signal != "SIGKILL" {
		t.Errorf("record: reason %q signal %v; want timeout, SIGKILL", j.Reason, jobsDeref(j.Signal))
	}
	if el := j.EndedAt.Sub(*j.StartedAt); el < 650*time.Millisecond {
		t.Errorf("job ran %v: SIGKILL came before timeout + stop_grace (700ms)", el)
	}
	jt.expectHealthy(t)
}
