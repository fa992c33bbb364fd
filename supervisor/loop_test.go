//go:build linux

package supervisor

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
)

// mainPid is the pid the harness gives the first child: init mode's main.
const mainPid = 100

// svcFile parses a supervisor file for a test, without a socket.
func svcFile(t *testing.T, toml string) *config.Config {
	t.Helper()
	file, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	file.Control.Socket = ""
	return file
}

// waitSent waits (in bubble time) until want is among what was sent, and
// returns how long that took.
func (h *harness) waitSent(want string, within time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	for time.Since(start) <= within {
		synctest.Wait()
		if slices.Contains(h.signalsSent(), want) {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("%q not sent within %v; sent %q", want, within, h.signalsSent())
	return 0
}

// never checks that unwanted is not sent during d.
func (h *harness) never(unwanted string, d time.Duration) {
	h.t.Helper()
	time.Sleep(d)
	synctest.Wait()
	if slices.Contains(h.signalsSent(), unwanted) {
		h.t.Errorf("%q was sent; sent %q", unwanted, h.signalsSent())
	}
}

// TestGraceRows is the --grace / [shutdown] grace row of the knob table in
// init mode: unset, the runtime decides (tend never kills); a duration,
// SIGKILL of everything left that long after the SIGTERM.
func TestGraceRows(t *testing.T) {
	t.Run("unset: never", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}})
			synctest.Wait()
			h.sigs <- unix.SIGTERM
			h.waitSent("100:TERM", time.Second)
			h.never("-100:KILL", time.Hour)
			h.never("all:KILL", 0)
			h.exit(mainPid, exitedWith(0))
			h.reap()
			if code := h.exitCode(time.Minute); code != 0 {
				t.Errorf("exit code %d, want the main process's 0", code)
			}
		})
	})
	t.Run("5s: SIGKILL after 5s", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}, Grace: 5 * time.Second})
			synctest.Wait()
			h.sigs <- unix.SIGTERM
			h.waitSent("100:TERM", time.Second)
			if d := h.waitSent("-100:KILL", time.Minute); d < 4900*time.Millisecond || d > 5100*time.Millisecond {
				t.Errorf("SIGKILL %v after the SIGTERM, want 5s", d)
			}
			h.exit(mainPid, killedBy(unix.SIGKILL))
			h.reap()
			if code := h.exitCode(time.Minute); code != 137 {
				t.Errorf("exit code %d, want 137", code)
			}
		})
	})
}

// TestGraceClockStartsOnce: a second stop signal during the shutdown is
// forwarded but does not restart the budget: SIGKILL comes 5 s after the
// first (supervisor/init_test.go's TestInitGrace, before the one loop).
func TestGraceClockStartsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}, Grace: 5 * time.Second})
		synctest.Wait()
		start := time.Now()
		h.sigs <- unix.SIGTERM
		h.waitSent("100:TERM", time.Second)
		time.Sleep(3 * time.Second)
		h.sigs <- unix.SIGINT
		h.waitSent("100:INT", time.Second)
		h.waitSent("-100:KILL", time.Minute)
		if d := time.Since(start); d < 4900*time.Millisecond || d > 5100*time.Millisecond {
			t.Errorf("SIGKILL %v after the first SIGTERM (SIGINT at 3s), want 5s", d)
		}
		h.exit(mainPid, killedBy(unix.SIGKILL))
		h.reap()
		if code := h.exitCode(time.Minute); code != 137 {
			t.Errorf("exit code %d, want 137", code)
		}
	})
}

// TestRewriteToZeroStartsNothing: -r TERM:0 drops SIGTERM: it is not
// forwarded, the kill clock of --grace does not start, health stays good.
func TestRewriteToZeroStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}, Grace: time.Second,
			Rewrite: map[unix.Signal]unix.Signal{unix.SIGTERM: 0}})
		synctest.Wait()
		h.sigs <- unix.SIGTERM
		h.never("-100:KILL", 5*time.Second)
		var health api.Health
		h.do(func() { health = h.l.health(api.HealthReady) })
		if !health.Healthy || len(h.signalsSent()) != 0 {
			t.Errorf("after a dropped SIGTERM: health %+v, sent %q; want healthy and nothing sent", health, h.signalsSent())
		}
		h.sigs <- unix.SIGUSR1 // the rest still goes through
		h.waitSent("100:USR1", time.Second)
		h.exit(mainPid, exitedWith(3))
		h.reap()
		if code := h.exitCode(time.Minute); code != 3 {
			t.Errorf("exit code %d, want 3", code)
		}
	})
}

// TestStopTimeoutRows is stop_timeout's row: unset, what is left of the
// budget; 0, SIGKILL at once (no stop signal); a duration, capped by the
// budget.
func TestStopTimeoutRows(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		term      bool
		kill      time.Duration
	}{
		{"unset", "", true, 10 * time.Second},
		{"0", `stop_timeout = "0"`, false, 0},
		{"2s", `stop_timeout = "2s"`, true, 2 * time.Second},
		{"over the budget", `stop_timeout = "30s"`, true, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				file := svcFile(t, "[shutdown]\ngrace = \"10s\"\n[[service]]\nname = \"web\"\ncommand = [\"/bin/true\", \"web\"]\n"+tc.key+"\n")
				h := newHarness(t, Config{File: file, Grace: file.Shutdown.Grace})
				synctest.Wait()
				h.sigs <- unix.SIGTERM
				d := h.waitSent("-100:KILL", time.Minute)
				if d < tc.kill-100*time.Millisecond || d > tc.kill+100*time.Millisecond {
					t.Errorf("SIGKILL of the group %v after the SIGTERM, want %v", d, tc.kill)
				}
				// A group unit's stop signal goes to its group (kill_mode
				// unit), while the leader can still name it.
				if got := slices.Contains(h.signalsSent(), "-100:TERM"); got != tc.term {
					t.Errorf("stop signal sent: %v, want %v (sent %q)", got, tc.term, h.signalsSent())
				}
				h.exit(mainPid, killedBy(unix.SIGKILL))
				h.reap()
				h.exitCode(time.Minute)
			})
		})
	}
}

// TestJobRows is the [jobs] rows: stop_grace 0 is SIGKILL at once, a
// duration is capped by the budget; timeout 0 is none.
func TestJobRows(t *testing.T) {
	for _, tc := range []struct {
		name, jobs string
		term       bool
		kill       time.Duration
	}{
		{"stop_grace 0", `stop_grace = "0"`, false, 0},
		{"stop_grace 1s", `stop_grace = "1s"`, true, time.Second},
		{"stop_grace over the budget", `stop_grace = "5s"`, true, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				file := svcFile(t, "[shutdown]\ngrace = \"2s\"\n[jobs]\ntimeout = \"0\"\n"+tc.jobs+"\n")
				h := newHarness(t, Config{File: file, Init: true, Main: []string{"/bin/true", "main"}, Grace: file.Shutdown.Grace})
				synctest.Wait()
				j, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "job"}})
				if err != nil {
					t.Fatal(err)
				}
				pid := *h.jobRec(j).PID
				h.never("-"+itoa(pid)+":TERM", time.Hour) // timeout 0: none
				h.sigs <- unix.SIGTERM
				d := h.waitSent("-"+itoa(pid)+":KILL", time.Minute)
				if d < tc.kill-100*time.Millisecond || d > tc.kill+100*time.Millisecond {
					t.Errorf("job SIGKILL %v after the SIGTERM, want %v", d, tc.kill)
				}
				if got := slices.Contains(h.signalsSent(), "-"+itoa(pid)+":TERM"); got != tc.term {
					t.Errorf("job SIGTERM sent: %v, want %v (sent %q)", got, tc.term, h.signalsSent())
				}
				h.exit(pid, killedBy(unix.SIGKILL))
				h.exit(mainPid, killedBy(unix.SIGTERM))
				h.reap()
				if code := h.exitCode(time.Minute); code != 143 {
					t.Errorf("exit code %d, want the main process's 143", code)
				}
				if rec := j.Rec; rec.Reason != api.ReasonShutdown { // the loop has ended: no race
					t.Errorf("job record %+v, want reason shutdown", rec)
				}
			})
		})
	}
}

// TestJobsStopWithMain: in init mode as in supervisor mode, a stop signals
// the jobs at the moment the main process gets its signal, not after it
// has exited.
func TestJobsStopWithMain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		j, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "job"}})
		if err != nil {
			t.Fatal(err)
		}
		pid := *h.jobRec(j).PID
		h.sigs <- unix.SIGTERM
		synctest.Wait()
		sent := h.signalsSent()
		if !slices.Contains(sent, "100:TERM") || !slices.Contains(sent, "-"+itoa(pid)+":TERM") {
			t.Fatalf("sent %q at the SIGTERM, want the main process and the job's group both", sent)
		}
		h.exit(pid, killedBy(unix.SIGTERM))
		h.exit(mainPid, exitedWith(0))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// TestCleanupSweep: after the main process exits by itself, what is left
// gets SIGTERM, SIGKILL after --cleanup-grace, and tend leaves at most
// finalWait later even if something never goes (D state).
func TestCleanupSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}, CleanupGrace: 2 * time.Second})
		synctest.Wait()
		h.mu.Lock()
		h.live[555] = true // an orphan nobody registered, stuck for good
		h.mu.Unlock()
		start := time.Now()
		h.exit(mainPid, exitedWith(4))
		h.reap()
		h.waitSent("all:TERM", time.Second)
		if d := h.waitSent("all:KILL", time.Minute); d < 1900*time.Millisecond || d > 2100*time.Millisecond {
			t.Errorf("SIGKILL of what is left %v after the main exited, want 2s", d)
		}
		if code := h.exitCode(time.Minute); code != 4 {
			t.Errorf("exit code %d, want 4", code)
		}
		if d := time.Since(start); d < 4900*time.Millisecond || d > 5100*time.Millisecond {
			t.Errorf("done %v after the main exited, want 2s + finalWait", d)
		}
	})
}

// TestCleanupSweepGoneAtTerm: leftovers that go at the sweep's SIGTERM
// get no SIGKILL, and tend leaves as soon as they are gone, not at the
// cleanup grace (TestInitCleanup's second case, before the one loop).
func TestCleanupSweepGoneAtTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}, CleanupGrace: 2 * time.Second})
		synctest.Wait()
		h.mu.Lock()
		h.live[555] = true // an orphan, which goes at SIGTERM
		h.mu.Unlock()
		start := time.Now()
		h.exit(mainPid, exitedWith(0))
		h.reap()
		h.waitSent("all:TERM", time.Second)
		time.Sleep(100 * time.Millisecond)
		h.exit(555, killedBy(unix.SIGTERM))
		h.reap()
		if code := h.exitCode(time.Minute); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("done %v after the main exited, want at the leftover's exit (100ms), not the 2s grace", d)
		}
		if slices.Contains(h.signalsSent(), "all:KILL") {
			t.Errorf("SIGKILL sent although everything went at SIGTERM: %q", h.signalsSent())
		}
	})
}

// TestJobTimerStoppedAtExit: a job that ends before its timeout leaves no
// timer behind (invariant 8: idle means idle; jobs/run_test.go's
// TestTimerStoppedAtExit, before the one loop).
func TestJobTimerStoppedAtExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		var before, during, after int
		h.do(func() { before = len(h.l.tm.byID) })
		j, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "job"}, Timeout: time.Hour, TimeoutSet: true})
		if err != nil {
			t.Fatal(err)
		}
		h.do(func() { during = len(h.l.tm.byID) })
		pid := *h.jobRec(j).PID
		h.exit(pid, exitedWith(0))
		h.reap()
		synctest.Wait()
		h.do(func() { after = len(h.l.tm.byID) })
		if during != before+1 || after != before {
			t.Errorf("timers: %d before the job, %d while it runs, %d after its exit; want %d, %d, %d",
				before, during, after, before, before+1, before)
		}
		if rec := h.jobRec(j); rec.Reason != api.ReasonExited {
			t.Errorf("job record %+v, want reason exited", rec)
		}
		h.sigs <- unix.SIGTERM
		h.waitSent("100:TERM", time.Second)
		h.exit(mainPid, killedBy(unix.SIGTERM))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// TestShutdownDropsQueuedJobs: at the shutdown a queued job is dropped
// (exited, reason shutdown, no pid) while the running one is stopped, and a
// submission is refused with 503; with no job at all, [jobs] stop =
// "first" waits for nothing (jobs/stop_test.go's TestShutdown and
// TestShutdownIdle, before the one loop).
func TestShutdownDropsQueuedJobs(t *testing.T) {
	t.Run("queued dropped, 503 after", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			file := svcFile(t, "[jobs]\nmax_running = 1\nmax_queued = 5\n")
			h := newHarness(t, Config{File: file, Init: true, Main: []string{"/bin/true", "main"}})
			synctest.Wait()
			run, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "run"}})
			if err != nil {
				t.Fatal(err)
			}
			q, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "queued"}})
			if err != nil || h.jobRec(q).State != api.StateQueued {
				t.Fatalf("second job: %+v, %v; want queued", h.jobRec(q), err)
			}
			pid := *h.jobRec(run).PID
			h.sigs <- unix.SIGTERM
			h.waitSent("-"+itoa(pid)+":TERM", time.Second)
			if rec := h.jobRec(q); rec.State != api.StateExited || rec.Reason != api.ReasonShutdown || rec.PID != nil {
				t.Errorf("queued job at the shutdown: %+v, want exited, reason shutdown, no pid", rec)
			}
			if _, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "late"}}); httpStatus(err) != http.StatusServiceUnavailable {
				t.Errorf("submission during the shutdown: %v, want a 503", err)
			}
			h.exit(pid, killedBy(unix.SIGTERM))
			h.exit(mainPid, killedBy(unix.SIGTERM))
			h.reap()
			if code := h.exitCode(time.Minute); code != 143 {
				t.Errorf("exit code %d, want 143", code)
			}
			if rec := run.Rec; rec.Reason != api.ReasonShutdown {
				t.Errorf("running job's record %+v, want reason shutdown", rec)
			}
		})
	})
	t.Run("idle: stop first waits for nothing", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			file := svcFile(t, "[jobs]\nstop = \"first\"\n")
			h := newHarness(t, Config{File: file, Init: true, Main: []string{"/bin/true", "main"}})
			synctest.Wait()
			h.sigs <- unix.SIGTERM
			if d := h.waitSent("100:TERM", time.Second); d != 0 {
				t.Errorf("the main process got SIGTERM %v after tend, with no job to wait for: want at once", d)
			}
			h.exit(mainPid, killedBy(unix.SIGTERM))
			h.reap()
			h.exitCode(time.Minute)
		})
	})
}

// TestConnClosedBoundOnly: a closing connection drops the queued job bound
// to it (reason disconnected) and does nothing to a job submitted without
// bind on another (jobs/stop_test.go's TestBindDisconnected and
// TestUnboundIgnoresConnClosed, before the one loop).
func TestConnClosedBoundOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := svcFile(t, "[jobs]\nmax_running = 1\nmax_queued = 5\n")
		h := newHarness(t, Config{File: file, Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		free, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "free"}, Conn: 7})
		if err != nil {
			t.Fatal(err)
		}
		bound, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "bound"}, Conn: 8, Bind: true})
		if err != nil || h.jobRec(bound).State != api.StateQueued {
			t.Fatalf("bound job: %+v, %v; want queued", h.jobRec(bound), err)
		}
		be := newBackend(h.l, "")
		be.ConnClosed(7)
		be.ConnClosed(8)
		synctest.Wait()
		if rec := h.jobRec(free); rec.State != api.StateRunning || len(h.signalsSent()) != 0 {
			t.Errorf("unbound job after its connection closed: %s, sent %q; want running, nothing sent", rec.State, h.signalsSent())
		}
		if rec := h.jobRec(bound); rec.State != api.StateExited || rec.Reason != api.ReasonDisconnected || rec.PID != nil {
			t.Errorf("bound queued job after its connection closed: %+v, want exited, reason disconnected, no pid", rec)
		}
		pid := *h.jobRec(free).PID
		h.exit(pid, exitedWith(0))
		h.exit(mainPid, exitedWith(0))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// TestSignalRequestRows: what a job signal request does on the loop: an
// unknown id is a 404; a queued job has no process: a signal that would
// not end it (WINCH) is a 409, one that would (TERM) drops it (exited,
// reason killed, by SIGTERM); a running job's signal without kill is sent
// as it is and its death is reason signaled (jobs/stop_test.go's
// TestSignalErrors, before the one loop; bad names are the validator's:
// test/jobs_badinput_test.go).
func TestSignalRequestRows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := svcFile(t, "[jobs]\nmax_running = 1\nmax_queued = 5\n")
		h := newHarness(t, Config{File: file, Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		run, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "run"}})
		if err != nil {
			t.Fatal(err)
		}
		q, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "queued"}})
		if err != nil {
			t.Fatal(err)
		}
		signal := func(id string, sig unix.Signal) (err error) {
			h.do(func() { err = h.l.signalRequest(root, id, control.JobSignal{Sig: sig}) })
			return err
		}
		if err := signal("j-00000000", unix.SIGTERM); httpStatus(err) != http.StatusNotFound {
			t.Errorf("signal to an unknown job: %v, want a 404", err)
		}
		if err := signal(q.Rec.ID, unix.SIGWINCH); httpStatus(err) != http.StatusConflict {
			t.Errorf("WINCH to a queued job: %v, want a 409", err)
		}
		if err := signal(q.Rec.ID, unix.SIGTERM); err != nil {
			t.Errorf("TERM to a queued job: %v, want it dropped", err)
		}
		if rec := h.jobRec(q); rec.State != api.StateExited || rec.Reason != api.ReasonKilled || rec.Signal == nil || *rec.Signal != "SIGTERM" || rec.PID != nil {
			t.Errorf("queued job after TERM: %+v, want exited, reason killed, by SIGTERM, no pid", rec)
		}
		pid := *h.jobRec(run).PID
		if err := signal(run.Rec.ID, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if sent := h.signalsSent(); !slices.Contains(sent, itoa(pid)+":KILL") && !slices.Contains(sent, "-"+itoa(pid)+":KILL") {
			t.Errorf("sent %q, want SIGKILL to job pid %d", sent, pid)
		}
		h.exit(pid, killedBy(unix.SIGKILL))
		h.reap()
		synctest.Wait()
		if rec := h.jobRec(run); rec.Reason != api.ReasonSignaled {
			t.Errorf("running job killed by a signal request without kill: reason %q, want signaled", rec.Reason)
		}
		if err := signal(run.Rec.ID, unix.SIGTERM); httpStatus(err) != http.StatusConflict {
			t.Errorf("signal to an exited job: %v, want a 409", err)
		}
		h.exit(mainPid, exitedWith(0))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// TestExecFailureBackoff: a service that cannot be executed restarts with
// its backoff, not each time another service becomes ready.
func TestExecFailureBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := svcFile(t, `
[[service]]
name = "bad"
command = ["/nonexistent/program"]
backoff = "1s"
[[service]]
name = "slow"
command = ["/bin/true", "slow"]
ready = "exec:/bin/true probe"
`)
		h := newHarness(t, Config{File: file, Grace: file.Shutdown.Grace})
		synctest.Wait()
		runs := func() (int, string) {
			var st []api.Service
			h.do(func() { st = h.l.services() })
			return st[0].Runs, st[0].State
		}
		if n, state := runs(); n != 1 || state != "backoff" {
			t.Fatalf("bad: %d runs, %s; want 1 and backoff", n, state)
		}
		time.Sleep(500 * time.Millisecond)
		h.exit(h.pidOf("probe"), exitedWith(0)) // slow becomes ready
		h.reap()
		synctest.Wait()
		if n, _ := runs(); n != 1 {
			t.Errorf("bad ran %d times by 0.5s (when slow became ready), want 1", n)
		}
		time.Sleep(600 * time.Millisecond)
		synctest.Wait()
		if n, _ := runs(); n != 2 {
			t.Errorf("bad ran %d times by 1.1s, want 2 (backoff 1s)", n)
		}
		h.sigs <- unix.SIGTERM
		synctest.Wait()
		h.exit(h.pidOf("slow"), killedBy(unix.SIGTERM))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// TestInitMainStatus: init mode's main is the service "main", with a
// real since, ready while it runs.
func TestInitMainStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		var st []api.Service
		h.do(func() { st = h.l.services() })
		if len(st) != 1 || st[0].Name != "main" || st[0].Since.IsZero() || !st[0].Ready || st[0].PID == nil || *st[0].PID != mainPid {
			t.Errorf("status = %+v, want main, ready, pid %d, a since", st, mainPid)
		}
		h.exit(mainPid, exitedWith(0))
		h.reap()
		h.exitCode(time.Minute)
	})
}

// httpStatus is the status an error is answered with, 0 for none.
func httpStatus(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
