//go:build linux

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExitCodes: every exit code 0-255 of the main process comes back
// exactly from tend as PID 1.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for code := 0; code <= 255; code++ {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{pid1: true}, "--", "sh", "-c", "exit "+strconv.Itoa(code))
			r.expectExit(code)
		})
	}
}

// killedBy are the signals whose default action kills, with a few
// real-time ones.
var killedBy = []unix.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGILL, unix.SIGTRAP, unix.SIGABRT,
	unix.SIGBUS, unix.SIGFPE, unix.SIGKILL, unix.SIGUSR1, unix.SIGSEGV, unix.SIGUSR2,
	unix.SIGPIPE, unix.SIGALRM, unix.SIGTERM, unix.SIGSTKFLT, unix.SIGXCPU, unix.SIGXFSZ,
	unix.SIGVTALRM, unix.SIGIO, unix.SIGPWR, unix.SIGSYS, 34, 35, 40, 50, 63, 64,
}

// TestExitBySignal: a main process that dies of signal N makes tend exit
// 128+N.
func TestExitBySignal(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, sig := range killedBy {
		t.Run(unix.SignalName(sig)+"/"+strconv.Itoa(int(sig)), func(t *testing.T) {
			t.Parallel()
			// The exit 99 is only reached if the signal did not kill.
			r := startTend(t, opts{pid1: true}, "--", "sh", "-c", fmt.Sprintf("kill -%d $$; exit 99", sig))
			r.expectExit(128 + int(sig))
		})
	}
}

// TestExpectExit: -e CODE maps CODE to 0 and nothing else.
func TestExpectExit(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, tc := range []struct {
		flags []string
		code  int
		want  int
	}{
		{[]string{"-e", "3"}, 3, 0},
		{[]string{"-e", "3"}, 4, 4},
		{[]string{"-e", "3"}, 0, 0},
		{[]string{"-e", "3", "-e", "5"}, 5, 0},
		{[]string{"-e", "3", "-e", "5"}, 3, 0},
		{[]string{"-e", "143"}, 143, 0},
		{[]string{"--expect-exit", "7"}, 7, 0},
	} {
		t.Run(fmt.Sprintf("%v/%d", tc.flags, tc.code), func(t *testing.T) {
			t.Parallel()
			args := append(tc.flags, "--", "sh", "-c", "exit "+strconv.Itoa(tc.code))
			r := startTend(t, opts{pid1: true}, args...)
			r.expectExit(tc.want)
		})
	}
}

// TestUsageAndExecErrors: usage errors exit 2 with the usage on stderr;
// exec failures exit 127/126 and name the path and the errno.
func TestUsageAndExecErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badFormat := filepath.Join(dir, "badformat") // executable, but no #! and no ELF: execve says ENOEXEC
	if err := os.WriteFile(badFormat, []byte("not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr []string // each must appear in stderr
	}{
		{"no command", nil, 2, []string{"usage: tend"}},
		{"only --", []string{"--"}, 2, []string{"usage: tend"}},
		{"unknown flag", []string{"--no-such-flag", "--", "true"}, 2, []string{"no-such-flag"}},
		{"unknown short flag", []string{"-Z", "true"}, 2, nil},
		{"bad -e", []string{"-e", "x", "--", "true"}, 2, nil},
		{"bad -r", []string{"-r", "TERM", "--", "true"}, 2, nil},
		{"bad signal name", []string{"-r", "NOPE:TERM", "--", "true"}, 2, nil},
		{"missing path", []string{"--", "/nonexistent/prog"}, 127, []string{"/nonexistent/prog", "ENOENT"}},
		{"missing in PATH", []string{"--", "no-such-prog-x7"}, 127, []string{"no-such-prog-x7", "ENOENT"}},
		{"not executable", []string{"--", noexec}, 126, []string{noexec, "EACCES"}},
		{"directory", []string{"--", dir}, 126, []string{dir, "EACCES"}},
		{"bad format", []string{"--", badFormat}, 126, []string{badFormat, "ENOEXEC"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{}, tc.args...)
			code := r.wait()
			stderr := r.stderrAll()
			if code != tc.code {
				t.Errorf("tend %q: exit code = %d, want %d; stderr:\n%s", tc.args, code, tc.code, stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("tend %q: stderr does not name %q:\n%s", tc.args, s, stderr)
				}
			}
			if out := r.rest(); len(out) != 0 {
				t.Errorf("tend %q: stdout = %q, want nothing", tc.args, out)
			}
		})
	}
}

// TestVersion: one line, the shape docker info parses from docker-init.
func TestVersion(t *testing.T) {
	t.Parallel()
	re := `^tend version \S+ - git\.[0-9a-f]{7,12}$`
	if !builtByTest {
		re = `^tend version \S+ - git\.([0-9a-f]{7,12}|unknown)$`
	}
	r := startTend(t, opts{}, "--version")
	r.expectExit(0)
	out := r.rest()
	if len(out) != 1 || !regexp.MustCompile(re).MatchString(out[0]) {
		t.Fatalf("tend --version printed %q, want one line matching %s", out, re)
	}
	if builtByTest && !strings.HasSuffix(out[0], " - git."+buildCommit) {
		t.Errorf("tend --version = %q, want the commit %s given with -X main.commit", out[0], buildCommit)
	}
}

// TestCommandNamedLikeSubcommand: everything after -- is the command, even
// a word that names a subcommand.
func TestCommandNamedLikeSubcommand(t *testing.T) {
	t.Parallel()
	needRoot(t)
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"status-marker $*\"\nexit 4\n"
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	path := "PATH=" + dir + ":" + os.Getenv("PATH")
	r := startTend(t, opts{pid1: true, env: []string{path}}, "--", "status", "--json")
	r.expect("status-marker --json")
	r.expectExit(4)
}

// TestBrokenStderr: logging to a pipe nobody reads (EPIPE, SIGPIPE) does
// not take tend down: it still reaps and reports the main's code.
func TestBrokenStderr(t *testing.T) {
	t.Parallel()
	needRoot(t)
	r := startTend(t, opts{pid1: true, closedStderr: true}, "-vv", "-w", "--",
		"sh", "-c", "( (exit 1) & ); ( (exit 2) & ); echo done; exit 5")
	out := r.rest()
	if code := r.wait(); code != 5 || len(out) != 1 || out[0] != "done" {
		t.Fatalf("tend with a broken stderr: exit code %d (%v), stdout %q; want 5 and [done]", code, r.cmd.ProcessState, out)
	}
}
