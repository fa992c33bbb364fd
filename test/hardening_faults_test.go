//go:build linux

package test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// Faults: in each, tend stays up, names the fault, and loses no exit status.

// hCgroup makes a child cgroup of a v1 hierarchy, or skips; it is removed
// (once empty) at the end of the test.
func hCgroup(t *testing.T, hierarchy string) string {
	t.Helper()
	root := "/sys/fs/cgroup/" + hierarchy
	dir, err := os.MkdirTemp(root, "tend-hardening-")
	if err != nil {
		t.Skipf("no writable %s cgroup: %v", hierarchy, err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(hWait)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // the last tasks are still exiting
		}
	})
	return dir
}

func hWrite(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatalf("write %q to %s: %v", value, path, err)
	}
}

// fork fails with EAGAIN (a pids cgroup at its pids.max, as with docker
// --pids-limit): the job is refused with 503 naming EAGAIN, tend stays up,
// the jobs that did start keep exact statuses, and once room is made jobs
// start again. tend itself is moved into the cgroup: its own threads count
// too, so the limit leaves it a little room to grow (the Go runtime dies
// when it cannot make a thread it needs).
func TestHardeningForkEAGAIN(t *testing.T) {
	t.Parallel()
	cg := hCgroup(t, "pids")
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	hWrite(t, filepath.Join(cg, "cgroup.procs"), strconv.Itoa(r.pid()))
	t.Cleanup(func() { _ = os.WriteFile("/sys/fs/cgroup/pids/cgroup.procs", []byte(strconv.Itoa(r.pid())), 0) })
	cur, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(cur)))
	const room = 3
	hWrite(t, filepath.Join(cg, "pids.max"), strconv.Itoa(n+room+4)) // +4 threads for the runtime
	var started []string
	var refused []string
	for i := range room + 8 {
		j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sleep", "30"}}, nil)
		switch {
		case err == nil:
			started = append(started, j.ID)
		case hCode(err) == 503:
			refused = append(refused, err.Error())
		default:
			t.Fatalf("job %d with the cgroup full: %v, want 201 or 503", i, err)
		}
	}
	events, _ := os.ReadFile(filepath.Join(cg, "pids.events"))
	t.Logf("pids.max %d: %d jobs started, %d refused (%s); first refusal %q", n+room+4, len(started), len(refused),
		strings.TrimSpace(string(events)), append(refused, "")[0])
	if len(refused) == 0 {
		t.Fatalf("no job refused with pids.max reached")
	}
	if !strings.Contains(refused[0], "EAGAIN") {
		t.Errorf("refusal %q does not name EAGAIN", refused[0])
	}
	if !r.running() {
		t.Fatalf("tend died at pids.max: %v; stderr:\n%s", r.cmd.ProcessState, r.stderrNow())
	}
	hWrite(t, filepath.Join(cg, "pids.max"), "max")
	for _, id := range started {
		if err := c.Signal(hCtx(t), id, api.SignalRequest{Signal: "SIGUSR1"}); err != nil {
			t.Fatalf("signal %s: %v", id, err)
		}
		if j := hWaitJob(t, c, id); j.Signal == nil || *j.Signal != "SIGUSR1" || j.Reason != api.ReasonSignaled {
			t.Errorf("job %s: %+v, want signaled SIGUSR1", id, j)
		}
	}
	hAlive(t, r, c)
}

// hExecFiles makes the three kinds of command that cannot be executed:
// missing (ENOENT), without the x bit (EACCES), and garbage with it
// (ENOEXEC: no #! and no ELF header).
func hExecFiles(t *testing.T, dir string) map[string][2]string {
	t.Helper()
	noexec := filepath.Join(dir, "noexec")
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, []byte("\x00\x01\x02 not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// name: path, errno name
	return map[string][2]string{
		"ENOENT":  {filepath.Join(dir, "missing"), "ENOENT"},
		"EACCES":  {noexec, "EACCES"},
		"ENOEXEC": {garbage, "ENOEXEC"},
	}
}

var hExecCodes = map[string]int{"ENOENT": 127, "EACCES": 126, "ENOEXEC": 126}

// Exec failures of the main process, of a service and of a job: 127 or 126,
// and the path and errno named.
func TestHardeningExecFailures(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	files := hExecFiles(t, dir)
	for name, f := range files {
		t.Run("main/"+name, func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{pid1: true}, "--", f[0])
			r.expectExit(hExecCodes[name])
			if e := r.stderrAll(); !strings.Contains(e, f[0]) || !strings.Contains(e, f[1]) {
				t.Errorf("stderr does not name %s and %s:\n%s", f[0], f[1], e)
			}
		})
		t.Run("service/"+name, func(t *testing.T) {
			t.Parallel()
			sdir := hDir(t)
			body := fmt.Sprintf("[control]\nsocket = %s\n[[service]]\nname = \"bad\"\ncommand = [%s]\nrestart = \"never\"\n",
				svQuote(filepath.Join(sdir, "s")), svQuote(f[0]))
			body += svShell("good", sdir, "echo up > $D/up; exec sleep 1000")
			r, sock := hConfig(t, opts{}, sdir, body)
			c := hClient(t, sock)
			svPoll(t, r, hWait, "the bad service's exec failure logged", func() bool {
				e := r.stderrNow()
				return strings.Contains(e, f[0]) && strings.Contains(e, f[1])
			})
			var bad api.Service
			svPoll(t, r, hWait, "the bad service ended with its code", func() bool {
				st, err := c.Status(hCtx(t))
				if err != nil {
					return false
				}
				for _, s := range st.Services {
					if s.Name == "bad" {
						bad = s
					}
				}
				return bad.LastCode != nil && bad.State != "running" && bad.State != "starting"
			})
			if *bad.LastCode != hExecCodes[name] {
				t.Errorf("service bad: last_code %d, want %d", *bad.LastCode, hExecCodes[name])
			}
			hAlive(t, r, c)
		})
	}
	t.Run("job", func(t *testing.T) {
		t.Parallel()
		r, sock := hServe(t, opts{}, hDir(t), nil)
		c := hClient(t, sock)
		for name, f := range files {
			_, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{f[0]}}, nil)
			if hCode(err) != 422 || !strings.Contains(err.Error(), f[0]) || !strings.Contains(err.Error(), f[1]) {
				t.Errorf("job %s: %v, want 422 naming %s and %s", name, err, f[0], f[1])
			}
		}
		hAlive(t, r, c)
	})
}

// A crash-looping service: the backoff holds (runs over 3s are what the
// doubling allows, not hundreds) and tend does not spin.
func TestHardeningCrashLoop(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\n", svQuote(filepath.Join(dir, "s"))) +
		svShell("crash", dir, "echo run >> $D/runs; exit 3",
			`restart = "always"`, `backoff = "100ms"`, `backoff_max = "1s"`, `max_restarts = 1000`)
	r, _ := hConfig(t, opts{}, dir, body)
	svWaitLines(t, r, filepath.Join(dir, "runs"), 1)
	cpu0, runs0 := hCPU(t, r), len(svLines(filepath.Join(dir, "runs")))
	time.Sleep(3 * time.Second) // the window measured, not a synchronisation
	cpu, runs := hCPU(t, r)-cpu0, len(svLines(filepath.Join(dir, "runs")))-runs0
	t.Logf("crash loop over 3s: %d runs, tend used %v of CPU", runs, cpu)
	// 100ms, 200ms, 400ms, 800ms, then 1s each: at most 7 runs in any 3s.
	if runs > 8 || runs < 2 {
		t.Errorf("%d runs in 3s, want 2-8 with backoff 100ms doubling to 1s", runs)
	}
	if cpu > 300*time.Millisecond {
		t.Errorf("tend used %v of CPU in 3s of crash loop: spinning", cpu)
	}
}

// A job ignoring SIGTERM gets SIGKILL [jobs] stop_grace after a kill
// request, and its record says so.
func TestHardeningJobIgnoresTerm(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\n[jobs]\nstop_grace = \"1s\"\n", svQuote(filepath.Join(dir, "s")))
	r, sock := hConfig(t, opts{}, dir, body, "--", "sleep", "100000")
	c := hClient(t, sock)
	pr, pw := mustPipe(t)
	defer pr.Close()
	null, _ := os.Open(os.DevNull)
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{testBin, "ignoreterm", "job"}}, []*os.File{null, pw})
	null.Close()
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	pr.SetReadDeadline(time.Now().Add(hWait))
	buf := make([]byte, 64)
	if n, err := pr.Read(buf); err != nil || string(buf[:n]) != "job ready\n" {
		t.Fatalf("job said %q, %v", buf[:n], err)
	}
	t0 := time.Now()
	if err := c.Signal(hCtx(t), j.ID, api.SignalRequest{Signal: "SIGTERM", Tree: true, Kill: true}); err != nil {
		t.Fatal(err)
	}
	j = hWaitJob(t, c, j.ID)
	took := time.Since(t0)
	t.Logf("job ignoring SIGTERM: %s by %v after %v", j.Reason, *j.Signal, took)
	if j.Signal == nil || *j.Signal != "SIGKILL" || j.Reason != api.ReasonKilled {
		t.Errorf("job record %+v, want reason killed by SIGKILL", j)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("SIGKILL came %v after the kill request, want stop_grace (1s)", took)
	}
	hAlive(t, r, c)
}

// SIGKILL of every service at once: each is restarted or not by its policy,
// and each one's last_code is exactly 137.
func TestHardeningKillAllServices(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\n", svQuote(filepath.Join(dir, "s")))
	policies := map[string]string{"a1": "always", "a2": "always", "a3": "always", "f1": "on-failure", "n1": "never"}
	for name, p := range policies {
		body += svShell(name, dir, "echo $$ >> $D/"+name+"; exec sleep 1000", `restart = "`+p+`"`, `backoff = "100ms"`)
	}
	r, sock := hConfig(t, opts{}, dir, body, "--", "sleep", "100000")
	c := hClient(t, sock)
	var hosts []int
	for name := range policies {
		lines := svWaitLines(t, r, filepath.Join(dir, name), 1)
		pid, _ := strconv.Atoi(lines[0])
		hosts = append(hosts, svHostPid(t, r, pid))
	}
	for _, p := range hosts {
		unix.Kill(p, unix.SIGKILL)
	}
	for name, p := range policies {
		if p != "never" {
			svWaitLines(t, r, filepath.Join(dir, name), 2)
		}
	}
	// Each exit is logged with its exact code; a restarted service's
	// last_code in /v1/status is that of its current run (null while it
	// runs), so the code of the killed run is read from the log.
	var last []api.Service
	svPoll(t, r, hWait, "every service in its state after the kill", func() bool {
		st, err := c.Status(hCtx(t))
		if err != nil {
			return false
		}
		last = st.Services
		for _, s := range st.Services {
			p, mine := policies[s.Name]
			switch {
			case !mine:
			case p == "never" && (s.State != "stopped" || s.Runs != 1 || s.LastCode == nil || *s.LastCode != 137):
				return false
			case p != "never" && (s.State != "running" || s.Runs != 2):
				return false
			}
		}
		return true
	})
	for name := range policies {
		if n := hLogCode(r.stderrNow(), name, 137); n != 1 {
			t.Errorf("service %s: %d exits with code=137 logged, want 1; services %+v", name, n, last)
		}
	}
	hAlive(t, r, c)
}

// One SIGTERM hidden in 100,000 other signals: tend (supervisor mode)
// still stops, on time.
func TestHardeningTermInSignalFlood(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	body := "[control]\nsocket = \"\"\n[shutdown]\ngrace = \"5s\"\n" +
		svShell("svc", dir, "echo up > $D/up; exec sleep 1000", `signals = { SIGUSR1 = "", SIGUSR2 = "", SIGWINCH = "", SIGHUP = "" }`)
	r := svStart(t, opts{pid1: true}, dir, body)
	svWaitLines(t, r, filepath.Join(dir, "up"), 1)
	flood := []unix.Signal{unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGHUP}
	var t0 time.Time
	for i := range 100000 {
		sig := flood[i%len(flood)]
		if i == 50000 {
			sig, t0 = unix.SIGTERM, time.Now()
		}
		if err := unix.Kill(r.pid(), sig); err != nil {
			if errors.Is(err, unix.ESRCH) {
				break // tend already stopped
			}
			t.Fatalf("signal %d: %v", i, err)
		}
	}
	code := r.wait()
	took := r.ended.Sub(t0)
	t.Logf("SIGTERM in 100,000 signals: tend exited %d, %v after it", code, took)
	if code != 143 {
		t.Errorf("tend exit code %d, want 143 (the service's SIGTERM)", code)
	}
	if took > 8*time.Second {
		t.Errorf("tend took %v to stop after the SIGTERM", took)
	}
}

// tend never blocks on its own logs: with -vv and a stderr pipe that is
// full and never read, it still runs jobs, reaps them, answers the API and
// stops on SIGTERM on time.
func TestHardeningFullStderr(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	r, sock := hServe(t, opts{argv0: hSetup("stderr=fullpipe")}, dir, []string{"-vv", "--grace", "2s"})
	c := hClient(t, sock)
	for i := range 200 {
		j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", fmt.Sprintf("exit %d", i%256)}}, nil)
		if err != nil {
			t.Fatalf("job %d with stderr full: %v", i, err)
		}
		if j = hWaitJob(t, c, j.ID); j.ExitCode == nil || *j.ExitCode != i%256 {
			t.Fatalf("job %d: %+v", i, j)
		}
	}
	t0 := time.Now()
	r.signal(unix.SIGTERM)
	code := r.wait()
	t.Logf("with stderr full: 200 jobs exact, exit %d %v after SIGTERM", code, r.ended.Sub(t0))
	if code != 143 || r.ended.Sub(t0) > 6*time.Second {
		t.Errorf("with stderr full, SIGTERM: exit %d after %v, want 143 within 6s", code, r.ended.Sub(t0))
	}
}

// tend's stdout closed (>&-) with log_prefix services writing to it: tend
// keeps supervising and serving, and stops on time.
func TestHardeningClosedStdout(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\n[shutdown]\ngrace = \"3s\"\n", svQuote(filepath.Join(dir, "s"))) +
		svShell("chatty", dir, "i=0; while :; do echo line $i; i=$((i+1)); [ $i = 2000 ] && : > $D/done; done", "log_prefix = true")
	r, sock := hConfig(t, opts{argv0: hSetup("stdout=closed")}, dir, body)
	c := hClient(t, sock)
	svPoll(t, r, hWait, "the chatty service wrote 2000 lines", func() bool { return svExists(filepath.Join(dir, "done")) })
	hAlive(t, r, c)
	code, took := svTermAndExit(t, r)
	t.Logf("with stdout closed: exit %d %v after SIGTERM", code, took)
	if took > 8*time.Second {
		t.Errorf("with stdout closed, tend took %v to stop", took)
	}
}

// The socket path: a stale socket is replaced; a live one is refused with a
// clear error before anything starts; so is a missing directory.
func TestHardeningSocketPath(t *testing.T) {
	t.Parallel()
	t.Run("stale", func(t *testing.T) {
		t.Parallel()
		dir := hDir(t)
		sock := filepath.Join(dir, "s")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // the file stays, nobody listens: stale
		r, sock := hServe(t, opts{}, dir, nil)
		hAlive(t, r, hClient(t, sock))
	})
	refused := func(t *testing.T, sock, want string) {
		marker := filepath.Join(hDir(t), "started")
		r := startTend(t, opts{pid1: true}, "--socket", sock, "--", "sh", "-c", "touch "+marker)
		code := r.wait()
		e := r.stderrAll()
		if code == 0 || !strings.Contains(e, want) {
			t.Errorf("socket %s: exit %d, stderr %q; want non-zero and %q", sock, code, e, want)
		}
		if svExists(marker) {
			t.Errorf("socket %s refused, but the main command ran", sock)
		}
	}
	t.Run("live", func(t *testing.T) {
		t.Parallel()
		sock := filepath.Join(hDir(t), "s")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		refused(t, sock, "another server is listening on "+sock)
	})
	t.Run("no directory", func(t *testing.T) {
		t.Parallel()
		sock := filepath.Join(hDir(t), "missing", "s")
		refused(t, sock, "socket directory "+filepath.Dir(sock))
	})
}

// A process in D state at shutdown (frozen by the v1 freezer: SIGKILL does
// not end it until thawed): tend still exits by its deadline, the grace
// plus its final 3s wait. tend's exit is seen as its stderr closing: as PID
// 1 its exit completes only once the namespace is empty, after the thaw.
func TestHardeningDStateAtShutdown(t *testing.T) {
	t.Parallel()
	fz := hCgroup(t, "freezer")
	dir := hDir(t)
	body := "[control]\nsocket = \"\"\n[shutdown]\ngrace = \"2s\"\n" +
		svShell("stuck", dir, "echo $$ > $D/pid; exec sleep 1000 >/dev/null 2>&1 </dev/null")
	r := svStart(t, opts{pid1: true}, dir, body, "--cleanup-grace", "1s")
	lines := svWaitLines(t, r, filepath.Join(dir, "pid"), 1)
	pid, _ := strconv.Atoi(lines[0])
	host := svHostPid(t, r, pid)
	hWrite(t, filepath.Join(fz, "cgroup.procs"), strconv.Itoa(host))
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(fz, "freezer.state"), []byte("THAWED"), 0) })
	hWrite(t, filepath.Join(fz, "freezer.state"), "FROZEN")
	svPoll(t, r, hWait, "the service frozen (D state)", func() bool {
		st, _, err := procStat(host)
		return err == nil && st == 'D'
	})
	t0 := time.Now()
	r.signal(unix.SIGTERM)
	select {
	case <-r.errDone:
	case <-time.After(hWait):
		t.Fatalf("tend still running %v after SIGTERM with a D-state service", hWait)
	}
	took := time.Since(t0)
	st, _, _ := procStat(host)
	t.Logf("D state at shutdown: tend done %v after SIGTERM (grace 2s); the frozen process is in state %c", took, st)
	if took > 2*time.Second+3*time.Second+2*time.Second {
		t.Errorf("tend took %v, want grace 2s + 3s + slack", took)
	}
	hWrite(t, filepath.Join(fz, "freezer.state"), "THAWED")
	r.wait()
}

// hLogCode counts the "service exited" lines of svc with code.
func hLogCode(stderr, svc string, code int) int {
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, `msg="service exited"`) && strings.Contains(l, " service="+svc+" ") &&
			strings.Contains(l, fmt.Sprintf(" code=%d ", code)) {
			n++
		}
	}
	return n
}
