//go:build linux

package test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// svRun is the start of a service script that counts its runs: each run
// appends its start time to $D/runs and sets $n to its run number.
const svRun = `date +%s%N >> "$D/runs"; n=$(wc -l < "$D/runs"); `

// svLoop keeps a script running until it is stopped.
const svLoop = `while :; do sleep 0.05; done`

// TestSupervisorRestartPolicy: each policy and code list gives an exact
// number of runs, and tend's code once every service has ended by itself: 0
// when each one's last run exited 0, else 1 (failed for good, or its last run
// failed and was not restarted).
func TestSupervisorRestartPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script string   // after svRun
		keys   []string // of the service table
		runs   int
		code   int  // tend's
		failed bool // the service failed for good (gave up)
	}{
		{"always restarts after 0", "exit 0", []string{`restart = "always"`}, 3, 1, true},
		{"on-failure not after 0", "exit 0", []string{`restart = "on-failure"`}, 1, 0, false},
		{"on-failure after 1", "exit 1", []string{`restart = "on-failure"`}, 3, 1, true},
		{"on-failure after a signal", "kill -KILL $$", []string{`restart = "on-failure"`}, 3, 1, true},
		{"default is on-failure", "exit 1", nil, 3, 1, true},
		{"default not after 0", "exit 0", nil, 1, 0, false},
		{"never after 1", "exit 1", []string{`restart = "never"`}, 1, 1, false},
		{"never after a signal", "kill -KILL $$", []string{`restart = "never"`}, 1, 1, false},
		{"restart_now under never", `[ "$n" -lt 3 ] && exit 75; exit 0`,
			[]string{`restart = "never"`, `restart_now = [75]`, `backoff = "5s"`}, 3, 0, false},
		{"never_restart under always", "exit 78",
			[]string{`restart = "always"`, `never_restart = [78]`}, 1, 1, false},
		{"never_restart leaves other codes", `[ "$n" -lt 2 ] && exit 1; exit 78`,
			[]string{`restart = "always"`, `never_restart = [78]`}, 2, 1, false},
		{"max_restarts 4", "exit 1", []string{`max_restarts = 4`}, 5, 1, true},
		{"max_restarts 0", "exit 1", []string{`max_restarts = 0`}, 1, 1, true},
		{"restart_now counts toward max_restarts", "exit 75",
			[]string{`restart_now = [75]`, `max_restarts = 3`}, 4, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			keys := svDefaults(tc.keys, `backoff = "20ms"`, `max_restarts = 2`)
			r := svStart(t, opts{pid1: true}, dir, svShell("s", dir, svRun+tc.script, keys...))
			start := time.Now()
			code := r.wait()
			stderr := r.stderrAll()
			if code != tc.code {
				t.Errorf("tend exit code = %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if got := len(svLines(filepath.Join(dir, "runs"))); got != tc.runs {
				t.Errorf("runs = %d, want %d; stderr:\n%s", got, tc.runs, stderr)
			}
			if got := svLog(stderr, "service starting", "s"); got != tc.runs {
				t.Errorf(`"service starting" logged %d times, want %d`, got, tc.runs)
			}
			if got := svLog(stderr, "service failed", "s") > 0; got != tc.failed {
				t.Errorf(`"service failed" logged: %v, want %v; stderr:\n%s`, got, tc.failed, stderr)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("took %v: a 5s backoff was waited for?", d)
			}
		})
	}
}

// svDefaults adds each default key line to keys unless keys sets that key.
func svDefaults(keys []string, defaults ...string) []string {
	out := append([]string{}, keys...)
	for _, d := range defaults {
		name, _, _ := strings.Cut(d, " =")
		set := false
		for _, k := range keys {
			set = set || strings.HasPrefix(k, name+" =")
		}
		if !set {
			out = append(out, d)
		}
	}
	return out
}

// TestSupervisorBackoff: delayed restarts double from backoff, capped at
// backoff_max (exact delays in the log, lower bounds on the start times).
func TestSupervisorBackoff(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	// Runs that fail at once must stay shorter than backoff_max, even on a
	// loaded machine: a longer run resets the backoff.
	for _, tc := range []struct {
		name       string
		script     string // after svRun
		backoff    string
		backoffMax string
		delays     []time.Duration
	}{
		{"doubling", "exit 1", "100ms", "10s", []time.Duration{100 * ms, 200 * ms, 400 * ms}},
		{"capped", "exit 1", "200ms", "500ms", []time.Duration{200 * ms, 400 * ms, 500 * ms}},
		{"reset by a run longer than backoff_max", `[ "$n" -eq 3 ] && sleep 0.6; exit 1`, "200ms", "500ms",
			[]time.Duration{200 * ms, 400 * ms, 200 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := svStart(t, opts{pid1: true}, dir, svShell("s", dir, svRun+tc.script,
				`backoff = `+svQuote(tc.backoff), `backoff_max = `+svQuote(tc.backoffMax), `max_restarts = 3`))
			r.expectExit(1)
			stderr := r.stderrAll()
			var logged []string
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, `msg="service backoff"`) {
					f := strings.Fields(l[strings.Index(l, " delay="):])
					logged = append(logged, strings.TrimPrefix(f[0], "delay="))
				}
			}
			var want []string
			for _, d := range tc.delays {
				want = append(want, d.String())
			}
			if strings.Join(logged, " ") != strings.Join(want, " ") {
				t.Errorf("backoff delays logged = %q, want %q", logged, want)
			}
			stamps := svStamps(t, filepath.Join(dir, "runs"))
			if len(stamps) != 4 {
				t.Fatalf("runs = %d, want 4 (1 + max_restarts 3)", len(stamps))
			}
			for i, d := range tc.delays {
				if gap := stamps[i+1].Sub(stamps[i]); gap < d*9/10 {
					t.Errorf("run %d started %v after run %d, want at least the backoff %v", i+2, gap, i+1, d)
				}
			}
		})
	}
}

// TestSupervisorRestartWindow: restarts older than restart_window no longer
// count toward max_restarts.
func TestSupervisorRestartWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		window string
		runs   int
		code   int
	}{
		{"300ms", 3, 0}, // each restart is 400ms after the last: never 2 in the window
		{"10m", 2, 1},   // the second failure finds max_restarts 1 spent
	} {
		t.Run(tc.window, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := svStart(t, opts{pid1: true}, dir, svShell("s", dir, svRun+`[ "$n" -lt 3 ] && exit 1; exit 0`,
				`max_restarts = 1`, `restart_window = `+svQuote(tc.window), `backoff = "400ms"`, `backoff_max = "400ms"`))
			r.expectExit(tc.code)
			if got := len(svLines(filepath.Join(dir, "runs"))); got != tc.runs {
				t.Errorf("runs = %d, want %d", got, tc.runs)
			}
		})
	}
}

// TestSupervisorStopDuringBackoff: SIGTERM while a service waits out its
// backoff stops tend at once; the service is not started again.
func TestSupervisorStopDuringBackoff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := svStart(t, opts{pid1: true}, dir, svShell("s", dir, svRun+"exit 1", `backoff = "5s"`))
	svWaitLog(t, r, "service backoff", "s")
	code, took := svTermAndExit(t, r)
	if code != 143 || took > 4*time.Second {
		t.Errorf("tend exit code = %d after %v, want 143 at once; stderr:\n%s", code, took, r.stderrAll())
	}
	if got := len(svLines(filepath.Join(dir, "runs"))); got != 1 {
		t.Errorf("runs = %d, want 1", got)
	}
}

// TestSupervisorExecFailure: a missing binary counts as a run with code
// 127; a critical one that gives up makes tend exit 127.
func TestSupervisorExecFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := svStart(t, opts{pid1: true}, dir, `
[[service]]
name = "ghost"
command = ["/nonexistent/tend-test-prog"]
critical = true
backoff = "20ms"
max_restarts = 2
`)
	r.expectExit(127)
	stderr := r.stderrAll()
	if got := svLog(stderr, "service cannot start", "ghost"); got != 3 {
		t.Errorf(`"service cannot start" logged %d times, want 3 (1 + max_restarts 2); stderr:\n%s`, got, stderr)
	}
	if !strings.Contains(stderr, "/nonexistent/tend-test-prog") {
		t.Errorf("stderr does not name the missing binary:\n%s", stderr)
	}
}

// TestSupervisorMissingDir: a service whose dir does not exist cannot
// start, and the error names the directory rather than blaming the program.
func TestSupervisorMissingDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := dir + "/no-such-dir"
	r := svStart(t, opts{pid1: true}, dir, "[[service]]\nname = \"a\"\ncommand = [\"true\"]\nrestart = \"never\"\n"+
		"critical = true\ndir = "+svQuote(missing)+"\n")
	code := r.wait()
	stderr := r.stderrAll()
	if code == 0 {
		t.Errorf("tend exit code = 0, want non-zero")
	}
	if !strings.Contains(stderr, missing) {
		t.Errorf("the error does not name the missing dir %s:\n%s", missing, stderr)
	}
}

// TestSupervisorCritical: a critical service that ends for good stops the
// others and its code is tend's; -e maps it.
func TestSupervisorCritical(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script string
		keys   []string
		flags  []string
		runs   int
		code   int
	}{
		{"exit 9", "exit 9", []string{`restart = "never"`}, nil, 1, 9},
		{"exit 9 after giving up", "exit 9", []string{`max_restarts = 1`, `backoff = "20ms"`}, nil, 2, 9},
		{"killed by SIGKILL", "kill -KILL $$", []string{`restart = "never"`}, nil, 1, 137},
		{"never_restart code", "exit 78", []string{`never_restart = [78]`}, nil, 1, 78},
		{"exit 0", "exit 0", nil, nil, 1, 0},
		{"-e maps the code", "exit 9", []string{`restart = "never"`}, []string{"-e", "9"}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := svShell("other", dir, `trap 'echo > "$D/other.term"; exit 0' TERM; echo > "$D/other.up"; `+svLoop) +
				svShell("crit", dir, `until [ -f "$D/other.up" ]; do sleep 0.01; done; `+svRun+tc.script,
					append([]string{`critical = true`, `after = ["other"]`}, tc.keys...)...)
			r := svStart(t, opts{pid1: true}, dir, cfg, tc.flags...)
			r.expectExit(tc.code)
			if !svExists(filepath.Join(dir, "other.term")) {
				t.Errorf("the other service did not get SIGTERM; stderr:\n%s", r.stderrAll())
			}
			if got := len(svLines(filepath.Join(dir, "runs"))); got != tc.runs {
				t.Errorf("runs of the critical service = %d, want %d", got, tc.runs)
			}
			if !strings.Contains(r.stderrAll(), `msg="shutting down" reason="critical service crit `) {
				t.Errorf("no shutdown for the critical service in the log:\n%s", r.stderrAll())
			}
		})
	}
}

// TestSupervisorNonCriticalFailure: a service that fails for good, not
// critical, leaves tend and the others running.
func TestSupervisorNonCriticalFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := svShell("steady", dir, `trap 'echo > "$D/steady.term"; exit 0' TERM; `+svLoop) +
		svShell("flaky", dir, svRun+"exit 3", `max_restarts = 1`, `backoff = "20ms"`)
	r := svStart(t, opts{pid1: true}, dir, cfg)
	svWaitLog(t, r, "service failed", "flaky")
	time.Sleep(200 * time.Millisecond) // a shutdown, had one started, would show by now
	if !r.running() || svExists(filepath.Join(dir, "steady.term")) {
		t.Fatalf("a non-critical failure stopped tend or the others; stderr:\n%s", r.stderrAll())
	}
	if n := svLog(r.stderrNow(), "shutting down", ""); n != 0 {
		t.Fatalf("shutdown started after a non-critical failure:\n%s", r.stderrNow())
	}
	code, _ := svTermAndExit(t, r)
	if code != 143 {
		t.Errorf("tend exit code after SIGTERM = %d, want 143", code)
	}
	if got := len(svLines(filepath.Join(dir, "runs"))); got != 2 {
		t.Errorf("runs of flaky = %d, want 2", got)
	}
	if !svExists(filepath.Join(dir, "steady.term")) {
		t.Errorf("steady did not get SIGTERM at the shutdown")
	}
}

// TestSupervisorGateway: the agent gateway's codes: 75 restarts at once
// whatever the backoff, 78 never restarts (and a critical gateway then stops
// tend with 78), SIGKILL from outside restarts it (on-failure).
func TestSupervisorGateway(t *testing.T) {
	t.Parallel()
	gw := []string{`restart_now = [75]`, `never_restart = [78]`, `critical = true`}

	t.Run("75 restarts at once", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		r := svStart(t, opts{pid1: true}, dir, svShell("gateway", dir,
			svRun+`[ "$n" -lt 3 ] && exit 75; echo > "$D/up"; exec sleep 1000`, append(gw, `backoff = "5s"`)...))
		svWaitLines(t, r, filepath.Join(dir, "up"), 1)
		stamps := svStamps(t, filepath.Join(dir, "runs"))
		if len(stamps) != 3 {
			t.Fatalf("runs = %d, want 3", len(stamps))
		}
		if d := stamps[2].Sub(stamps[0]); d > 4*time.Second {
			t.Errorf("3 runs took %v: exit 75 waited for the 5s backoff", d)
		}
		if n := svLog(r.stderrNow(), "service backoff", "gateway"); n != 0 {
			t.Errorf("exit 75 went through backoff %d times", n)
		}
		if code, _ := svTermAndExit(t, r); code != 143 {
			t.Errorf("tend exit code = %d, want 143", code)
		}
	})

	t.Run("78 never restarts", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		r := svStart(t, opts{pid1: true}, dir, svShell("gateway", dir, svRun+"exit 78", append(gw, `backoff = "20ms"`)...))
		r.expectExit(78)
		if got := len(svLines(filepath.Join(dir, "runs"))); got != 1 {
			t.Errorf("runs = %d, want 1", got)
		}
	})

	t.Run("kill -9 restarts", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		pids := filepath.Join(dir, "pids")
		r := svStart(t, opts{pid1: true}, dir, svShell("gateway", dir, `echo $$ >> "$D/pids"; exec sleep 1000`,
			append(gw, `backoff = "20ms"`)...))
		first := svWaitLines(t, r, pids, 1)
		ns, _ := strconv.Atoi(first[0])
		host := svHostPid(t, r, ns)
		if err := unix.Kill(host, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := svWaitLines(t, r, pids, 2)
		if got[1] == got[0] {
			t.Errorf("the restarted gateway has the same pid %s", got[0])
		}
		if !strings.Contains(r.stderrNow(), `msg="service exited" service=gateway code=137 run=1 sig=SIGKILL`) {
			t.Errorf("the SIGKILL is not in the log:\n%s", r.stderrNow())
		}
		if !r.running() {
			t.Fatalf("tend stopped after a restartable kill of its critical gateway")
		}
		if code, _ := svTermAndExit(t, r); code != 143 {
			t.Errorf("tend exit code = %d, want 143", code)
		}
	})
}
