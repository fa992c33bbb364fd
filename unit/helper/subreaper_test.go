//go:build linux

package helper_test

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/unit/helper"
)

// direct runs argv as a child of the test and returns its raw wait status:
// what the helper must report for the same command.
func direct(t *testing.T, dir string, argv ...string) syscall.WaitStatus {
	t.Helper()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Dir: dir, Files: []uintptr{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	return ws
}

// coreDumps reports whether a process with RLIMIT_CORE unlimited and a
// writable cwd gets its core written: core_pattern names a file (not a
// pipe to a handler, which may refuse). The test never changes it.
func coreDumps() bool {
	b, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	p := strings.TrimSpace(string(b))
	return err == nil && p != "" && !strings.HasPrefix(p, "|")
}

func TestExitStatusExact(t *testing.T) {
	needRoot(t)
	type tc struct {
		name   string
		script string
	}
	var cases []tc
	for _, code := range []int{0, 1, 2, 7, 42, 126, 127, 128, 129, 200, 254, 255} {
		cases = append(cases, tc{"code" + strconv.Itoa(code), "exit " + strconv.Itoa(code)})
	}
	for _, sig := range []string{"TERM", "KILL", "USR1", "HUP", "INT"} {
		cases = append(cases, tc{"sig" + sig, "kill -" + sig + " $$"})
	}
	// SEGV and QUIT dump core: with RLIMIT_CORE unlimited in the shell the
	// core-dumped flag is set when the kernel writes one.
	for _, sig := range []string{"SEGV", "QUIT", "ABRT"} {
		cases = append(cases, tc{"core" + sig, "ulimit -c unlimited; kill -" + sig + " $$"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			want := direct(t, dir, "/bin/sh", "-c", c.script)
			s := sh(t, c.script)
			argv, env, err := s.Args()
			if err != nil {
				t.Fatal(err)
			}
			r := start(t, argv, env, &syscall.SysProcAttr{Setsid: true}, nil)
			r.expect(helper.Started)
			got := r.expect(helper.Exited).Status
			if got != want {
				t.Errorf("exit status %#x (%s); want %#x (%s), as run directly", uint32(got), desc(got), uint32(want), desc(want))
			}
			if left := r.expect(helper.Left).N; left != 0 {
				t.Errorf("left %d; want 0", left)
			}
			r.eof()
			if ws := r.wait(); ws.ExitStatus() != 0 || ws.Signaled() {
				t.Errorf("helper itself ended %s; want exit 0 (never the command's signal re-raised)", desc(ws))
			}
			if strings.HasPrefix(c.name, "core") {
				if coreDumps() {
					t.Logf("core dumps enabled (core_pattern is a file): asserting WCOREDUMP")
					if !got.CoreDump() {
						t.Errorf("status %s: core-dumped flag missing", desc(got))
					}
				} else {
					t.Logf("core dumps disabled here (core_pattern is a pipe or empty): asserting signal, no core")
					if got.CoreDump() || !got.Signaled() {
						t.Errorf("status %s; want killed by signal without core", desc(got))
					}
				}
			}
		})
	}
}

func desc(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled() && ws.CoreDump():
		return "signal " + ws.Signal().String() + " (core dumped)"
	case ws.Signaled():
		return "signal " + ws.Signal().String()
	}
	return "status " + strconv.Itoa(int(ws))
}

func TestExecFailed(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	noExec := filepath.Join(dir, "noexec")
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, []byte("\x7fELF\x00not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		path  string
		errno syscall.Errno
		code  int
	}{
		{"ENOENT", filepath.Join(dir, "missing"), syscall.ENOENT, 127},
		{"ENOTDIR", noExec + "/x", syscall.ENOTDIR, 127},
		{"EACCES", noExec, syscall.EACCES, 126},
		{"ENOEXEC", garbage, syscall.ENOEXEC, 126},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := startSubreaper(t, helper.Subreaper{Path: c.path, Argv: []string{"x"}})
			m := r.expect(helper.Failed)
			if m.Errno != c.errno || m.Path != c.path {
				t.Errorf("failed %v %q; want %v %q", m.Errno, m.Path, c.errno, c.path)
			}
			r.eof()
			if ws := r.wait(); ws.ExitStatus() != c.code {
				t.Errorf("helper %s; want exit %d", desc(ws), c.code)
			}
		})
	}
}

func TestCount(t *testing.T) {
	needRoot(t)
	s := sh(t, `sleep 1000 & sleep 1000 & (sleep 1000 &) ; echo ready; wait`)
	r := startSubreaper(t, s)
	r.expect(helper.Started)
	if got := r.line(); got != "ready" {
		t.Fatalf("stdout %q", got)
	}
	if err := r.conn.Count(); err != nil {
		t.Fatal(err)
	}
	// sh, two sleeps it waits for, and one reparented to the helper.
	if n := r.expect(helper.Counted).N; n != 4 {
		t.Errorf("count %d; want 4", n)
	}
	if err := r.conn.Kill(); err != nil {
		t.Fatal(err)
	}
	if ws := r.expect(helper.Exited).Status; ws.Signal() != syscall.SIGKILL {
		t.Errorf("main %s; want SIGKILL", desc(ws))
	}
	if n := r.expect(helper.Left).N; n != 3 {
		t.Errorf("left %d; want 3", n)
	}
	r.eof()
}

// escapers starts, under the main shell (which ignores TERM), one escaper
// whose parent stays alive (a setsid'd shell: only the pidfd walk reaches
// it) and one double-forked and setsid'd (reparented to the helper), both
// ignoring TERM; esc1 notes each USR1 it gets.
const escapers = `trap '' TERM; trap : USR1
setsid sh -c 'trap "echo usr1 >> $D/esc1.usr1" USR1; echo $$ > $D/esc1; while :; do sleep 0.02; done' &
sh -c 'setsid sh -c "echo \$\$ > $D/esc2; exec sleep 1000" & exit'
while [ ! -s $D/esc1 ] || [ ! -s $D/esc2 ]; do sleep 0.01; done
echo ready
while :; do sleep 1; done`

func TestTreeAndStopReachEscapers(t *testing.T) {
	needRoot(t)
	s := sh(t, escapers)
	d := dirOf(s)
	r := startSubreaper(t, s)
	main := procOf(t, r.expect(helper.Started).PID)
	if got := r.line(); got != "ready" {
		t.Fatalf("stdout %q", got)
	}
	esc1, esc2 := procOf(t, readPID(t, d+"/esc1")), procOf(t, readPID(t, d+"/esc2"))
	if err := r.conn.Tree(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(d + "/esc1.usr1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree USR1 did not reach the setsid'd escaper %d", esc1.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	const timeout = 300 * time.Millisecond
	t0 := time.Now()
	if err := r.conn.Stop(syscall.SIGTERM, timeout); err != nil {
		t.Fatal(err)
	}
	ws := r.expect(helper.Exited).Status
	if el := time.Since(t0); ws.Signal() != syscall.SIGKILL || el < timeout {
		t.Errorf("main %s after %v; want SIGKILL after the %v timeout (it ignores TERM)", desc(ws), el, timeout)
	}
	r.expect(helper.Left)
	r.eof()
	r.wait()
	for name, p := range map[string]proc{"main": main, "esc1": esc1, "esc2": esc2} {
		if p.alive() {
			t.Errorf("%s (pid %d) survived the stop", name, p.pid)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

func TestStopTiming(t *testing.T) {
	needRoot(t)
	const timeout = 400 * time.Millisecond
	for _, c := range []struct {
		name    string
		script  string
		sig     syscall.Signal
		minWait time.Duration
		maxWait time.Duration
	}{
		{"ignores TERM: SIGKILL at the timeout", "trap '' TERM; echo ready; while :; do sleep 1; done", syscall.SIGKILL, timeout, timeout + time.Second},
		{"obeys TERM: no wait", "echo ready; exec sleep 1000", syscall.SIGTERM, 0, timeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := startSubreaper(t, sh(t, c.script))
			r.expect(helper.Started)
			r.line()
			t0 := time.Now()
			if err := r.conn.Stop(syscall.SIGTERM, timeout); err != nil {
				t.Fatal(err)
			}
			ws := r.expect(helper.Exited).Status
			el := time.Since(t0)
			if ws.Signal() != c.sig || el < c.minWait || el > c.maxWait {
				t.Errorf("main %s after %v; want %v within [%v, %v]", desc(ws), el, c.sig, c.minWait, c.maxWait)
			}
			r.expect(helper.Left)
			r.eof()
		})
	}
}

func TestEOFKillsUnit(t *testing.T) {
	needRoot(t)
	s := sh(t, escapers)
	d := dirOf(s)
	r := startSubreaper(t, s)
	main := procOf(t, r.expect(helper.Started).PID)
	r.line()
	esc1, esc2 := procOf(t, readPID(t, d+"/esc1")), procOf(t, readPID(t, d+"/esc2"))
	r.conn.Close() // as if tend died
	if ws := r.wait(); ws.ExitStatus() != 0 {
		t.Errorf("helper %s; want exit 0", desc(ws))
	}
	for name, p := range map[string]proc{"main": main, "esc1": esc1, "esc2": esc2} {
		if p.alive() {
			t.Errorf("%s (pid %d) survived tend's EOF", name, p.pid)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

func TestKillModes(t *testing.T) {
	needRoot(t)
	// The main exits at once, leaving a setsid'd sleep behind.
	const script = `setsid sleep 1000 & echo $! > $D/left; exit 3`
	for _, c := range []struct {
		mode      helper.KillMode
		left      int
		survivors bool
	}{
		{helper.KillUnit, 1, false},
		{helper.KillMainOnly, 0, true},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			s := sh(t, script)
			s.KillMode = c.mode
			r := startSubreaper(t, s)
			r.expect(helper.Started)
			if ws := r.expect(helper.Exited).Status; ws.ExitStatus() != 3 {
				t.Errorf("main %s; want exit 3", desc(ws))
			}
			// The pid file was written before the main exited.
			left := readPID(t, dirOf(s)+"/left")
			start, _ := startTime(left)
			if n := r.expect(helper.Left).N; n != c.left {
				t.Errorf("left %d; want %d", n, c.left)
			}
			r.eof()
			r.wait()
			p := proc{left, start}
			if p.alive() != c.survivors {
				t.Errorf("leftover %d alive = %v; want %v", left, p.alive(), c.survivors)
			}
			if p.alive() {
				killByPidfd(t, left) // it reparented away from us: by pidfd only
			}
		})
	}
}

func killByPidfd(t *testing.T, pid int) {
	fd, _, errno := syscall.Syscall(434, uintptr(pid), 0, 0)
	if errno != 0 {
		t.Errorf("pidfd_open %d: %v", pid, errno)
		return
	}
	syscall.Syscall6(424, fd, uintptr(syscall.SIGKILL), 0, 0, 0, 0)
	syscall.Close(int(fd))
}

func TestSignalsForwarded(t *testing.T) {
	needRoot(t)
	const script = `for s in HUP USR1 USR2 TERM INT WINCH CONT TSTP; do trap "echo $s" $s; done
echo ready; while :; do sleep 0.02; done`
	r := startSubreaper(t, sh(t, script))
	r.expect(helper.Started)
	r.line()
	for _, c := range []struct {
		name string
		sig  syscall.Signal
		send func(syscall.Signal) error
	}{
		{"kill helper", syscall.SIGUSR1, func(s syscall.Signal) error { return syscall.Kill(r.pid, s) }},
		{"kill helper", syscall.SIGHUP, func(s syscall.Signal) error { return syscall.Kill(r.pid, s) }},
		{"kill helper", syscall.SIGTERM, func(s syscall.Signal) error { return syscall.Kill(r.pid, s) }},
		{"kill helper", syscall.SIGWINCH, func(s syscall.Signal) error { return syscall.Kill(r.pid, s) }},
		{"signal command", syscall.SIGUSR2, r.conn.Signal},
		{"signal command", syscall.SIGINT, r.conn.Signal},
	} {
		if err := c.send(c.sig); err != nil {
			t.Fatal(err)
		}
		if got := r.line(); got != sigName(c.sig) {
			t.Errorf("%s %v: main printed %q; want %q", c.name, c.sig, got, sigName(c.sig))
		}
	}
}

func sigName(sig syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGUSR1: "USR1", syscall.SIGUSR2: "USR2", syscall.SIGHUP: "HUP",
		syscall.SIGTERM: "TERM", syscall.SIGINT: "INT", syscall.SIGWINCH: "WINCH"}[sig]
}

// TestCommandSetup checks what the command inherits: the limit, not fd 3,
// not the marker.
func TestCommandSetup(t *testing.T) {
	needRoot(t)
	s := sh(t, `grep "Max processes" /proc/self/limits; [ -e /proc/$$/fd/3 ] && echo fd3=open || echo fd3=closed; echo "env=$TEND_UNIT_HELPER"`)
	s.NProc = 77
	r := startSubreaper(t, s)
	r.expect(helper.Started)
	if f := strings.Fields(r.line()); len(f) < 4 || f[2] != "77" || f[3] != "77" {
		t.Errorf("limits %q; want soft and hard 77", f)
	}
	if l := r.line(); l != "fd3=closed" {
		t.Errorf("%s: the control socket reached the command", l)
	}
	if l := r.line(); l != "env=" {
		t.Errorf("%s: the marker reached the command", l)
	}
	r.expect(helper.Exited)
}

// TestStopSparesWhatATrapStarts: the stop signal reaches the main's process
// group at once, as with track group, so a process that the main's TERM
// trap starts afterwards is not hit by it. The walk used to signal the
// main, then read its children: a trap quick enough to fork by then (here a
// busy loop of the main's own, so the trap runs at once, and its helper
// program is started straight away) had that program killed, and the trap's
// work was lost (seen as a service that never wrote its stop stamp).
func TestStopSparesWhatATrapStarts(t *testing.T) {
	needRoot(t)
	for i := 0; i < 30; i++ {
		d := t.TempDir()
		f := filepath.Join(d, "stamp")
		// No foreground child: the shell runs the trap as soon as TERM comes.
		script := `trap '/bin/sh -c "sleep 0.05; echo done > ` + f + `"; exit 0' TERM; echo ready; while :; do :; done`
		r := startSubreaper(t, sh(t, script))
		r.expect(helper.Started)
		r.line()
		if err := r.conn.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		ws := r.expect(helper.Exited).Status
		r.expect(helper.Left)
		r.eof()
		b, _ := os.ReadFile(f)
		if ws.ExitStatus() != 0 || ws.Signaled() || strings.TrimSpace(string(b)) != "done" {
			t.Fatalf("run %d: main %s, the trap's program wrote %q; want exit 0 and \"done\" (it was signalled too)", i, desc(ws), b)
		}
	}
}

// TestHelperGivesUpTheCommandsFDs: an fd passed for the command (here a
// pipe's write end at fd 4, as a service's ready = "fd:4" is) is the
// command's alone once it runs: when the command closes it, the reader
// sees EOF although the helper lives on. The helper used to keep its copy
// until it exited, so "closed without a newline" was never seen.
func TestHelperGivesUpTheCommandsFDs(t *testing.T) {
	needRoot(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	s := sh(t, `printf x >&4; exec 4>&-; echo closed; exec sleep 1000`)
	argv, env, err := s.Args()
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, argv, env, &syscall.SysProcAttr{Setsid: true}, []*os.File{pw})
	pw.Close()
	r.expect(helper.Started)
	r.line() // "closed"
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(pr); got <- string(b) }()
	select {
	case b := <-got:
		if b != "x" {
			t.Errorf("read %q from the command's fd 4; want x", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EOF on the command's fd 4 in 5 s after the command closed it: the helper holds a copy")
	}
}
