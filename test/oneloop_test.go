//go:build linux

package test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// TestGraceZeroRefused: --grace 0 meant "never kill" in init mode and
// "SIGKILL at once" in supervisor mode; now it is a usage error in both,
// as flag, env twin and [shutdown] grace alike (tend PID 1), with a message
// saying what to write instead, and nothing starts.
func TestGraceZeroRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tend.toml")
	os.WriteFile(cfg, []byte("[control]\nsocket = \"\"\n"), 0o644)
	zero := filepath.Join(dir, "zero.toml")
	os.WriteFile(zero, []byte("[control]\nsocket = \"\"\n[shutdown]\ngrace = \"0\"\n"), 0o644)
	marker := filepath.Join(dir, "ran")
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want []string // in stderr: what is wrong and what to write
	}{
		{"init flag", []string{"--grace", "0", "--"}, nil, []string{"0 is not a budget", "--grace 30s"}},
		{"init env", []string{"--"}, []string{"TEND_GRACE=0s"}, []string{"0 is not a budget", "--grace 30s"}},
		{"supervisor flag", []string{"--config", cfg, "--grace", "0", "--"}, nil, []string{"0 is not a budget", "--grace 30s"}},
		{"supervisor file", []string{"--config", zero, "--"}, nil, []string{"shutdown: grace", `"0" is not a budget`, `"30s"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startTend(t, opts{pid1: true, env: tc.env}, append(tc.args, "touch", marker)...)
			r.expectExit(2)
			stderr := r.stderrAll()
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q: want it to say %q (0 is not a budget, and what to give)", stderr, w)
				}
			}
			if svExists(marker) {
				t.Error("the command ran")
			}
		})
	}
}

// TestRewrittenTermStartsNothing: with -r TERM:0 --grace 1s a SIGTERM is
// dropped: the kill clock does not start (the main process lives past the
// grace) and /v1/health stays 200.
func TestRewrittenTermStartsNothing(t *testing.T) {
	dir := hDir(t)
	r, sock := hServe(t, opts{}, dir, []string{"-r", "TERM:0", "--grace", "1s"})
	c := hClient(t, sock)
	r.signal(unix.SIGTERM)
	time.Sleep(1500 * time.Millisecond)
	h, err := c.Health(hCtx(t))
	if err != nil || !h.Healthy || !r.running() {
		t.Fatalf("1.5s after a dropped SIGTERM: health %+v, %v; running %v; want healthy and running\n%s", h, err, r.running(), r.stderrNow())
	}
	st, err := c.Status(hCtx(t))
	if err != nil || st.Stopping || len(st.Services) != 1 || st.Services[0].State != "running" {
		t.Errorf("status %+v, %v: want main running, not stopping", st, err)
	}
	r.signal(unix.SIGINT) // not rewritten: stops as usual
	if code := r.wait(); code != 130 {
		t.Errorf("exit code %d after SIGINT, want 130", code)
	}
}

// TestRewriteSupervisorMode: -r has the one meaning of init mode with
// --config too (it was silently ignored there): a signal rewritten to 0 is
// dropped and starts nothing (-r TERM:0 with grace 1s: no shutdown, no kill
// clock, health 200 after 1.5 s), and any other is forwarded rewritten (the
// main service gets USR2 for USR1).
func TestRewriteSupervisorMode(t *testing.T) {
	dir := hDir(t)
	got := filepath.Join(dir, "got")
	body := "[control]\nsocket = \"" + filepath.Join(dir, "s") + "\"\n[shutdown]\ngrace = \"1s\"\n" +
		svShell("other", dir, `while :; do sleep 0.05; done`)
	main := `trap 'echo USR1 > ` + got + `' USR1; trap 'echo USR2 > ` + got + `' USR2; while :; do sleep 0.05; done`
	r, sock := hConfig(t, opts{}, dir, body, "-r", "TERM:0", "--rewrite", "USR1:USR2", "--", "sh", "-c", main)
	c := hClient(t, sock)
	svPoll(t, r, hWait, "both services running", func() bool {
		st, err := c.Status(hCtx(t))
		if err != nil || len(st.Services) != 2 {
			return false
		}
		for _, s := range st.Services {
			if s.State != "running" {
				return false
			}
		}
		return true
	})
	time.Sleep(200 * time.Millisecond) // the main service's traps are set
	r.signal(unix.SIGUSR1)
	svPoll(t, r, 5*time.Second, "the main service got a signal", func() bool { return svExists(got) })
	if b, _ := os.ReadFile(got); strings.TrimSpace(string(b)) != "USR2" {
		t.Errorf("the main service got %q for SIGUSR1 with -r USR1:USR2: want USR2", b)
	}
	r.signal(unix.SIGTERM)
	time.Sleep(1500 * time.Millisecond) // past the grace a started shutdown would have
	h, err := c.Health(hCtx(t))
	if err != nil || !h.Healthy || !r.running() {
		t.Fatalf("1.5s after a SIGTERM dropped by -r TERM:0: health %+v, %v; running %v; want healthy and running\n%s", h, err, r.running(), r.stderrNow())
	}
	st, err := c.Status(hCtx(t))
	if err != nil || st.Stopping {
		t.Errorf("status %+v, %v: want not stopping", st, err)
	}
	for _, s := range st.Services {
		if s.State != "running" {
			t.Errorf("service %s is %s after the dropped SIGTERM, want running", s.Name, s.State)
		}
	}
	r.signal(unix.SIGINT) // not rewritten: stops as usual
	if code := r.wait(); code != 143 {
		t.Errorf("exit code %d after SIGINT, want the main service's 143 (its stop_signal)", code)
	}
}

// TestInitJobsStopWithMain: in init mode jobs get SIGTERM when the main
// process does, while it drains, not only after it has exited.
func TestInitJobsStopWithMain(t *testing.T) {
	dir := hDir(t)
	drain := `trap 'sleep 2; exit 0' TERM; while :; do sleep 0.05; done`
	r, sock := hServe(t, opts{}, dir, nil, "sh", "-c", drain)
	c := hClient(t, sock)
	got := filepath.Join(dir, "job.term")
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c",
		`trap 'date +%s.%N > ` + got + `; exit 0' TERM; while :; do sleep 0.05; done`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the job's trap is set
	t0 := time.Now()
	r.signal(unix.SIGTERM)
	svPoll(t, r, 5*time.Second, "the job got SIGTERM", func() bool { return svExists(got) })
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the job got SIGTERM %v after tend (the main drains 2s): want it at once", d)
	}
	if !r.running() {
		t.Error("tend had exited before the job was told: jobs stopped after the main process")
	}
	if code := r.wait(); code != 0 {
		t.Errorf("exit code %d, want the main process's 0", code)
	}
	_ = j
}

// TestTeardownBounded: after the budget, tend is gone within the design's
// bound (DESIGN.md §1.6: 1 s, plus the 3 s final wait only for processes
// that ignore SIGKILL) although an event stream is open, a log_prefix
// pipe is held by a leftover that ignores SIGTERM, and a client has sent
// half a request.
func TestTeardownBounded(t *testing.T) {
	dir := hDir(t)
	body := "[control]\nsocket = \"" + filepath.Join(dir, "s") + "\"\n[shutdown]\ngrace = \"1s\"\n" +
		svShell("stubborn", dir, `trap "" TERM; (trap "" TERM; sleep 1000) & while :; do echo tick; sleep 0.05; done`, `log_prefix = true`)
	r, sock := hConfig(t, opts{}, dir, body)
	c := hClient(t, sock)
	ev, err := c.Events(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close() })
	go func() {
		for {
			if _, err := ev.Next(); err != nil {
				return
			}
		}
	}()
	half := hDial(t, sock)
	half.Write([]byte("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: 100\r\n\r\n{"))
	var idle []net.Conn
	for range 20 {
		idle = append(idle, hDial(t, sock))
	}
	time.Sleep(300 * time.Millisecond)
	code, took := svTermAndExit(t, r)
	// 1 s budget (SIGKILL at its end), then at most 1 s of teardown; the
	// SIGKILLed processes go at once, so the 3 s wait is not used.
	if took > 2200*time.Millisecond {
		t.Errorf("tend took %v to exit with grace 1s: want the budget + at most 1s\n%s", took, r.stderrAll())
	}
	if code != 137 && code != 143 {
		t.Errorf("exit code %d", code)
	}
	_ = idle
}

// TestTeardownBoundedStalledOutput: tend's own stdout and stderr are pipes
// nobody reads, full from the start, so each outlet's thread is stuck in
// write(2) with lines queued (the service's, with log_prefix, and tend's
// own log). After the budget tend is still gone within the one teardown
// bound: its two outlets are flushed side by side against the deadline of
// the rest, not for 1 s each after it.
func TestTeardownBoundedStalledOutput(t *testing.T) {
	dir := hDir(t)
	body := "[control]\nsocket = \"" + filepath.Join(dir, "s") + "\"\n[shutdown]\ngrace = \"1s\"\n" +
		svShell("ticks", dir, `trap "" TERM; while :; do echo out; echo err >&2; sleep 0.05; done`, `log_prefix = true`)
	r, sock := hConfig(t, opts{argv0: hSetup("stdout=fullpipe", "stderr=fullpipe")}, dir, body)
	c := hClient(t, sock)
	svPoll(t, r, hWait, "the service is running", func() bool {
		st, err := c.Status(hCtx(t))
		return err == nil && len(st.Services) == 1 && st.Services[0].State == "running"
	})
	time.Sleep(200 * time.Millisecond) // some of its lines are queued
	code, took := svTermAndExit(t, r)
	t.Logf("tend gone %v after SIGTERM", took)
	// 1 s budget (SIGKILL at its end), then at most the 1 s teardown
	// bound; the 3 s final wait is not used (SIGKILL works). Before the
	// outlets shared the deadline this took the budget + 1 s + 2 x 1 s.
	if took > 2400*time.Millisecond {
		t.Errorf("tend took %v to exit with grace 1s and its stdout and stderr stalled: want the budget + at most 1s", took)
	}
	if code != 137 && code != 143 {
		t.Errorf("exit code %d, want 143 (or 137)", code)
	}
}

// TestJobDirDefault: a job whose request names no dir starts in
// config.DefaultJobDir ("/"), not in tend's own working directory.
func TestJobDirDefault(t *testing.T) {
	dir := hDir(t)
	r, sock := hServe(t, opts{}, dir, nil)
	c := hClient(t, sock)
	got := filepath.Join(dir, "cwd")
	if _, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", "pwd > " + got}}, nil); err != nil {
		t.Fatal(err)
	}
	svPoll(t, r, 5*time.Second, "the job wrote its directory", func() bool {
		b, _ := os.ReadFile(got)
		return strings.HasSuffix(string(b), "\n")
	})
	wd, _ := os.Getwd() // tend's, which it does not change
	if b, _ := os.ReadFile(got); strings.TrimSpace(string(b)) != config.DefaultJobDir {
		t.Errorf("a job with no dir ran in %q (tend's is %q), want %q", strings.TrimSpace(string(b)), wd, config.DefaultJobDir)
	}
}

// TestJobEnvChoices: what environment a root caller's job gets (tend PID
// 1, serving its socket): with no env, tend's own (less tend's settings),
// with TEND_SOCKET set to the socket; with an env, exactly that one, its
// TEND_SOCKET replaced; naming a user, tend's with that user's HOME
// (jobs/env_test.go's TestEnvChoices, before the one loop; a non-root
// caller's is TestJobsUnprivilegedCaller and TestHardeningCallerIdentity).
func TestJobEnvChoices(t *testing.T) {
	dir := hDir(t)
	r, sock := hServe(t, opts{env: []string{"SECRET=hunter2", "HOME=/root"}}, dir, nil)
	c := hClient(t, sock)
	for _, tc := range []struct {
		name      string
		req       api.JobRequest
		uid       string
		want, not []string
	}{
		{"tend's env", api.JobRequest{}, "0", []string{"SECRET=hunter2", "HOME=/root", "TEND_SOCKET=" + sock}, nil},
		{"the request's env", api.JobRequest{Env: []string{"FOO=1", "TEND_SOCKET=/elsewhere"}}, "0",
			[]string{"FOO=1", "TEND_SOCKET=" + sock}, []string{"SECRET=hunter2", "TEND_SOCKET=/elsewhere"}},
		{"a user named", api.JobRequest{User: "nobody"}, "65534",
			[]string{"SECRET=hunter2", "HOME=/nonexistent", "TEND_SOCKET=" + sock}, []string{"HOME=/root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := mustPipe(t)
			defer pr.Close()
			tc.req.Argv = []string{"/bin/sh", "-c", "/usr/bin/id -u; /usr/bin/env"}
			tc.req.Stdio = []int{1}
			_, err := c.Spawn(hCtx(t), tc.req, []*os.File{pw})
			pw.Close()
			if err != nil {
				t.Fatal(err)
			}
			pr.SetReadDeadline(time.Now().Add(hWait))
			out, err := io.ReadAll(pr) // EOF: the job has ended, and tend kept no copy
			if err != nil {
				t.Fatalf("job output: %v\n%s", err, r.stderrNow())
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if lines[0] != tc.uid {
				t.Errorf("uid %q, want %s", lines[0], tc.uid)
			}
			for _, kv := range tc.want {
				if !slices.Contains(lines[1:], kv) {
					t.Errorf("env lacks %s: %q", kv, lines[1:])
				}
			}
			for _, kv := range tc.not {
				if slices.Contains(lines[1:], kv) {
					t.Errorf("env has %s: %q", kv, lines[1:])
				}
			}
		})
	}
}
