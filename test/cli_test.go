//go:build linux

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The command line's rough edges (issue 14): flags after arguments, `tend
// help CMD`, messages that name the problem, and --help naming every
// variable tend reads.

// cliRun runs `tend ARGS...` from the test process with env added (and no
// TEND_SOCKET unless env has one) and returns how it ended.
func cliRun(t *testing.T, env []string, args ...string) jobsRes {
	t.Helper()
	cmd := exec.Command(tendBin, args...)
	for _, kv := range childEnv(env) {
		if !strings.HasPrefix(kv, "TEND_SOCKET=") || slicesHas(env, kv) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return jobsRun(t, cmd)
}

func slicesHas(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCLIFlagsAfterArguments: a client command's flags may follow its
// arguments (`tend restart web --socket S`), and an unknown one there is
// named; before, --socket was taken for a second service name.
func TestCLIFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	sock := filepath.Join(dir, "s")
	body := "[control]\nsocket = " + svQuote(sock) + "\n" + svTrapper("web", dir, []string{"USR1"})
	r, _ := hConfig(t, opts{}, dir, body)
	svWaitLines(t, r, filepath.Join(dir, "web.pid"), 1)

	res := cliRun(t, nil, "signal", "--service", "web", "USR1", "--socket", sock)
	if res.code() != 0 {
		t.Fatalf("tend signal --service web USR1 --socket S: exit %d, stderr %q", res.code(), res.stderr)
	}
	svWaitLines(t, r, filepath.Join(dir, "web.sig"), 1)
	if res := cliRun(t, nil, "restart", "web", "--socket", sock); res.code() != 0 {
		t.Fatalf("tend restart web --socket S: exit %d, stderr %q", res.code(), res.stderr)
	}
	svPoll(t, r, svWait, "web's second run", func() bool { return svLog(r.stderrNow(), "service started", "web") == 2 })
	res = cliRun(t, []string{"TEND_SOCKET=" + sock}, "restart", "web", "--no-such-flag")
	if res.code() != 2 || !strings.Contains(res.stderr, "no-such-flag") || !strings.Contains(res.stderr, "usage: tend restart") {
		t.Errorf("tend restart web --no-such-flag: exit %d, stderr %q; want 2 naming the flag and the usage", res.code(), res.stderr)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
}

// TestServiceSignalBody: POST /v1/services/NAME/signal needs a body naming
// the signal; an empty body or signal is a 400 that names what is missing,
// and the service gets nothing (it used to be a SIGTERM, which stopped it).
func TestServiceSignalBody(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	sock := filepath.Join(dir, "s")
	body := "[control]\nsocket = " + svQuote(sock) + "\n" + svTrapper("web", dir, []string{"USR1"}, `restart = "never"`)
	r, _ := hConfig(t, opts{}, dir, body)
	svWaitLines(t, r, filepath.Join(dir, "web.pid"), 1)
	for _, tc := range []struct{ body, want string }{
		{"", "body: empty"},
		{"{}", "signal: missing"},
		{`{"signal":""}`, "signal: missing"},
	} {
		rep := jobsRaw(t, sock, jobsPost("/v1/services/web/signal", tc.body))
		if rep.code != 400 || !strings.Contains(rep.msg, tc.want) {
			t.Errorf("POST /v1/services/web/signal %q = %d %q, want 400 naming %q", tc.body, rep.code, rep.msg, tc.want)
		}
	}
	if rep := jobsRaw(t, sock, jobsPost("/v1/services/web/signal", `{"signal":"SIGUSR1"}`)); rep.code != 204 {
		t.Errorf(`POST /v1/services/web/signal {"signal":"SIGUSR1"} = %d %q, want 204`, rep.code, rep.body)
	}
	svWaitLines(t, r, filepath.Join(dir, "web.sig"), 1)
	time.Sleep(100 * time.Millisecond) // a wrong signal would have shown by now
	if stderr := r.stderrNow(); svLog(stderr, "service exited", "web") != 0 || !r.running() {
		t.Errorf("web was stopped by a refused request; stderr:\n%s", stderr)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
}

// TestCLIHelp: `tend help` and `tend help CMD` show the help (exit 0);
// `tend help NOPE` names the commands and how to run a program called help;
// `tend -- help` still runs a program called help (here: none, 127).
func TestCLIHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"help"}, 0, "GLOBAL OPTIONS:", ""},
		{[]string{"help", "spawn"}, 0, "tend spawn - run a command as a job", ""},
		{[]string{"-v", "help", "restart"}, 0, "USAGE:\n   tend restart SERVICE", ""},
		{[]string{"help", "nope"}, 2, "", "tend -- help"},
		{[]string{"--", "help"}, 127, "", "exec help: no such file or directory"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{pid1: true}, tc.args...)
			code := r.wait()
			out, stderr := strings.Join(r.rest(), "\n"), r.stderrAll()
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("tend %q: exit %d, stdout %q, stderr %q; want %d, stdout with %q, stderr with %q",
					tc.args, code, out, stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestCLIUsageMessages: bad flags exit 2 with a message that names what is
// wrong: a duration without its unit, -r of a signal tend never forwards or
// of one reserved for libc; dumb-init's -V prints the version.
func TestCLIUsageMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr []string
	}{
		{"grace without unit", nil, []string{"--grace", "5", "--", "true"}, 2, []string{`--grace (or TEND_GRACE) "5"`, "missing unit", "5s"}},
		{"TEND_GRACE without unit", []string{"TEND_GRACE=5"}, []string{"--", "true"}, 2, []string{"TEND_GRACE", "missing unit"}},
		{"cleanup-grace garbage", nil, []string{"--cleanup-grace", "soon", "--", "true"}, 2, []string{"--cleanup-grace", `invalid duration "soon"`}},
		{"-r to 32", nil, []string{"-r", "1:32", "--", "true"}, 2, []string{`-r "1:32"`, "(32)", "reserved"}},
		{"-r from 34", nil, []string{"-r", "34:HUP", "--", "true"}, 2, []string{`-r "34:HUP"`, "reserved", "no effect"}},
		{"-r TTIN", nil, []string{"-r", "TTIN:HUP", "--", "true"}, 2, []string{`-r "TTIN:HUP"`, "never forwarded", "no effect"}},
		{"-r CHLD", nil, []string{"-r", "CHLD:HUP", "--", "true"}, 2, []string{`-r "CHLD:HUP"`, "no effect"}},
		{"-r still works", nil, []string{"-r", "HUP:0", "-r", "35:USR1", "--", "true"}, 0, nil},
		{"-V", nil, []string{"-V"}, 0, nil},
		{"killed-exit-code not a number", nil, []string{"--killed-exit-code", "x", "--", "true"}, 2, []string{"--killed-exit-code", `"x" is not a number`, "1-255"}},
		{"killed-exit-code over 255", []string{"TEND_KILLED_EXIT_CODE=300"}, []string{"--", "true"}, 2, []string{"TEND_KILLED_EXIT_CODE", "300 is not an exit code"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{pid1: true, env: tc.env}, tc.args...)
			code := r.wait()
			stderr := r.stderrAll()
			if code != tc.code {
				t.Errorf("tend %q: exit %d, want %d; stderr:\n%s", tc.args, code, tc.code, stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("tend %q: stderr does not say %q:\n%s", tc.args, w, stderr)
				}
			}
			if tc.name == "-V" {
				if out := r.rest(); len(out) != 1 || !strings.HasPrefix(out[0], "tend version ") {
					t.Errorf("tend -V printed %q, want the version line", out)
				}
			}
		})
	}
}

// TestHelpNamesEveryEnvVar: `tend --help` names every TEND_ and TINI_
// variable that main.go and the clients read (found in their source, so a
// new one cannot be left out of the help).
func TestHelpNamesEveryEnvVar(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../client/*.go")
	files = append(files, "../main.go")
	re := regexp.MustCompile(`"((TEND|TINI)_[A-Z_]+)"`)
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	if len(names) < 5 {
		t.Fatalf("found only %v in the sources: the pattern is broken", names)
	}
	res := cliRun(t, nil, "--help")
	if res.code() != 0 {
		t.Fatalf("tend --help: exit %d, stderr %q", res.code(), res.stderr)
	}
	for name := range names {
		if !regexp.MustCompile(`(^|[^A-Z_])\$?` + name + `([^A-Z_]|$)`).MatchString(res.stdout) {
			t.Errorf("tend --help does not name %s, which tend reads", name)
		}
	}
	// Each flag's twin is built by envTwin: the help shows those beside the
	// flags; check one.
	if !strings.Contains(res.stdout, "[$TEND_CLEANUP_GRACE]") {
		t.Errorf("tend --help does not show the flags' twins:\n%s", res.stdout)
	}
}
