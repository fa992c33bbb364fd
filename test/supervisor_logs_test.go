//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// svPrefixed returns the lines of out that start with "name | ", without it.
func svPrefixed(out, name string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" | "); ok {
			got = append(got, rest)
		}
	}
	return got
}

// TestSupervisorLogPrefix: with log_prefix, a service's stdout lines appear
// as "name | line" on tend's stdout and its stderr lines on tend's stderr; a
// partial last line is flushed at the exit; a 200 KiB line comes out as 64
// KiB pieces. A service without log_prefix writes to tend's stdout as is.
func TestSupervisorLogPrefix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outFile := filepath.Join(dir, "stdout")
	cfg := svShell("a", dir, `echo out1; echo err1 >&2; echo out2; printf err-tail >&2; printf out-tail`,
		`log_prefix = true`, `restart = "never"`) +
		svShell("big", dir, `head -c 204800 /dev/zero | tr '\000' x; echo; echo end`,
			`log_prefix = true`, `restart = "never"`) +
		svShell("raw", dir, `echo raw-line`, `restart = "never"`)
	r := svStart(t, opts{pid1: true, argv0: svSetup("stdout=" + outFile)}, dir, cfg)
	r.expectExit(0)
	stderr := r.stderrAll()
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)

	if got, want := strings.Join(svPrefixed(out, "a"), ","), "out1,out2,out-tail"; got != want {
		t.Errorf("a's lines on stdout = %q, want %q", got, want)
	}
	if got, want := strings.Join(svPrefixed(stderr, "a"), ","), "err1,err-tail"; got != want {
		t.Errorf("a's lines on stderr = %q, want %q; stderr:\n%s", got, want, stderr)
	}
	var sizes []int
	big := svPrefixed(out, "big")
	for _, l := range big {
		if strings.Trim(l, "x") != "" && l != "end" {
			t.Errorf("big: unexpected line %.40q", l)
		}
		sizes = append(sizes, len(l))
	}
	if want := []int{65536, 65536, 65536, 8192, 3}; !equalInts(sizes, want) {
		t.Errorf("big's 200 KiB line came out as pieces of %v bytes, want %v", sizes, want)
	}
	if !strings.Contains("\n"+out, "\nraw-line\n") {
		t.Errorf("raw's line is not on stdout as is:\n%.300s", out)
	}
	if strings.Contains(out, "err1") || strings.Contains(stderr, "out1") {
		t.Errorf("stdout and stderr are mixed up")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSupervisorLogFullPipe: tend's stdout is a pipe nobody reads. A service
// writing 20 MB with log_prefix still runs at full speed (lines are dropped,
// not waited for), and tend still stops within its grace on SIGTERM,
// reporting the dropped lines.
func TestSupervisorLogFullPipe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := "[shutdown]\ngrace = \"5s\"\n" +
		svShell("flood", dir, `yes 0123456789 | head -c 20000000; : > "$D/flood.done"`, `log_prefix = true`, `restart = "never"`) +
		svShell("idle", dir, `echo idle-started; exec sleep 1000`, `log_prefix = true`)
	r := svStart(t, opts{pid1: true, argv0: svSetup("stdout=fullpipe")}, dir, cfg)
	svPoll(t, r, 10*time.Second, "the flood service done", func() bool {
		return svExists(filepath.Join(dir, "flood.done"))
	})
	t.Logf("20 MB written %v after tend started", time.Since(r.start).Round(time.Millisecond))
	svWaitLog(t, r, "service exited", "flood")
	code, took := svTermAndExit(t, r)
	stderr := r.stderrAll()
	if code != 143 {
		t.Errorf("tend exit code = %d, want 143; stderr:\n%s", code, stderr)
	}
	if took > 5*time.Second {
		t.Errorf("tend exited %v after SIGTERM, beyond its 5s grace", took)
	}
	if !strings.Contains(stderr, "service output lines dropped") {
		t.Errorf("no dropped-lines warning; stderr:\n%s", stderr)
	}
	t.Logf("exit %v after SIGTERM", took.Round(time.Millisecond))
}
