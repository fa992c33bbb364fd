//go:build linux

package test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Small regressions pinned black-box (issue 10's review): each was seen
// wrong once, or could be by an easy change.

// TestPinnedExecFailureKeepsBackoff: a service whose command does not
// exist keeps its backoff (1s) although other services become ready
// meanwhile (each readiness starts what was waiting): in its first 1.5s it
// is tried twice, at 0 and 1s, not once per readiness.
func TestPinnedExecFailureKeepsBackoff(t *testing.T) {
	dir := t.TempDir()
	body := `
[[service]]
name = "ghost"
command = ["/nonexistent/tend-test-prog"]
restart = "always"
backoff = "1s"
`
	for i, d := range []string{"0.15", "0.3", "0.45", "0.6", "0.75"} {
		body += "\n[[service]]\nname = \"r" + string(rune('0'+i)) + "\"\ncommand = [\"/bin/sleep\", \"1000\"]\nready = \"exec:/bin/sleep " + d + "\"\n"
	}
	r := svStart(t, opts{pid1: true}, dir, body)
	svPoll(t, r, svWait, "five services ready", func() bool { return svLog(r.stderrNow(), "service running", "") >= 5 })
	time.Sleep(time.Until(r.start.Add(1500 * time.Millisecond)))
	stderr := r.stderrNow()
	if n := svLog(stderr, "service cannot start", "ghost"); n < 1 || n > 2 {
		t.Errorf("ghost tried %d times in 1.5s with backoff 1s while five services became ready, want 2 (at 0 and 1s); stderr:\n%s", n, stderr)
	}
}

// TestPinnedInitMainSince: in init mode the main process's `since` in
// status is when it started, not the zero time.
func TestPinnedInitMainSince(t *testing.T) {
	dir := hDir(t)
	t0 := time.Now()
	r, sock := hServe(t, opts{}, dir, nil)
	st, err := hClient(t, sock).Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 {
		t.Fatalf("services %+v, want main only", st.Services)
	}
	m := st.Services[0]
	if m.Since.IsZero() || m.Since.Before(t0.Add(-time.Second)) || m.Since.After(time.Now().Add(time.Second)) {
		t.Errorf("main = %+v: since %v, want the time it started (after %v); stderr:\n%s", m, m.Since, t0, r.stderrNow())
	}
}

// TestPinnedSignalNamesInLog: tend's log names signals as SIGTERM, never
// with Go's words ("terminated").
func TestPinnedSignalNamesInLog(t *testing.T) {
	dir := t.TempDir()
	r := svStart(t, opts{pid1: true}, dir, `
[[service]]
name = "selfterm"
command = ["/bin/sh", "-c", "kill -TERM $$"]
restart = "never"
`)
	r.wait()
	stderr := r.stderrAll()
	if !regexp.MustCompile(`msg="service exited" service=selfterm code=143 run=1 sig=SIGTERM`).MatchString(stderr) {
		t.Errorf("no `service exited ... sig=SIGTERM` line for selfterm; stderr:\n%s", stderr)
	}
	if strings.Contains(stderr, "terminated") {
		t.Errorf("the log says \"terminated\" (Go's name of SIGTERM); stderr:\n%s", stderr)
	}
}

// TestPinnedInitForwardLoggedAtV: in init mode, each signal tend forwards
// to the main process is logged at -v, as in supervisor mode (it was at
// -vv, debug, while README said -v).
func TestPinnedInitForwardLoggedAtV(t *testing.T) {
	r := startTend(t, opts{pid1: true}, "-v", "--", "sh", "-c", `trap 'echo got; exit 0' USR1; echo up; while :; do sleep 0.05; done`)
	r.expect("up")
	r.signal(unix.SIGUSR1)
	r.expect("got")
	r.expectExit(0)
	if !strings.Contains(r.stderrAll(), `msg="forwarding signal" sig=SIGUSR1 service=main`) {
		t.Errorf("no `forwarding signal sig=SIGUSR1` line at -v; stderr:\n%s", r.stderrAll())
	}
}
