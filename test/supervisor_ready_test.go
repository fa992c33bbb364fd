//go:build linux

package test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSupervisorReadyExec: a service after another with ready = "exec:CMD"
// starts only once CMD succeeds, not when the other merely started.
func TestSupervisorReadyExec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flag := filepath.Join(dir, "flag")
	cfg := svShell("a", dir, `date +%s%N > "$D/a.start"; sleep 0.3; date +%s%N > "$D/made"; : > "$D/flag"; exec sleep 1000`,
		`ready = `+svQuote("exec:test -f "+flag)) +
		svShell("b", dir, `if [ -f "$D/flag" ]; then echo yes; else echo no; fi > "$D/b.saw"; date +%s%N > "$D/b.start"; exec sleep 1000`,
			`after = ["a"]`)
	r := svStart(t, opts{pid1: true}, dir, cfg)
	saw := svWaitLines(t, r, filepath.Join(dir, "b.saw"), 1)
	svWaitLines(t, r, filepath.Join(dir, "b.start"), 1)
	if saw[0] != "yes" {
		t.Errorf("b started before a's ready command succeeded (the flag file did not exist yet)")
	}
	aStart, made, bStart := svStamp(t, filepath.Join(dir, "a.start")), svStamp(t, filepath.Join(dir, "made")), svStamp(t, filepath.Join(dir, "b.start"))
	if !bStart.After(made) || bStart.Sub(aStart) < 300*time.Millisecond {
		t.Errorf("b started %v after a, %v after the flag; want after the flag, at least 300ms after a",
			bStart.Sub(aStart), bStart.Sub(made))
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
}

// TestSupervisorReadyProbeSchedule: the ready command runs at once, then
// after 50ms, doubling (lower bounds on the gaps).
func TestSupervisorReadyProbeSchedule(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	probes := filepath.Join(dir, "probes")
	probe := "exec:sh -c " + `'date +%s%N >> ` + probes + `; [ $(wc -l < ` + probes + `) -ge 5 ]'`
	cfg := svShell("a", dir, `date +%s%N > "$D/a.start"; exec sleep 1000`, `ready = `+svQuote(probe)) +
		svShell("b", dir, `: > "$D/b.ran"; exec sleep 1000`, `after = ["a"]`)
	r := svStart(t, opts{pid1: true}, dir, cfg)
	svPoll(t, r, svWait, "b started", func() bool { return svExists(filepath.Join(dir, "b.ran")) })
	stamps := svStamps(t, probes)
	if len(stamps) != 5 {
		t.Fatalf("the ready command ran %d times, want 5 (it succeeds the 5th time)", len(stamps))
	}
	if first := stamps[0].Sub(svStamp(t, filepath.Join(dir, "a.start"))); first > 40*time.Millisecond {
		t.Logf("first probe %v after the start (want at once; a loaded machine may delay it)", first)
	}
	for i, want := range []time.Duration{50, 100, 200, 400} {
		want *= time.Millisecond
		if gap := stamps[i+1].Sub(stamps[i]); gap < want*9/10 {
			t.Errorf("probe %d came %v after probe %d, want at least %v", i+2, gap, i+1, want)
		}
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
}

// TestSupervisorReadyTimeout: a critical service never ready within
// ready_timeout is SIGKILLed and failed, tend stops with a non-zero code, and
// its dependents never start; a non-critical one fails its critical
// dependent, which stops tend with 1.
func TestSupervisorReadyTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		aKeys    []string
		bKeys    []string
		code     int // 0: any non-zero
		bFailure bool
	}{
		{"critical never ready", []string{`critical = true`}, nil, 0, false},
		{"dependency never ready", nil, []string{`critical = true`}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			// grace 1s: a probe still running when a is killed makes the
			// shutdown wait for the grace (TestSupervisorProbeStallsShutdown).
			cfg := "[shutdown]\ngrace = \"1s\"\n" + svShell("a", dir, `date +%s%N > "$D/a.start"; exec sleep 1000`,
				append([]string{`ready = "exec:false"`, `ready_timeout = "300ms"`}, tc.aKeys...)...) +
				svShell("b", dir, `: > "$D/b.ran"; exec sleep 1000`, append([]string{`after = ["a"]`}, tc.bKeys...)...)
			r := svStart(t, opts{pid1: true}, dir, cfg)
			code := r.wait()
			stderr := r.stderrAll()
			if (tc.code == 0 && code == 0) || (tc.code != 0 && code != tc.code) {
				t.Errorf("tend exit code = %d, want %d (0: any non-zero); stderr:\n%s", code, tc.code, stderr)
			}
			if took := r.ended.Sub(r.start); took < 300*time.Millisecond || took > 5*time.Second {
				t.Errorf("tend exited %v after its start, want just after the 300ms ready_timeout", took)
			}
			if svExists(filepath.Join(dir, "b.ran")) {
				t.Errorf("b started although a never became ready")
			}
			if !strings.Contains(stderr, `msg="service exited" service=a code=137`) ||
				!strings.Contains(stderr, `msg="service failed" service=a from=starting reason="not ready within ready_timeout"`) {
				t.Errorf("a was not SIGKILLed and failed for its ready_timeout; stderr:\n%s", stderr)
			}
			if got := strings.Contains(stderr, `msg="service failed" service=b from=pending reason="dependency a failed"`); got != tc.bFailure {
				t.Errorf("b failed for its dependency: %v, want %v; stderr:\n%s", got, tc.bFailure, stderr)
			}
		})
	}
}

// svTrapper records the signals in sigs (names without SIG) into
// $D/NAME.sig, one line each, and writes $D/NAME.pid once its traps are set.
func svTrapper(name, dir string, sigs []string, extra ...string) string {
	script := ""
	for _, s := range sigs {
		script += `trap 'echo ` + s + ` >> "$D/` + name + `.sig"' ` + s + `; `
	}
	script += `echo $$ > "$D/` + name + `.pid"; ` + svLoop
	return svShell(name, dir, script, extra...)
}

// TestSupervisorSignalRouting: with no main service, a signal reaches only
// the services whose signals map lists it ("" = not forwarded, a name maps
// it): a HUP meant for one service never kills another (issue 14: it used
// to go to every service).
func TestSupervisorSignalRouting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The gateway and the worker have no HUP trap: a SIGHUP would kill them.
	cfg := svTrapper("gateway", dir, []string{"USR1", "USR2"}, `signals = { SIGHUP = "", SIGUSR1 = "SIGUSR1", SIGUSR2 = "SIGUSR2" }`, `restart = "never"`) +
		svTrapper("worker", dir, []string{"USR1", "USR2"}, `restart = "never"`) +
		svTrapper("mapped", dir, []string{"HUP", "USR1", "USR2"}, `signals = { SIGHUP = "SIGUSR1", SIGUSR2 = "" }`)
	r := svStart(t, opts{pid1: true}, dir, cfg)
	for _, n := range []string{"gateway", "worker", "mapped"} {
		svWaitLines(t, r, filepath.Join(dir, n+".pid"), 1)
	}
	sigFile := func(n string) string { return filepath.Join(dir, n+".sig") }

	r.signal(unix.SIGHUP)
	svWaitLines(t, r, sigFile("mapped"), 1)
	r.signal(unix.SIGUSR2)
	svWaitLines(t, r, sigFile("gateway"), 1)
	r.signal(unix.SIGUSR1)
	svWaitLines(t, r, sigFile("gateway"), 2)
	time.Sleep(200 * time.Millisecond) // a signal delivered wrongly would have shown by now

	for _, tc := range []struct{ name, want string }{
		{"gateway", "USR2 USR1"},
		{"worker", ""},
		{"mapped", "USR1"},
	} {
		if got := strings.Join(svLines(sigFile(tc.name)), " "); got != tc.want {
			t.Errorf("%s got %q, want %q", tc.name, got, tc.want)
		}
	}
	stderr := r.stderrNow()
	if n := svLog(stderr, "service exited", "gateway") + svLog(stderr, "service exited", "worker"); n != 0 || !r.running() {
		t.Errorf("a service died of a signal it should not get; stderr:\n%s", stderr)
	}
	// Each forward is logged at -v.
	if n := strings.Count(stderr, `msg="forwarding signal"`); n != 3 {
		t.Errorf("%d forwards logged, want 3 (HUP as USR1 to mapped, USR2 and USR1 to gateway):\n%s", n, stderr)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
}

// TestSupervisorSignalToMain: forwarded signals reach the main service too,
// and its whole process group with -g.
func TestSupervisorSignalToMain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
		child string // what main's child records
	}{
		{"pid", nil, ""},
		{"group with -g", []string{"-g"}, "USR1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			// main's child is in main's group; it records USR1 if it gets it.
			main := `sh -c 'trap "echo USR1 >> \"$D/child.sig\"" USR1; echo > "$D/child.up"; ` + svLoop + `' & ` +
				`trap 'echo USR1 >> "$D/main.sig"' USR1; until [ -f "$D/child.up" ]; do sleep 0.01; done; echo > "$D/main.up"; ` + svLoop
			args := append(tc.flags, "--", "sh", "-c", main)
			r := svStart(t, opts{pid1: true, env: []string{"D=" + dir}}, dir, "", args...)
			svUp(t, r, dir, "main")
			r.signal(unix.SIGUSR1)
			svWaitLines(t, r, filepath.Join(dir, "main.sig"), 1)
			if tc.child != "" {
				svWaitLines(t, r, filepath.Join(dir, "child.sig"), 1)
			}
			time.Sleep(150 * time.Millisecond)
			if got := strings.Join(svLines(filepath.Join(dir, "child.sig")), " "); got != tc.child {
				t.Errorf("main's child got %q, want %q", got, tc.child)
			}
			if code, _ := svTermAndExit(t, r); code != 143 {
				t.Errorf("tend exit code = %d, want 143 (main killed by SIGTERM)", code)
			}
		})
	}
}
