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
	"time"

	"golang.org/x/sys/unix"
)

// This file is the small harness of the supervisor-mode tests: configs
// written into t.TempDir(), services that are sh scripts recording what they
// observe into files of that directory (named by $D), and bounded waits on
// those files and on tend's -v log.

func init() {
	helpers["svc-setup"] = helperSvcSetup
}

// svWait bounds every wait of these tests on a file or a log line.
const svWait = 15 * time.Second

// svShell is a service running script with sh -c, with $D set to dir, and
// the extra lines of its table.
func svShell(name, dir, script string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[[service]]\nname = %s\ncommand = [\"sh\", \"-c\", %s]\nenv = { D = %s }\n",
		svQuote(name), svQuote(script), svQuote(dir))
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// svQuote is s as a TOML basic string.
func svQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// svConfig writes body as dir/tend.toml and returns its path.
//
// Unless the body has a [control] table it gets `socket = ""`: supervisor
// mode opens /run/tend.sock by default, which parallel tests (and the
// machine's own tend) would fight over.
func svConfig(t *testing.T, dir, body string) string {
	t.Helper()
	if !strings.Contains(body, "[control]") {
		body += "\n[control]\nsocket = \"\"\n" // last, so line numbers stay put
	}
	// TEND_TEST_TRACK=subreaper (by hand, for now: not all of the suite
	// passes with it) runs every unit of a config that does not choose its
	// own track with that track.
	if tr := os.Getenv("TEND_TEST_TRACK"); tr != "" && !strings.Contains(body, "[defaults]") {
		body += "\n[defaults]\ntrack = " + svQuote(tr) + "\n"
	}
	path := filepath.Join(dir, "tend.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// svStart writes the config and starts `tend -v --config FILE ARGS...`.
func svStart(t *testing.T, o opts, dir, body string, args ...string) *tendRun {
	t.Helper()
	path := svConfig(t, dir, body)
	return startTend(t, o, append([]string{"-v", "--config", path}, args...)...)
}

// svPoll calls cond every 10ms until it is true; it fails the test after d.
func svPoll(t *testing.T, r *tendRun, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			stderr := ""
			if r != nil {
				stderr = r.stderrNow()
			}
			t.Fatalf("%s: not within %v; tend's stderr:\n%s", what, d, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// svLines returns the lines of a file, nil when it does not exist.
func svLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// svWaitLines waits until path has at least n complete lines and returns them.
func svWaitLines(t *testing.T, r *tendRun, path string, n int) []string {
	t.Helper()
	var lines []string
	svPoll(t, r, svWait, fmt.Sprintf("%d lines in %s", n, filepath.Base(path)), func() bool {
		b, _ := os.ReadFile(path)
		lines = svLines(path)
		return len(lines) >= n && strings.HasSuffix(string(b), "\n")
	})
	return lines
}

// svExists reports whether path exists.
func svExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// svStamps reads a file of `date +%s%N` lines.
func svStamps(t *testing.T, path string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, l := range svLines(path) {
		n, err := strconv.ParseInt(strings.TrimSpace(l), 10, 64)
		if err != nil {
			t.Fatalf("%s: %q is not a timestamp", path, l)
		}
		out = append(out, time.Unix(0, n))
	}
	return out
}

// svStamp reads a file holding one timestamp.
func svStamp(t *testing.T, path string) time.Time {
	t.Helper()
	s := svStamps(t, path)
	if len(s) != 1 {
		t.Fatalf("%s: %d timestamps, want 1", path, len(s))
	}
	return s[0]
}

// svLog counts the -v log lines with msg and service=svc ("" for any).
func svLog(stderr, msg, svc string) int {
	n := 0
	svcRe := regexp.MustCompile(`(^| )service=` + regexp.QuoteMeta(svc) + `( |$)`)
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.Contains(l, "msg="+strconv.Quote(msg)) && !strings.Contains(l, "msg="+msg+" ") {
			continue
		}
		if svc == "" || svcRe.MatchString(l) {
			n++
		}
	}
	return n
}

// svWaitLog waits until the log has a line with msg for svc.
func svWaitLog(t *testing.T, r *tendRun, msg, svc string) {
	t.Helper()
	svPoll(t, r, svWait, fmt.Sprintf("log %q for %q", msg, svc), func() bool {
		return svLog(r.stderrNow(), msg, svc) > 0
	})
}

// svTermAndExit sends SIGTERM to tend and returns its exit code and how
// long it took to exit after the signal.
func svTermAndExit(t *testing.T, r *tendRun) (int, time.Duration) {
	t.Helper()
	t0 := time.Now()
	r.signal(unix.SIGTERM)
	code := r.wait()
	return code, r.ended.Sub(t0)
}

// svHostPid finds the pid, as the test sees it, of the descendant of tend
// whose pid in tend's namespace is nsPid.
func svHostPid(t *testing.T, r *tendRun, nsPid int) int {
	t.Helper()
	for _, p := range descendants(r.pid()) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(nsPid) {
				return p
			}
		}
	}
	t.Fatalf("no descendant of tend has pid %d in its namespace", nsPid)
	return 0
}

// helperSvcSetup prepares tend's surroundings, then execs ARGV (tend):
//
//	passwd=FILE, group=FILE  bind-mounted over /etc/passwd, /etc/group
//	                         (only in the private mount namespace of pid1)
//	stdout=FILE              tend's stdout goes to FILE
//	stdout=fullpipe          tend's stdout is a pipe nobody reads (tend
//	                         itself keeps the read end open, so writes block)
//
// args: SETTING... -- ARGV...
func helperSvcSetup(args []string) int {
	for len(args) > 0 && args[0] != "--" {
		key, val, _ := strings.Cut(args[0], "=")
		args = args[1:]
		switch {
		case key == "passwd" || key == "group":
			if err := unix.Mount(val, "/etc/"+key, "", unix.MS_BIND, ""); err != nil {
				return fail("bind %s over /etc/%s: %v", val, key, err)
			}
		case key == "stdout" && val == "fullpipe":
			var p [2]int
			if err := unix.Pipe2(p[:], 0); err != nil { // no O_CLOEXEC: tend keeps both ends
				return fail("pipe: %v", err)
			}
			if err := unix.Dup3(p[1], 1, 0); err != nil {
				return fail("dup3: %v", err)
			}
		case key == "stdout":
			fd, err := unix.Open(val, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
			if err != nil {
				return fail("open %s: %v", val, err)
			}
			if err := unix.Dup3(fd, 1, 0); err != nil {
				return fail("dup3: %v", err)
			}
			unix.Close(fd)
		default:
			return fail("svc-setup: unknown setting %q", key)
		}
	}
	if len(args) < 2 {
		return fail("svc-setup: no -- ARGV")
	}
	err := unix.Exec(args[1], args[1:], os.Environ())
	return fail("exec %s: %v", args[1], err)
}

// svSetup is opts.argv0 that runs tend through helperSvcSetup.
func svSetup(settings ...string) []string {
	return append(append([]string{testBin, "svc-setup"}, settings...), "--", tendBin)
}
