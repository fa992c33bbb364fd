//go:build linux

package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// A caller's signals carry only the caller's rights (DESIGN.md §1.7): a
// non-root caller's job whose group holds a process that a setuid program
// turned into another uid's (all three uids, as su and sudo do) cannot have
// that process signalled through tend, whether by a tree signal, a kill
// request, a timeout or tend's rescue of a unit helper the caller stopped; a
// signal request that can reach nothing the caller may signal is a 403.

func init() {
	helpers["sigcaller"] = helperSigCaller
}

const (
	scCaller = 1000 // the caller, in the socket's group (mode 0660)
	scOther  = 1001 // what the setuid program becomes
)

// scBecomeSource setresuid's fully to scOther, writes its pid, sleeps.
const scBecomeSource = `#include <stdio.h>
#include <unistd.h>
int main(void) {
	if (setresuid(1001, 1001, 1001) != 0) { perror("setresuid"); return 1; }
	printf("%d\n", (int)getpid());
	fflush(stdout);
	for (;;) pause();
}
`

// scSetuidProgram builds scBecomeSource, owned by scOther, mode 4755.
func scSetuidProgram(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("needs a C compiler for the setuid test program")
	}
	dir := hDir(t)
	src, bin := filepath.Join(dir, "become.c"), filepath.Join(dir, "become")
	if err := os.WriteFile(src, []byte(scBecomeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-O", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	if err := os.Chown(bin, scOther, scOther); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// scScript is the caller's job: its own background sleep, the setuid
// program in its group, then "up" once both pids are written; with
// trapTerm the main ignores SIGTERM (so only a SIGKILL ends it), with
// stopHelper it first stops its unit helper, its parent.
func scScript(dir, bin string, trapTerm, stopHelper bool) string {
	s := fmt.Sprintf(`sleep 1000 & echo $! > %[1]s/own
%[2]s > %[1]s/other.tmp &
while [ ! -s %[1]s/other.tmp ]; do sleep 0.01; done
mv %[1]s/other.tmp %[1]s/other
`, dir, bin)
	if trapTerm {
		s = "trap '' TERM\n" + s
	}
	if stopHelper {
		s += "kill -STOP $PPID\n"
	}
	return s + "echo $$ > " + dir + "/main; touch " + dir + "/up; wait\n"
}

func TestSignalsCarryCallersRights(t *testing.T) {
	t.Parallel()
	bin := scSetuidProgram(t)
	for _, track := range []string{"group", "subreaper"} {
		t.Run(track, func(t *testing.T) {
			t.Parallel()
			jt := startJobsTend(t, opts{}, fmt.Sprintf("[control]\nmode = \"0660\"\ngroup = \"%d\"\n[jobs]\nstop_grace = \"1s\"\n", scCaller))
			cases := []struct {
				name       string
				trapTerm   bool
				stopHelper bool
				timeout    string
				sig        *api.SignalRequest
				reason     string
			}{
				{name: "tree-sigterm", sig: &api.SignalRequest{Signal: "SIGTERM", Tree: true}, reason: api.ReasonSignaled},
				{name: "kill", trapTerm: true, sig: &api.SignalRequest{Signal: "SIGTERM", Kill: true}, reason: api.ReasonKilled},
				{name: "timeout", trapTerm: true, timeout: "1s", reason: api.ReasonTimeout},
			}
			if track == "subreaper" {
				// The caller stops his own helper: tend's rescue of its
				// tree, helperRescue (5s) after the kill, must not reach
				// the other uid's process either.
				cases = append(cases, struct {
					name       string
					trapTerm   bool
					stopHelper bool
					timeout    string
					sig        *api.SignalRequest
					reason     string
				}{name: "rescue", trapTerm: true, stopHelper: true, sig: &api.SignalRequest{Signal: "SIGTERM", Kill: true}, reason: api.ReasonKilled})
			}
			for _, tc := range cases {
				dir := filepath.Join(jt.dir, tc.name)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(dir, scCaller, scCaller); err != nil {
					t.Fatal(err)
				}
				req := api.JobRequest{Argv: []string{"sh", "-c", scScript(dir, bin, tc.trapTerm, tc.stopHelper)}, Track: track, Timeout: tc.timeout}
				id := scAs(t, jt.sock, "spawn", scJSON(t, req))
				svPoll(t, jt.tendRun, svWait, tc.name+": job up", func() bool { return svExists(filepath.Join(dir, "up")) })
				own, other := nthPid(t, jt.tendRun, filepath.Join(dir, "own"), 1), nthPid(t, jt.tendRun, filepath.Join(dir, "other"), 1)
				t.Cleanup(func() { scKill(jt.tendRun, other) })
				if tc.sig != nil {
					if got := scAs(t, jt.sock, "signal", id, scJSON(t, *tc.sig)); got != "200" {
						t.Errorf("%s: signal request as uid %d: %s, want 200", tc.name, scCaller, got)
					}
				}
				rec := jt.waitJob(t, id)
				if rec.Reason != tc.reason {
					t.Errorf("%s: job ended with reason %q, want %q", tc.name, rec.Reason, tc.reason)
				}
				svPoll(t, jt.tendRun, svWait, tc.name+": the caller's own sleep gone", func() bool { return !nsAlive(jt.tendRun, own) })
				// Long enough for every signal tend would send: the kill
				// after stop_grace (1s), the helper's SIGKILL rounds.
				time.Sleep(1500 * time.Millisecond)
				if !nsAlive(jt.tendRun, other) {
					t.Errorf("%s: the uid %d process %d died: a signal for the uid %d caller reached it", tc.name, scOther, other, scCaller)
				}
				scKill(jt.tendRun, other)
			}
			if track == "group" {
				scRefused(t, jt, bin)
			}
		})
	}
}

func scJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scAs runs the sigcaller helper, which becomes scCaller (primary group
// scCaller, the socket's) before it connects, and returns what it printed.
func scAs(t *testing.T, sock string, action ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), jobsWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, testBin, append([]string{"sigcaller", sock}, action...)...)
	cmd.Env = childEnv(nil)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("sigcaller %v: %v\n%s%s", action, err, out, ee.Stderr)
		}
		t.Fatalf("sigcaller %v: %v", action, err)
	}
	return strings.TrimSpace(string(out))
}

// helperSigCaller drops to scCaller (the test binary may not be the
// caller's to execute, so it starts as root; SO_PEERCRED is taken at
// connect(2), after the drop) and acts on the socket:
//
//	spawn JSON        POST /v1/jobs (an api.JobRequest, stdio /dev/null): the id
//	signal ID JSON    POST /v1/jobs/ID/signal (an api.SignalRequest): the HTTP code
//
// args: SOCKET ACTION ARGS...
func helperSigCaller(args []string) int {
	if err := syscall.Setgroups(nil); err != nil {
		return fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(scCaller); err != nil {
		return fail("setgid: %v", err)
	}
	if err := syscall.Setuid(scCaller); err != nil {
		return fail("setuid: %v", err)
	}
	c := api.NewClient(args[0])
	defer c.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), jobsWait)
	defer cancel()
	switch args[1] {
	case "spawn":
		var req api.JobRequest
		if err := json.Unmarshal([]byte(args[2]), &req); err != nil {
			return fail("%v", err)
		}
		j, err := c.Spawn(ctx, req, nil)
		if err != nil {
			return fail("spawn: %v", err)
		}
		fmt.Println(j.ID)
	case "signal":
		var req api.SignalRequest
		if err := json.Unmarshal([]byte(args[3]), &req); err != nil {
			return fail("%v", err)
		}
		code := 200
		if err := c.Signal(ctx, args[2], req); err != nil {
			if code = hCode(err); code == 0 {
				return fail("signal: %v", err)
			}
		}
		fmt.Println(code)
	default:
		return fail("sigcaller: unknown action %q", args[1])
	}
	return 0
}

// scKill SIGKILLs tend's descendant with pid nsPid in tend's namespace, as
// root, through a pidfd checked after opening.
func scKill(r *tendRun, nsPid int) {
	for _, p := range descendants(r.pid()) {
		fd, err := unix.PidfdOpen(p, 0)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err == nil && strings.Contains(string(b), "\nNSpid:") {
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(nsPid) {
					unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
				}
			}
		}
		unix.Close(fd)
	}
}

// scRefused: a job whose main process is itself the setuid program (all
// of its group is the other uid's) gets 403 to a signal request by the
// caller, naming the uid, and stays alive; the test then kills it.
func scRefused(t *testing.T, jt *jobsTend, bin string) {
	dir := filepath.Join(jt.dir, "refused")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, scCaller, scCaller); err != nil {
		t.Fatal(err)
	}
	req := api.JobRequest{Argv: []string{"sh", "-c", "exec " + bin + " > " + dir + "/other"}, Track: "group"}
	id := scAs(t, jt.sock, "spawn", scJSON(t, req))
	other := nthPid(t, jt.tendRun, filepath.Join(dir, "other"), 1)
	t.Cleanup(func() { scKill(jt.tendRun, other) })
	for _, sr := range []api.SignalRequest{{Signal: "SIGKILL"}, {Signal: "SIGKILL", Tree: true}} {
		if got := scAs(t, jt.sock, "signal", id, scJSON(t, sr)); got != "403" {
			t.Errorf("refused: signal %+v as uid %d to a job that is all uid %d's: %s, want 403", sr, scCaller, scOther, got)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if !nsAlive(jt.tendRun, other) {
		t.Errorf("refused: the uid %d main process %d died of the caller's signal", scOther, other)
	}
	scKill(jt.tendRun, other)
	if rec := jt.waitJob(t, id); rec.Signal == nil || *rec.Signal != "SIGKILL" {
		t.Errorf("refused: job ended with signal %v, want the test's SIGKILL", rec.Signal)
	}
}
