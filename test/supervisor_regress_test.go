//go:build linux

package test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests of this file each once failed against tend: they keep the bugs
// they found fixed.

// TestSupervisorGraceOverMainCode: a main service that ignores SIGTERM is
// SIGKILLed when the grace is over, and tend's code is the main's (137); its
// exit is logged like any other. 150 more services killed at the end of the
// grace and a flood of SIGWINCH (forwarded, harmless) keep tend's loop busy
// then, so that the main's exit is still queued (or not even delivered by the
// reaper) when the loop sees "no children left" and finishes; on an idle
// machine this happens about once in 40 runs without them.
func TestSupervisorGraceOverMainCode(t *testing.T) {
	t.Parallel()
	for i := range 10 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := "[shutdown]\ngrace = \"300ms\"\n"
			for j := range 150 {
				cfg += fmt.Sprintf("[[service]]\nname = \"s%d\"\ncommand = [\"sleep\", \"1000\"]\n", j)
			}
			r := svStart(t, opts{pid1: true, env: []string{"D=" + dir}}, dir, cfg,
				"--", "sh", "-c", `trap '' TERM; echo > "$D/main.up"; `+svLoop)
			svUp(t, r, dir, "main")
			r.signal(unix.SIGTERM)
			flood := time.NewTicker(50 * time.Microsecond)
			defer flood.Stop()
		wait:
			for {
				select {
				case <-r.done:
					break wait
				case <-flood.C:
					_ = unix.Kill(r.pid(), unix.SIGWINCH)
				case <-time.After(exitTimeout):
					t.Fatalf("tend still running %v after SIGTERM", exitTimeout)
				}
			}
			code := shellCode(r.cmd.ProcessState)
			stderr := r.stderrAll()
			if code != 137 {
				t.Errorf("tend exit code = %d, want 137: the main service's code (SIGKILL at the end of the grace); stderr:\n%s", code, stderr)
			}
			if svLog(stderr, "service exited", "main") != 1 {
				t.Errorf("the main's exit is not logged; stderr:\n%s", stderr)
			}
		})
	}
}

// TestSupervisorFailedStaysFailed: a service that failed for good is not
// relabelled "stopped" by the shutdown (log: msg="service stopped"
// service=flaky from=failed).
func TestSupervisorFailedStaysFailed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := svStart(t, opts{pid1: true}, dir, svShell("steady", dir, svLoop)+svShell("flaky", dir, "exit 3", `max_restarts = 0`))
	svWaitLog(t, r, "service failed", "flaky")
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
	if stderr := r.stderrAll(); svLog(stderr, "service stopped", "flaky") != 0 {
		t.Errorf("the failed service was relabelled stopped at the shutdown:\n%s", stderr)
	}
}

// TestSupervisorProbeStallsShutdown: a ready probe still running when its
// service is killed (ready_timeout) or stopped (SIGTERM to tend) holds the
// shutdown until the grace is over: its exit comes back after the service's,
// and onExit drops a probe exit once the service is no longer starting,
// without advancing the shutdown. A probe that hangs (curl without
// --max-time) is enough. The ready_timeout case fails every time; the SIGTERM
// case about 3 times in 4 (hence 4 runs).
func TestSupervisorProbeStallsShutdown(t *testing.T) {
	t.Parallel()
	t.Run("ready_timeout", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		r := svStart(t, opts{pid1: true}, dir, "[shutdown]\ngrace = \"5s\"\n"+svShell("a", dir, "exec sleep 1000",
			`ready = "exec:sleep 10"`, `ready_timeout = "300ms"`, `critical = true`))
		code := r.wait()
		if took := r.ended.Sub(r.start); code == 0 || took > 3*time.Second {
			t.Errorf("tend exited %d %v after its start, want non-zero soon after the 300ms ready_timeout, not at the 5s grace; stderr:\n%s",
				code, took, r.stderrAll())
		}
	})
	for i := range 4 {
		t.Run("SIGTERM/"+strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := svStart(t, opts{pid1: true}, dir, "[shutdown]\ngrace = \"5s\"\n"+svShell("a", dir, `: > "$D/a.up"; exec sleep 1000`,
				`ready = "exec:sleep 10"`))
			svPoll(t, r, svWait, "a started", func() bool { return svExists(dir + "/a.up") })
			code, took := svTermAndExit(t, r)
			if code != 143 || took > 3*time.Second {
				t.Errorf("tend exited %d %v after SIGTERM, want 143 at once, not at the 5s grace; stderr:\n%s", code, took, r.stderrAll())
			}
		})
	}
}

// TestSupervisorExecFailureLoopServed: a command that cannot start, restarted
// at once (restart_now = [127]) without a practical limit, used to recurse
// inside the loop until the stack overflowed, with no signal served
// meanwhile. Each restart now goes back through the loop: SIGTERM is
// answered at once.
func TestSupervisorExecFailureLoopServed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := svStart(t, opts{pid1: true}, dir, `[[service]]
name = "ghost"
command = ["/nonexistent/ghost"]
restart_now = [127]
max_restarts = 2000000000
`)
	svWaitLog(t, r, "service cannot start", "ghost")
	time.Sleep(300 * time.Millisecond)
	code, took := svTermAndExit(t, r)
	if code != 143 || took > 3*time.Second {
		t.Errorf("tend exited %d %v after SIGTERM, want 143 at once", code, took)
	}
}
