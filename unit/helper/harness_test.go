//go:build linux

package helper_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/unit/helper"
)

// The helper under test is this test binary: boot's init is linked in, so
// starting helper.Exe with the helper's argv and marker runs the helper, as
// tend's binary will. With TEND_HELPER_STANDALONE=1 (scripts/test runs the
// package both ways) it is the standalone cmd/tend-unit-helper instead,
// built once here.
var exe = helper.Exe

// TestMain dispatches to the re-executed test helpers (not unit helpers:
// those are taken over by boot's init before this runs).
func TestMain(m *testing.M) {
	if name := os.Getenv("HELPER_TEST"); name != "" {
		os.Exit(testHelpers[name](os.Args[1:]))
	}
	if os.Getenv("TEND_HELPER_STANDALONE") == "1" {
		dir, err := os.MkdirTemp("", "tend-helper-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		exe, err = buildStandalone(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// buildStandalone builds cmd/tend-unit-helper into dir.
func buildStandalone(dir string) (string, error) {
	bin := filepath.Join(dir, helper.BinaryName)
	build := exec.Command("go", "build", "-o", bin, "./cmd/tend-unit-helper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/tend-unit-helper: %v\n%s", err, out)
	}
	return bin, nil
}

var testHelpers = map[string]func([]string) int{"pidns": helperPIDNS, "nopidfd": helperNoPidfd}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (credentials, namespaces); CI runs as root")
	}
}

// run is one helper started for a test: its pid, tend's side of the
// protocol and the main process's stdout.
type run struct {
	t      *testing.T
	pid    int
	conn   *helper.Conn
	stdout *bufio.Reader
	exited bool
}

// startSubreaper starts a subreaper helper for s, in its own session as a
// job is. The test process waits for the helper's pid only (wait4(pid)): it
// is not tend, and has no other children then.
func startSubreaper(t *testing.T, s helper.Subreaper) *run {
	t.Helper()
	argv, env, err := s.Args()
	if err != nil {
		t.Fatalf("Args: %v", err)
	}
	return start(t, argv, env, &syscall.SysProcAttr{Setsid: true}, nil)
}

// start starts exe with argv and env; fds 0-2 are /dev/null, a pipe
// (read by r.stdout) and stderr; fd 3 the socket; extra fds follow.
func start(t *testing.T, argv, env []string, sys *syscall.SysProcAttr, extra []*os.File) *run {
	t.Helper()
	return startVia(t, exe, argv, env, sys, extra)
}

// startVia is start running path, a program that runs the helper in turn.
func startVia(t *testing.T, path string, argv, env []string, sys *syscall.SysProcAttr, extra []*os.File) *run {
	t.Helper()
	tend, peer, err := helper.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	files := []uintptr{null.Fd(), pw.Fd(), os.Stderr.Fd(), peer.Fd()}
	for _, f := range extra {
		files = append(files, f.Fd())
	}
	// A fresh cwd: a command dumping core writes it there.
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Dir: t.TempDir(), Env: env, Files: files, Sys: sys})
	peer.Close()
	pw.Close()
	null.Close()
	if err != nil {
		tend.Close()
		pr.Close()
		t.Fatalf("start helper: %v", err)
	}
	r := &run{t: t, pid: pid, conn: helper.NewConn(tend), stdout: bufio.NewReader(pr)}
	t.Cleanup(func() {
		r.conn.Close() // EOF: the helper kills the unit
		if !r.exited {
			r.wait()
		}
		pr.Close()
	})
	return r
}

// next returns the next message, failing the test after d.
func (r *run) next(d time.Duration) helper.Message {
	r.t.Helper()
	select {
	case m, ok := <-r.conn.Messages():
		if !ok {
			r.t.Fatalf("helper closed the socket; want a message")
		}
		return m
	case <-time.After(d):
		r.t.Fatalf("no message from the helper within %v", d)
	}
	panic("unreachable")
}

// expect returns the next message and fails unless it is of kind k.
func (r *run) expect(k helper.Kind) helper.Message {
	r.t.Helper()
	m := r.next(10 * time.Second)
	if m.Kind != k {
		r.t.Fatalf("helper message %+v; want kind %v", m, k)
	}
	return m
}

// eof waits for the end of the messages.
func (r *run) eof() {
	r.t.Helper()
	select {
	case m, ok := <-r.conn.Messages():
		if ok {
			r.t.Fatalf("helper message %+v; want EOF", m)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no EOF from the helper")
	}
}

// wait reaps the helper and returns its wait status.
func (r *run) wait() syscall.WaitStatus {
	r.t.Helper()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(r.pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				r.t.Fatalf("wait4 helper %d: %v", r.pid, err)
			}
			r.exited = true
			return ws
		}
	}
}

// line reads one line of the main process's stdout.
func (r *run) line() string {
	r.t.Helper()
	s, err := r.stdout.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read the command's stdout: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// sh returns a Subreaper running script with /bin/sh, in dir D (exported
// to the script as $D).
func sh(t *testing.T, script string) helper.Subreaper {
	return helper.Subreaper{
		Path: "/bin/sh", Argv: []string{"sh", "-c", script},
		Env:         []string{"PATH=/usr/bin:/bin", "D=" + t.TempDir()},
		StopTimeout: 5 * time.Second,
	}
}

// dirOf returns $D of s.
func dirOf(s helper.Subreaper) string {
	for _, kv := range s.Env {
		if d, ok := strings.CutPrefix(kv, "D="); ok {
			return d
		}
	}
	return ""
}

// readPID reads a pid the script wrote to a file.
func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %q", filepath.Base(path), b)
	}
	return pid
}

// proc is a process identity that survives pid reuse: pid and start time.
type proc struct {
	pid   int
	start string
}

func procOf(t *testing.T, pid int) proc {
	t.Helper()
	start, ok := startTime(pid)
	if !ok {
		t.Fatalf("process %d is not running", pid)
	}
	return proc{pid, start}
}

// alive reports whether p (the same process, not a recycled pid) exists.
func (p proc) alive() bool {
	start, ok := startTime(p.pid)
	return ok && start == p.start
}

// startTime is field 22 of /proc/PID/stat, counted after the command name.
func startTime(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" {
		return "", false // a zombie is dead already
	}
	return f[19], true
}
