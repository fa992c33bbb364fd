//go:build linux

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// The knob table's rows (README, "One meaning per knob") as tend PID 1
// sees them; the loop's unit tests (supervisor/loop_test.go) pin the same
// rows on a fake clock.

// termTrap is a shell loop that records a SIGTERM in dir/term and carries
// on: only a SIGKILL ends it. It creates dir/ready once its trap is set.
func termTrap(dir string) string {
	return `trap 'echo term >> ` + filepath.Join(dir, "term") + `' TERM; touch ` + filepath.Join(dir, "ready") +
		`; while :; do sleep 0.05; done`
}

// TestKnobJobStopGraceRows: [jobs] stop_grace = "0" is SIGKILL at once
// when the shutdown stops the jobs (it waited the default 5 s), with no
// SIGTERM first; "1s" is SIGTERM, then SIGKILL 1 s later.
func TestKnobJobStopGraceRows(t *testing.T) {
	for _, tc := range []struct {
		grace    string
		term     bool
		min, max time.Duration // tend's exit after its SIGTERM
	}{
		{"0", false, 0, 1500 * time.Millisecond},
		{"1s", true, time.Second, 2500 * time.Millisecond},
	} {
		t.Run(tc.grace, func(t *testing.T) {
			dir := hDir(t)
			body := fmt.Sprintf("[control]\nsocket = %s\n[shutdown]\ngrace = \"30s\"\n[jobs]\nstop_grace = %q\n",
				svQuote(filepath.Join(dir, "s")), tc.grace)
			r, sock := hConfig(t, opts{}, dir, body, "--", "sleep", "100000")
			c := hClient(t, sock)
			ready, term := filepath.Join(dir, "ready"), filepath.Join(dir, "term")
			j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", termTrap(dir)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			svPoll(t, r, hWait, "the job's trap is set", func() bool { return svExists(ready) })
			code, took := svTermAndExit(t, r)
			t.Logf("stop_grace %s: tend gone %v after SIGTERM", tc.grace, took)
			if took < tc.min || took > tc.max {
				t.Errorf("stop_grace %s: tend gone %v after SIGTERM, want %v-%v\n%s", tc.grace, took, tc.min, tc.max, r.stderrAll())
			}
			if got := svExists(term); got != tc.term {
				t.Errorf("stop_grace %s: the job got SIGTERM: %v, want %v", tc.grace, got, tc.term)
			}
			if code != 143 {
				t.Errorf("exit code %d, want the main service's 143", code)
			}
			_ = j
		})
	}
}

// TestKnobCleanupGraceRows: --cleanup-grace 0 is SIGKILL at once of what
// the main process left (no SIGTERM first, no wait); 500ms is SIGTERM, then
// SIGKILL 500 ms later. Either way tend exits with the main's code.
func TestKnobCleanupGraceRows(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		grace    string
		term     bool
		min, max time.Duration // tend's exit after the main's
	}{
		{"0", false, 0, 500 * time.Millisecond},
		{"500ms", true, 500 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.grace, func(t *testing.T) {
			dir := hDir(t)
			term, ready, exited := filepath.Join(dir, "term"), filepath.Join(dir, "ready"), filepath.Join(dir, "exited")
			main := `(` + termTrap(dir) + `) & while [ ! -e ` + ready + ` ]; do sleep 0.01; done; date +%s.%N > ` + exited + `; exit 7`
			r := startTend(t, opts{pid1: true}, "--cleanup-grace", tc.grace, "--", "sh", "-c", main)
			r.expectExit(7)
			b, err := os.ReadFile(exited)
			at, perr := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err != nil || perr != nil {
				t.Fatalf("the main's exit time: %q, %v, %v", b, err, perr)
			}
			took := r.ended.Sub(time.Unix(0, int64(at*1e9)))
			t.Logf("--cleanup-grace %s: tend gone %v after the main's exit", tc.grace, took)
			if took < tc.min || took > tc.max {
				t.Errorf("--cleanup-grace %s: tend gone %v after the main's exit, want %v-%v", tc.grace, took, tc.min, tc.max)
			}
			if got := svExists(term); got != tc.term {
				t.Errorf("--cleanup-grace %s: the leftover got SIGTERM: %v, want %v", tc.grace, got, tc.term)
			}
		})
	}
}

// TestKnobSupervisorGraceRows: [shutdown] grace in supervisor mode. Unset
// is the configured default (10 s): a service that ignores SIGTERM is
// still there 9 s after it and SIGKILLed at 10 s; a duration is SIGKILL of
// what is left that long after the SIGTERM, from the file or from --grace
// (which wins). 0 is refused: TestGraceZeroRefused.
func TestKnobSupervisorGraceRows(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		flags      []string
		grace      time.Duration
	}{
		{"unset", "", nil, 10 * time.Second},
		{"file 1s", "[shutdown]\ngrace = \"1s\"\n", nil, time.Second},
		{"flag 1500ms over file 30s", "[shutdown]\ngrace = \"30s\"\n", []string{"--grace", "1500ms"}, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := hDir(t)
			term := filepath.Join(dir, "term")
			body := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" + tc.file +
				svShell("deaf", dir, termTrap(dir))
			r, _ := hConfig(t, opts{}, dir, body, tc.flags...)
			svPoll(t, r, hWait, "the service's trap is set", func() bool { return svExists(filepath.Join(dir, "ready")) })
			code, took := svTermAndExit(t, r)
			t.Logf("%s: tend gone %v after SIGTERM", tc.name, took)
			// SIGKILL at the grace; then the 1 s teardown bound at most.
			if took < tc.grace-50*time.Millisecond || took > tc.grace+1400*time.Millisecond {
				t.Errorf("%s: tend gone %v after SIGTERM, want the grace %v (+ at most 1s of teardown)\n%s", tc.name, took, tc.grace, r.stderrAll())
			}
			if !svExists(term) {
				t.Errorf("%s: the service never got its SIGTERM", tc.name)
			}
			if code != 143 {
				t.Errorf("exit code %d, want 143 (killed_exit_code unset: a clean stop's)", code)
			}
		})
	}
}

// TestDefaultSocketUnbindable: supervisor mode's default socket
// (/run/tend.sock) cannot be bound (/run read-only): tend says so, naming
// the path and the reason, and runs on without the API. The one reaper,
// built before the socket is tried, credits the main service's exit to it
// and reaps each orphan exactly once (two reapers ran briefly once).
func TestDefaultSocketUnbindable(t *testing.T) {
	dir := hDir(t)
	// [control] with no socket: the default. svConfig would add socket = "".
	body := "[control]\nmode = \"0600\"\n"
	main := `for i in 1 2 3; do (sleep 0.2 &); done; sleep 0.6; exit 7`
	// track group: the orphans are tend's to reap (a unit helper would
	// reap its unit's own).
	r := svStart(t, opts{pid1: true, argv0: hSetup("run=readonly")}, dir, body, "-w", "--track", "group", "--", "sh", "-c", main)
	r.expectExit(7)
	stderr := r.stderrAll()
	for _, want := range []string{"no control API: cannot open the default socket", "socket=/run/tend.sock",
		"read-only file system", "running without it", "for none)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if n := strings.Count(stderr, "Reaped zombie process"); n != 3 {
		t.Errorf("%d orphans reaped, want the 3 made, once each:\n%s", n, stderr)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "internal error") {
		t.Errorf("stderr:\n%s", stderr)
	}
}
