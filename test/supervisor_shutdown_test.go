//go:build linux

package test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// svStopper is a service that records when it got SIGTERM ($D/NAME.term)
// and when it exited ($D/NAME.exit), taking `work` to stop, and exits with
// code; it writes $D/NAME.up once its trap is set.
func svStopper(name, dir, work string, code int, extra ...string) string {
	script := fmt.Sprintf(`trap 'date +%%s%%N > "$D/%[1]s.term"; sleep %[2]s; date +%%s%%N > "$D/%[1]s.exit"; exit %[3]d' TERM; `+
		`echo > "$D/%[1]s.up"; `+svLoop, name, work, code)
	return svShell(name, dir, script, extra...)
}

// svUp waits for the .up file of each service.
func svUp(t *testing.T, r *tendRun, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		svWaitLines(t, r, filepath.Join(dir, n+".up"), 1)
	}
}

// TestSupervisorStopOrder: on SIGTERM the services stop in reverse `after`
// order, each level once the one above has exited, the main service first;
// tend's code is then the main's.
func TestSupervisorStopOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := svStopper("a", dir, "0.1", 0) +
		svStopper("b", dir, "0.1", 0, `after = ["a"]`) +
		svStopper("c", dir, "0.1", 0, `after = ["b"]`)
	main := fmt.Sprintf(`D=%s; trap 'date +%%s%%N > "$D/main.term"; date +%%s%%N > "$D/main.exit"; exit 3' TERM; echo > "$D/main.up"; %s`, dir, svLoop)
	r := svStart(t, opts{pid1: true}, dir, cfg, "--", "sh", "-c", main)
	svUp(t, r, dir, "a", "b", "c", "main")
	code, _ := svTermAndExit(t, r)
	if code != 3 {
		t.Errorf("tend exit code = %d, want 3 (the main's); stderr:\n%s", code, r.stderrAll())
	}
	order := []string{"main", "c", "b", "a"}
	for i := 0; i+1 < len(order); i++ {
		prevExit := svStamp(t, filepath.Join(dir, order[i]+".exit"))
		nextTerm := svStamp(t, filepath.Join(dir, order[i+1]+".term"))
		if !nextTerm.After(prevExit) {
			t.Errorf("%s got SIGTERM %v before %s exited", order[i+1], prevExit.Sub(nextTerm), order[i])
		}
	}
	if !strings.Contains(r.stderrAll(), `msg="shutting down" reason="received SIGTERM"`) {
		t.Errorf("no shutdown reason in the log:\n%s", r.stderrAll())
	}
}

// TestSupervisorStopParallel: the services of one level stop in parallel:
// two that take 500ms each are both signalled before either has exited.
func TestSupervisorStopParallel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := svStart(t, opts{pid1: true}, dir, svStopper("x", dir, "0.5", 0)+svStopper("y", dir, "0.5", 0))
	svUp(t, r, dir, "x", "y")
	code, took := svTermAndExit(t, r)
	if code != 143 {
		t.Errorf("tend exit code = %d, want 143 (no main); stderr:\n%s", code, r.stderrAll())
	}
	xt, xe := svStamp(t, filepath.Join(dir, "x.term")), svStamp(t, filepath.Join(dir, "x.exit"))
	yt, ye := svStamp(t, filepath.Join(dir, "y.term")), svStamp(t, filepath.Join(dir, "y.exit"))
	if !yt.Before(xe) || !xt.Before(ye) {
		t.Errorf("x stopped %v..%v, y %v..%v: not in parallel", xt.Format(time.StampMilli), xe.Format(time.StampMilli),
			yt.Format(time.StampMilli), ye.Format(time.StampMilli))
	}
	if took < 500*time.Millisecond {
		t.Errorf("tend exited %v after SIGTERM, before the 500ms the services take", took)
	}
	t.Logf("two 500ms stops took %v", took)
}

// svIgnorer ignores SIGTERM (its sleeps inherit that) and writes $D/NAME.up.
func svIgnorer(name, dir string, extra ...string) string {
	return svShell(name, dir, `trap '' TERM; echo > "$D/`+name+`.up"; `+svLoop, extra...)
}

// TestSupervisorStopTimeout: a service that ignores SIGTERM is SIGKILLed
// (with its group) at its stop_timeout; stop_timeout is capped by what is left
// of [shutdown] grace; --grace and TEND_GRACE override the file's grace.
func TestSupervisorStopTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace string   // [shutdown] grace
		keys  []string // of the service
		flags []string
		env   []string
		want  time.Duration
	}{
		{"stop_timeout", "10s", []string{`stop_timeout = "300ms"`}, nil, nil, 300 * time.Millisecond},
		{"grace", "1s", nil, nil, nil, time.Second},
		{"stop_timeout capped by grace", "1s", []string{`stop_timeout = "20s"`}, nil, nil, time.Second},
		{"--grace", "30s", nil, []string{"--grace", "700ms"}, nil, 700 * time.Millisecond},
		{"TEND_GRACE", "30s", nil, nil, []string{"TEND_GRACE=700ms"}, 700 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := "[shutdown]\ngrace = " + svQuote(tc.grace) + "\n" + svIgnorer("stubborn", dir, tc.keys...) +
				svStopper("polite", dir, "0", 0, `after = ["stubborn"]`)
			r := svStart(t, opts{pid1: true, env: tc.env}, dir, cfg, tc.flags...)
			svUp(t, r, dir, "stubborn", "polite")
			code, took := svTermAndExit(t, r)
			stderr := r.stderrAll()
			if code != 143 {
				t.Errorf("tend exit code = %d, want 143; stderr:\n%s", code, stderr)
			}
			if took < tc.want-50*time.Millisecond || took > tc.want+3*time.Second {
				t.Errorf("tend exited %v after SIGTERM, want about %v; stderr:\n%s", took, tc.want, stderr)
			}
			// Its own stop_timeout or the end of the grace, whichever
			// fires first when they fall together, sends the SIGKILL.
			killed := svLog(stderr, "service did not stop in time: killing its unit", "stubborn") +
				svLog(stderr, "shutdown grace over: killing every process", "")
			if killed == 0 || !strings.Contains(stderr, `msg="service exited" service=stubborn code=137`) {
				t.Errorf("stubborn was not SIGKILLed; stderr:\n%s", stderr)
			}
			if !svExists(filepath.Join(dir, "polite.exit")) {
				t.Errorf("polite (stopped first) did not stop cleanly")
			}
		})
	}
}

// TestSupervisorShutdownCode: tend's code after SIGTERM is the main
// service's code, or 128+15 without one; SIGINT likewise.
func TestSupervisorShutdownCode(t *testing.T) {
	t.Parallel()
	trapExit := func(code int) []string {
		return []string{"--", "sh", "-c", `trap 'exit ` + strconv.Itoa(code) + `' TERM; echo > "$D/main.up"; ` + svLoop}
	}
	for _, tc := range []struct {
		name string
		main []string // after the flags; nil: no main
		up   bool     // the main writes main.up
		sig  string
		want int
	}{
		{"main exits 0 on TERM", trapExit(0), true, "TERM", 0},
		{"main exits 5 on TERM", trapExit(5), true, "TERM", 5},
		{"main killed by TERM", []string{"--", "sh", "-c", `echo > "$D/main.up"; exec sleep 1000`}, true, "TERM", 143},
		{"no main", nil, false, "TERM", 143},
		{"no main, SIGINT", nil, false, "INT", 130},
		{"main killed by TERM after SIGINT", []string{"--", "sh", "-c", `echo > "$D/main.up"; exec sleep 1000`}, true, "INT", 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := svStart(t, opts{pid1: true, env: []string{"D=" + dir}}, dir, svStopper("helper", dir, "0", 0), tc.main...)
			svUp(t, r, dir, "helper")
			if tc.up {
				svUp(t, r, dir, "main")
			}
			r.signal(map[string]unix.Signal{"TERM": unix.SIGTERM, "INT": unix.SIGINT}[tc.sig])
			if code := r.wait(); code != tc.want {
				t.Errorf("tend exit code after SIG%s = %d, want %d; stderr:\n%s", tc.sig, code, tc.want, r.stderrAll())
			}
			if !svExists(filepath.Join(dir, "helper.exit")) {
				t.Errorf("the helper service was not stopped with its stop signal")
			}
		})
	}
}

// TestSupervisorNotPID1: as a plain child (a subreaper), tend reaps the
// orphans of its services, and on SIGTERM stops them and sweeps a stray that
// left the service's session and ignores SIGTERM.
func TestSupervisorNotPID1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := `for i in 1 2 3; do (sleep 0.1 &); done; ` +
		`setsid sh -c 'trap "" TERM; echo $$ > "$D/stray.pid"; exec sleep 1000' & ` +
		`until [ -s "$D/stray.pid" ]; do sleep 0.01; done; echo > "$D/maker.up"; exec sleep 1000`
	// A group unit: its orphans are tend's, as a subreaper unit's would be
	// its helper's (TestTrackLeftoversDieWithTheirService).
	r := svStart(t, opts{}, dir, groupTrack+svShell("maker", dir, script), "-w", "--cleanup-grace", "300ms", "--track", "group")
	svUp(t, r, dir, "maker")
	svPoll(t, r, svWait, "3 orphans reaped", func() bool { return len(reapedPids(t, r.stderrNow())) >= 3 })
	for _, c := range childrenOf(r.pid()) {
		if st, _, err := procStat(c); err == nil && st == 'Z' {
			t.Errorf("tend's child %d is a zombie", c)
		}
	}
	stray, _ := strconv.Atoi(strings.TrimSpace(svLines(filepath.Join(dir, "stray.pid"))[0]))
	if st, ppid, err := procStat(stray); err != nil || st == 'Z' {
		t.Fatalf("the stray %d is not running before the shutdown: state %c ppid %d err %v", stray, st, ppid, err)
	}
	code, took := svTermAndExit(t, r)
	stderr := r.stderrAll()
	if code != 143 {
		t.Errorf("tend exit code = %d, want 143; stderr:\n%s", code, stderr)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("tend exited %v after SIGTERM, want the 300ms cleanup grace and little more", took)
	}
	svPoll(t, nil, svWait, "the stray gone", func() bool {
		st, _, err := procStat(stray)
		return err != nil || st == 'Z'
	})
}

// TestSupervisorSweep: what outlives the services (here a stray in its own
// session that ignores SIGTERM) gets SIGTERM, then SIGKILL after
// --cleanup-grace (default 2s), never beyond what is left of the grace.
func TestSupervisorSweep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace string
		flags []string
		want  time.Duration
	}{
		{"--cleanup-grace", "10s", []string{"--cleanup-grace", "300ms"}, 300 * time.Millisecond},
		{"default cleanup grace", "10s", nil, 2 * time.Second},
		{"capped by grace", "1s", []string{"--cleanup-grace", "8s"}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			script := `setsid sh -c 'trap "" TERM; echo $$ > "$D/stray.pid"; exec sleep 1000' & ` +
				`until [ -s "$D/stray.pid" ]; do sleep 0.01; done; echo > "$D/maker.up"; exec sleep 1000`
			// A group unit: the orphans outlive it and are the sweep's
			// (a subreaper unit stops its own, within its stop_timeout).
			r := svStart(t, opts{pid1: true}, dir, groupTrack+"[shutdown]\ngrace = "+svQuote(tc.grace)+"\n"+svShell("maker", dir, script), append(tc.flags, "--track", "group")...)
			svUp(t, r, dir, "maker")
			code, took := svTermAndExit(t, r)
			stderr := r.stderrAll()
			if code != 143 {
				t.Errorf("tend exit code = %d, want 143; stderr:\n%s", code, stderr)
			}
			if took < tc.want-50*time.Millisecond || took > tc.want+3*time.Second {
				t.Errorf("tend exited %v after SIGTERM, want about %v; stderr:\n%s", took, tc.want, stderr)
			}
			if !strings.Contains(stderr, `msg="sweeping what is left"`) {
				t.Errorf("no sweep in the log:\n%s", stderr)
			}
		})
	}
}

// TestSupervisorMainExit: the main service ending by itself stops tend with
// its code (128+N for signal N) after stopping the other services.
func TestSupervisorMainExit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 7", 7},
		{"exit 0", 0},
		{"kill -USR1 $$", 138},
	} {
		t.Run(tc.script, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := svStart(t, opts{pid1: true, env: []string{"D=" + dir}}, dir, svStopper("helper", dir, "0", 0),
				"--", "sh", "-c", `until [ -f "$D/helper.up" ]; do sleep 0.01; done; `+tc.script)
			r.expectExit(tc.want)
			if !svExists(filepath.Join(dir, "helper.exit")) {
				t.Errorf("the helper was not stopped")
			}
		})
	}
}

// TestSupervisorStopSignal: stop_signal replaces SIGTERM as the stop signal.
func TestSupervisorStopSignal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := `trap 'echo TERM >> "$D/got"' TERM; trap 'echo USR2 >> "$D/got"; exit 0' USR2; echo > "$D/s.up"; ` + svLoop
	r := svStart(t, opts{pid1: true}, dir, svShell("s", dir, script, `stop_signal = "SIGUSR2"`))
	svUp(t, r, dir, "s")
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
	if got := strings.Join(svLines(filepath.Join(dir, "got")), " "); got != "USR2" {
		t.Errorf("the service got %q, want only its stop_signal USR2", got)
	}
}

// groupTrack makes a config's units group units: tend's child is the
// command, and what it orphans is reparented to tend.
// (With the flag too: scripts/test runs the suites again with
// TEND_TRACK=subreaper, which wins over the file.)
const groupTrack = "[defaults]\ntrack = \"group\"\n"
