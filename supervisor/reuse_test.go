//go:build linux

package supervisor

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/spawn"
)

var root = control.Caller{UID: 0}

// newJob is a prepared job, not yet admitted, for use inside h.do.
func (h *harness) newJob(argv ...string) *jobs.Job {
	p, err := spawn.Prepare(spawn.Spec{Argv: argv, Dir: "/", Setsid: true})
	if err != nil {
		h.t.Fatal(err)
	}
	j := jobs.NewJob(argv, 0, nil, time.Now())
	j.Prep = p
	return j
}

// sentTo lists what was sent to pid or its group.
func sentTo(sent []string, pid int) []string {
	var out []string
	for _, s := range sent {
		target, _, _ := strings.Cut(s, ":")
		if target == itoa(pid) || target == itoa(-pid) {
			out = append(out, s)
		}
	}
	return out
}

func itoa(n int) string {
	s := ""
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		s = string(rune('0'+n%10)) + s
		if n /= 10; n == 0 {
			break
		}
	}
	if neg {
		s = "-" + s
	}
	return s
}

// TestStaleJobSignalNeverReachesRecycledPid is the race of issue 10: job
// A's exit is reaped but not yet taken by the loop; job B gets A's number;
// then a signal request for A and A's timeout both come. Under a rule
// that asks only whether *some* child has the number (the old
// Reaper.Signal), both would kill B's group. Through A's handle neither
// reaches anything, and B's own handle still works.
func TestStaleJobSignalNeverReachesRecycledPid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		a, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "A"}, Timeout: time.Second, TimeoutSet: true})
		if err != nil {
			t.Fatal(err)
		}
		pidA := *h.jobRec(a).PID
		var b *jobs.Job
		var sigErr error
		h.do(func() {
			h.exit(pidA, exitedWith(0))
			h.reap() // A is reaped; its exit waits for the loop
			h.reuse(pidA)
			b = h.newJob("/bin/true", "B")
			if _, _, err := h.l.submitJob(b, control.Submit{Caller: root}); err != nil {
				t.Fatal(err)
			}
			if *b.Rec.PID != pidA {
				t.Fatalf("B got pid %d, want A's %d", *b.Rec.PID, pidA)
			}
			sigErr = h.l.signalRequest(root, a.Rec.ID, control.JobSignal{Sig: unix.SIGTERM, Tree: true, Kill: true})
			h.l.stopJob(a, api.ReasonTimeout) // A's timeout falls now
		})
		var se *api.StatusError
		if !errors.As(sigErr, &se) || se.Code != http.StatusConflict {
			t.Errorf("signal request for A = %v, want 409 (it has exited)", sigErr)
		}
		synctest.Wait()
		if got := sentTo(h.signalsSent(), pidA); len(got) != 0 {
			t.Fatalf("signals sent to pid %d, now B's: %q", pidA, got)
		}
		ra := h.jobRec(a)
		if ra.State != api.StateExited || ra.ExitCode == nil || *ra.ExitCode != 0 || ra.Reason != api.ReasonExited {
			t.Errorf("A's record = %+v, want exited 0 by itself", ra)
		}
		if rb := h.jobRec(b); rb.State != api.StateRunning {
			t.Errorf("B's record = %+v, want running", rb)
		}
		time.Sleep(2 * time.Second) // past A's timeout: its timer is gone with its exit
		if got := sentTo(h.signalsSent(), pidA); len(got) != 0 {
			t.Fatalf("signals sent to pid %d after A's timeout: %q", pidA, got)
		}
		// B's own handle reaches B.
		h.do(func() { sigErr = h.l.signalRequest(root, b.Rec.ID, control.JobSignal{Sig: unix.SIGUSR1, Tree: true}) })
		if got := sentTo(h.signalsSent(), pidA); sigErr != nil || !slices.Equal(got, []string{"-" + itoa(pidA) + ":USR1"}) {
			t.Errorf("signal to B: %v, sent %q; want USR1 to its group", sigErr, got)
		}
		h.exit(pidA, killedBy(unix.SIGUSR1))
		h.reap()
		synctest.Wait()
		if rb := h.jobRec(b); rb.Signal == nil || *rb.Signal != "SIGUSR1" || rb.Reason != api.ReasonSignaled {
			t.Errorf("B's record = %+v, want its own exit (SIGUSR1)", rb)
		}
		h.sigs <- unix.SIGTERM
		h.exit(100, killedBy(unix.SIGTERM))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// TestExitCreditedByHandle: a probe's exit and the exit of a job that got
// the probe's number are each their own owner's. A pid comparison would
// credit the job's exit 1 to the service's probe (or its run).
func TestExitCreditedByHandle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file, err := config.Parse([]byte(`
[[service]]
name = "web"
command = ["/bin/true", "web"]
ready = "exec:/bin/true probe"
`), "test")
		if err != nil {
			t.Fatal(err)
		}
		file.Control.Socket = ""
		h := newHarness(t, Config{File: file})
		synctest.Wait()
		web, probe := h.pidOf("web"), h.pidOf("probe")
		if web == 0 || probe == 0 {
			t.Fatalf("web %d, probe %d: both should run", web, probe)
		}
		var c *jobs.Job
		h.do(func() {
			h.exit(probe, exitedWith(0))
			h.reap()
			h.reuse(probe)
			c = h.newJob("/bin/true", "C")
			if _, _, err := h.l.submitJob(c, control.Submit{Caller: root}); err != nil {
				t.Fatal(err)
			}
		})
		synctest.Wait()
		var st []api.Service
		h.do(func() { st = h.l.services() })
		if st[0].State != "running" || st[0].Runs != 1 {
			t.Fatalf("web = %+v, want running (ready) in run 1", st[0])
		}
		h.exit(probe, exitedWith(1)) // C, with the probe's old number
		h.reap()
		synctest.Wait()
		h.do(func() { st = h.l.services() })
		if rc := h.jobRec(c); rc.ExitCode == nil || *rc.ExitCode != 1 {
			t.Errorf("C's record = %+v, want its exit 1", rc)
		}
		if st[0].State != "running" || st[0].Runs != 1 || st[0].LastCode != nil {
			t.Errorf("web = %+v: C's exit touched it", st[0])
		}
		h.sigs <- unix.SIGTERM
		synctest.Wait()
		h.exit(web, killedBy(unix.SIGTERM))
		h.reap()
		if code := h.exitCode(time.Minute); code != 143 {
			t.Errorf("exit code %d, want 143", code)
		}
	})
}
