//go:build linux

package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// The black-box regressions of issue 10 (DESIGN.md §1.3): no signal or
// exit ever reaches the wrong process. Each iteration races a target's own
// end against something tend does to it (a timeout, a signal request, a
// stop, a probe's verdict) while a new process B takes the target's number
// (see reuse_helpers_test.go). B must never be signalled and the target's
// record must keep its own exit. Run them with TEND_PIDFD=0 too: tend then
// has no pidfds and relies on its registry rule alone.

// reuseCtx bounds a whole scenario's requests: its iterations together,
// each bounded by jobsWait on its own, may take longer than jobsWait.
func reuseCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// reuseN is the iterations of each scenario.
const reuseN = 40

// reuseTrack makes every unit of these tests a group unit: tend's own child
// is then the target, whose number B takes, and the watcher (in a session
// of its own) is outside the target's unit. Under the subreaper track the
// target is the helper's child and the watcher would be part of the unit;
// the helper's own pid-reuse rule is tested in unit/helper (pidns_test.go).
const reuseTrack = "[defaults]\ntrack = \"group\"\n"

// TestReuseJobTimeout: job A's timeout falls just as A (sleep 0.1) ends by
// itself, from a little before to a little after; B (sleep 0.3) takes A's
// number at once. With [jobs] stop_grace = 100ms a SIGKILL that a stale
// timeout would arm also falls within B's life. B must exit 0; A's record
// is its own: exit 0 (reason exited, or timeout when the SIGTERM was
// sent as A was already exiting) or the timeout's SIGTERM (reason
// timeout), never B's.
func TestReuseJobTimeout(t *testing.T) {
	jt := startJobsTend(t, reuseOpts, reuseTrack+"[jobs]\nstop_grace = \"100ms\"\n")
	reuseLoad(t, jt.sock, 4)
	k := newReuseKit(t)
	reused, timedOut, lateTerm, early := 0, 0, 0, 0
	for i := range reuseN {
		tag := fmt.Sprintf("a%d", i)
		// The timer starts at the fork, sleep's 100ms a millisecond or
		// two later (sh, the watcher's fork, exec): -2ms..+18ms.
		to := 100*time.Millisecond + time.Duration(2*(i%11)-2)*time.Millisecond
		a := jt.spawn(t, api.JobRequest{Argv: k.argv(tag, "0.3", "", "/bin/sleep 0.1"), Timeout: to.String()})
		ra := jt.waitJob(t, a.ID)
		rec := k.result(t, jt.tendRun, tag, true)
		if rec.reused() {
			reused++
		} else {
			t.Logf("%s: A had pid %d, B got %d: no reuse", tag, rec.p, rec.b)
		}
		if rec.code != 0 {
			t.Errorf("%s: B (pid %d, A's was %d) ended with status %d: it was signalled; tend's stderr:\n%s", tag, rec.b, rec.p, rec.code, jt.stderrNow())
		}
		switch {
		case ra.Reason == api.ReasonExited && ra.ExitCode != nil && *ra.ExitCode == 0 && ra.Signal == nil:
		case ra.Reason == api.ReasonTimeout && ra.Signal != nil && *ra.Signal == "SIGTERM" && ra.ExitCode == nil:
			timedOut++
		case ra.Reason == api.ReasonTimeout && ra.ExitCode != nil && *ra.ExitCode == 0 && ra.Signal == nil:
			// The SIGTERM was sent while A lived but A was already on
			// its way out (the kernel accepts a signal for a process
			// that is exiting): the status is still A's own.
			lateTerm++
		case ra.Reason == api.ReasonTimeout && ra.Signal != nil && *ra.Signal == "SIGKILL" && ra.ExitCode == nil:
			// The timeout came while A still ignored SIGTERM, waiting
			// for W to leave its group (reuseKit.launch): A, alive,
			// got stop_grace's SIGKILL. Its own death; B's status
			// above says whether a SIGKILL went astray.
			early++
		default:
			t.Errorf("%s: A's record %s: want its own exit 0 (reason exited) or SIGTERM (reason timeout)", tag, jobString(ra))
		}
	}
	t.Logf("A died of its timeout in %d of %d iterations, exited 0 just as the timeout was sent in %d, was SIGKILLed by it before its watcher was out of its group in %d, ended by itself in the others", timedOut, reuseN, lateTerm, early)
	checkReuseRate(t, "job timeout", reused, reuseN)
	jt.expectHealthy(t)
}

// TestReuseJobSignal: signal requests for job A (SIGUSR1, alternately to
// A and to its group) come as fast as the API answers, from just before
// A's end until B holds A's number. In even iterations A ignores SIGUSR1
// and ends by itself; in odd ones the first request kills it and the
// next ones race that exit. Every answer is 200 while A runs, then 409
// (never a 200 again); B never gets the signal; A's record is its own.
func TestReuseJobSignal(t *testing.T) {
	jt := startJobsTend(t, reuseOpts, reuseTrack)
	reuseLoad(t, jt.sock, 4)
	k := newReuseKit(t)
	ctx := reuseCtx(t)
	reused, refusedTotal := 0, 0
	for i := range reuseN {
		tag := fmt.Sprintf("b%d", i)
		pre := ""
		if i%2 == 0 {
			pre = "trap '' USR1; " // exec keeps SIG_IGN: A outlives the requests
		}
		a := jt.spawn(t, api.JobRequest{Argv: k.argv(tag, "0.3", pre, "/bin/sleep 0.1")})
		t0 := time.Now()
		sleepUntil(t0, 85*time.Millisecond)
		refused, after, sent := false, 0, 0
		for after < 5 {
			err := jt.client.Signal(ctx, a.ID, api.SignalRequest{Signal: "SIGUSR1", Tree: sent%2 == 1})
			sent++
			switch c := jobsCode(err); c {
			case 0:
				if refused {
					t.Errorf("%s: a signal request for A was answered 200 after a 409: it reached some process", tag)
				}
			case http.StatusConflict:
				refused = true
				refusedTotal++
			default:
				t.Fatalf("%s: signal request for A: %v (code %d), want 200 or 409", tag, err, c)
			}
			if refused && svExists(k.path(tag, "b")) {
				after++ // requests made while B holds A's number
			}
			if time.Since(t0) > jobsWait {
				t.Fatalf("%s: A not refused and B not forked within %v", tag, jobsWait)
			}
		}
		ra := jt.waitJob(t, a.ID)
		rec := k.result(t, jt.tendRun, tag, true)
		if rec.reused() {
			reused++
		} else {
			t.Logf("%s: A had pid %d, B got %d: no reuse", tag, rec.p, rec.b)
		}
		if rec.code != 0 {
			t.Errorf("%s: B (pid %d, A's was %d) ended with status %d (138 = SIGUSR1): a request for A reached it; tend's stderr:\n%s", tag, rec.b, rec.p, rec.code, jt.stderrNow())
		}
		own := ra.Reason == api.ReasonExited && ra.ExitCode != nil && *ra.ExitCode == 0
		if pre == "" {
			own = own || ra.Reason == api.ReasonSignaled && ra.Signal != nil && *ra.Signal == "SIGUSR1"
		}
		if !own {
			t.Errorf("%s: A's record %s: want its own exit (0, or SIGUSR1 unless it ignored that)", tag, jobString(ra))
		}
	}
	t.Logf("%d signal requests refused with 409 over %d iterations", refusedTotal, reuseN)
	checkReuseRate(t, "job signal request", reused, reuseN)
	jt.expectHealthy(t)
}

// TestReuseServiceStop: `stop` requests for service svc (restart never,
// stop_timeout 100ms, so a stale SIGKILL would fall within B's life) come
// from just before its run (sleep 0.1) ends by itself until B holds the
// run's number, then the service is started again. The answers are 200
// (stopping) and then 409 (already stopped); B is never signalled; the
// run's last code is its own (0, or 143 from the stop's SIGTERM).
func TestReuseServiceStop(t *testing.T) {
	k := newReuseKit(t)
	tagFile := k.path("tag", "txt")
	cfg := fmt.Sprintf(`
[[service]]
name = "svc"
command = ["/bin/sh", "-c", %s]
restart = "never"
stop_timeout = "100ms"
`, svQuote("read T < "+tagFile+" || T=boot; "+k.launch("$T", "0.3")+"exec /bin/sleep 0.1"))
	jt := startJobsTend(t, reuseOpts, reuseTrack+cfg)
	reuseLoad(t, jt.sock, 4)
	ctx := reuseCtx(t)
	svc := func() api.Service {
		st, err := jt.client.Status(ctx)
		if err != nil {
			t.Fatalf("status: %v; tend's stderr:\n%s", err, jt.stderrNow())
		}
		for _, s := range st.Services {
			if s.Name == "svc" {
				return s
			}
		}
		t.Fatalf("no service svc in %+v", st.Services)
		return api.Service{}
	}
	k.result(t, jt.tendRun, "boot", true)
	svPoll(t, jt.tendRun, svWait, "svc's first run stopped", func() bool { return svc().State == "stopped" })
	reused := 0
	for i := range reuseN {
		tag := fmt.Sprintf("c%d", i)
		if err := os.WriteFile(tagFile, []byte(tag+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := jt.client.ServiceOp(ctx, "svc", api.OpStart, ""); err != nil {
			t.Fatalf("%s: start svc: %v", tag, err)
		}
		sleepUntil(t0, 85*time.Millisecond)
		refused, after := false, 0
		for after < 5 {
			err := jt.client.ServiceOp(ctx, "svc", api.OpStop, "")
			switch c := jobsCode(err); c {
			case 0:
				if refused {
					t.Errorf("%s: stop was answered 200 after a 409", tag)
				}
			case http.StatusConflict:
				refused = true
			default:
				t.Fatalf("%s: stop svc: %v (code %d), want 200 or 409", tag, err, c)
			}
			if refused && svExists(k.path(tag, "b")) {
				after++
			}
			if time.Since(t0) > jobsWait {
				t.Fatalf("%s: svc not stopped and B not forked within %v", tag, jobsWait)
			}
		}
		rec := k.result(t, jt.tendRun, tag, true)
		if rec.reused() {
			reused++
		} else {
			t.Logf("%s: the run had pid %d, B got %d: no reuse", tag, rec.p, rec.b)
		}
		if rec.code != 0 {
			t.Errorf("%s: B (pid %d, the run's was %d) ended with status %d: svc's stop reached it; tend's stderr:\n%s", tag, rec.b, rec.p, rec.code, jt.stderrNow())
		}
		s := svc()
		// 137: the stop came while the run still ignored SIGTERM, waiting
		// for W to leave its group (reuseKit.launch), and its stop_timeout
		// SIGKILLed it, alive: its own death (B's status says whether a
		// SIGKILL went astray).
		if s.State != "stopped" || s.LastCode == nil || (*s.LastCode != 0 && *s.LastCode != 143 && *s.LastCode != 137) {
			code := "none"
			if s.LastCode != nil {
				code = fmt.Sprint(*s.LastCode)
			}
			t.Errorf("%s: svc = %+v (last code %s), want stopped with its run's own code 0, 143 or 137", tag, s, code)
		}
	}
	checkReuseRate(t, "service stop", reused, reuseN)
	jt.expectHealthy(t)
}

// TestReuseProbe: service web's ready probe always fails (exit 1), and
// after each probe B takes its number and exits 0 as an orphan of tend.
// Crediting that exit by number would make web ready. Each run ends
// failed at its ready_timeout and is started again; web must never have
// been ready (no "service running" for it in the log, never ready in
// status) and each run must be its own (runs counts the starts).
func TestReuseProbe(t *testing.T) {
	k := newReuseKit(t)
	counter := k.path("n", "txt")
	probe := k.path("probe", "sh")
	if err := os.WriteFile(counter, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("read n < %[1]s; echo $((n+1)) > %[1]s\n%[2]s\nexit 1\n", counter, k.launch("p$n", "orphan"))
	if err := os.WriteFile(probe, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	// Probes at 0, 50, 150, 350, 750 and 1550ms of each run. No main
	// process (it would wait for web to be ready); idle keeps tend up
	// while web has failed.
	dir := hDir(t)
	cfg := fmt.Sprintf(`
[control]
socket = %s

[[service]]
name = "web"
command = ["/bin/sleep", "1000"]
ready = "exec:/bin/sh %s"
ready_timeout = "1700ms"
restart = "never"

[[service]]
name = "idle"
command = ["/bin/sleep", "100000"]
`, svQuote(filepath.Join(dir, "s")), probe)
	r, sock := hConfig(t, reuseOpts, dir, cfg, "-vv")
	jt := &jobsTend{tendRun: r, dir: dir, sock: sock, client: hClient(t, sock)}
	reuseLoad(t, sock, 4)
	ctx := reuseCtx(t)
	web := func() api.Service {
		st, err := jt.client.Status(ctx)
		if err != nil {
			t.Fatalf("status: %v; tend's stderr:\n%s", err, jt.stderrNow())
		}
		for _, s := range st.Services {
			if s.Name == "web" {
				if s.Ready || s.State == "running" {
					t.Fatalf("web is ready (%+v) although every probe failed: an exit of a probe's recycled number was credited to it; tend's stderr:\n%s", s, jt.stderrNow())
				}
				return s
			}
		}
		t.Fatalf("no service web in %+v", st.Services)
		return api.Service{}
	}
	const runs = 7
	for run := 1; run <= runs; run++ {
		if run > 1 {
			if err := jt.client.ServiceOp(ctx, "web", api.OpStart, ""); err != nil {
				t.Fatalf("run %d: start web: %v", run, err)
			}
		}
		svPoll(t, jt.tendRun, svWait, fmt.Sprintf("web failed in run %d", run), func() bool {
			s := web()
			return s.State == "failed" && s.Runs == run
		})
	}
	// The probes' records: every one but the last few may still be
	// coming in; wait for all that were counted.
	n := k.readInt(t, "n", "txt")
	reused := 0
	for i := range n {
		rec := k.result(t, jt.tendRun, fmt.Sprintf("p%d", i), false)
		if rec.reused() {
			reused++
		} else {
			t.Logf("p%d: the probe had pid %d, B got %d: no reuse", i, rec.p, rec.b)
		}
	}
	time.Sleep(100 * time.Millisecond) // the last B's exit is in
	s := web()
	if s.Runs != runs {
		t.Errorf("web ran %d times, want %d", s.Runs, runs)
	}
	if c := svLog(jt.stderrNow(), "service running", "web"); c != 0 {
		t.Errorf("%d log lines say web was running (ready): every probe failed\n%s", c, jt.stderrNow())
	}
	if n < 5*runs {
		t.Errorf("%d probes in %d runs, want at least %d", n, runs, 5*runs)
	}
	checkReuseRate(t, "ready probe", reused, n)
	jt.expectHealthy(t)
}

// jobString is a job record for messages.
func jobString(j api.Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{state %s reason %s", j.State, j.Reason)
	if j.ExitCode != nil {
		fmt.Fprintf(&b, " exit_code %d", *j.ExitCode)
	}
	if j.Signal != nil {
		fmt.Fprintf(&b, " signal %s", *j.Signal)
	}
	if j.PID != nil {
		fmt.Fprintf(&b, " pid %d", *j.PID)
	}
	b.WriteString("}")
	return b.String()
}
