//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSupervisorMainTable: [main] sets up the command after --. It runs as
// its user (uid 1000) with its env; it is ready only when its ready probe
// says so; SIGHUP sent to tend reaches it as SIGUSR1 (signals); its output
// is prefixed (log_prefix); SIGTERM to tend stops it with its stop_signal,
// SIGINT, and tend exits with its code. [main] without a command after --
// is refused, exit 2, naming it.
func TestSupervisorMainTable(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	w := filepath.Join(dir, "w")
	if err := os.Mkdir(w, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(w, 0o777)
	body := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" +
		"[main]\nuser = \"1000:1000\"\nenv = { W = " + svQuote(w) + " }\nstop_signal = \"SIGINT\"\n" +
		"ready = \"exec:test -e " + w + "/ready\"\nsignals = { SIGHUP = \"SIGUSR1\" }\nlog_prefix = true\n"
	script := `trap 'echo usr1 >> "$W/sigs"' USR1; trap 'echo int >> "$W/sigs"; exit 5' INT; ` +
		`id -u > "$W/uid"; echo hello from main; sleep 0.3; touch "$W/ready"; while :; do sleep 0.05; done`
	r, sock := hConfig(t, opts{}, dir, body, "--", "sh", "-c", script)
	c := hClient(t, sock)
	svPoll(t, r, svWait, "main ready", func() bool {
		st, err := c.Status(hCtx(t))
		return err == nil && svcStatus(t, st, "main").Ready
	})
	if got := strings.TrimSpace(readFile(t, filepath.Join(w, "uid"))); got != "1000" {
		t.Errorf("main ran as uid %s, want 1000", got)
	}
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	svWaitLines(t, r, filepath.Join(w, "sigs"), 1)
	code, _ := svTermAndExit(t, r)
	if got := svLines(filepath.Join(w, "sigs")); strings.Join(got, " ") != "usr1 int" {
		t.Errorf("main got %q, want usr1 (SIGHUP routed) then int (its stop_signal)", got)
	}
	if code != 5 {
		t.Errorf("tend exit %d, want main's 5", code)
	}
	if out := strings.Join(r.rest(), "\n"); !strings.Contains(out, "main | hello from main") {
		t.Errorf("main's output not prefixed: %q", out)
	}

	dir2 := hDir(t)
	r2 := svStart(t, opts{pid1: true}, dir2, "[main]\nstop_signal = \"SIGINT\"\n")
	if code := r2.wait(); code != 2 || !strings.Contains(r2.stderrNow(), "[main] sets up the command after --, and none was given") {
		t.Errorf("[main] without --: exit %d, stderr %s", code, r2.stderrNow())
	}
}
