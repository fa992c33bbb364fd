//go:build linux

package helper_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/unit/helper"
)

// v1Dirs makes a cgroup v1 directory of the test's own in the memory and
// the pids hierarchy and returns their paths (relative to each mount, as
// /proc/PID/cgroup names them) and O_PATH fds, as tend opens them. They are
// removed after the test.
func v1Dirs(t *testing.T) (rel string, fds []*os.File) {
	t.Helper()
	rel = fmt.Sprintf("/tend-helper-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	for _, ctrl := range []string{"memory", "pids"} {
		dir := filepath.Join("/sys/fs/cgroup", ctrl, rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("no writable cgroup v1 %s hierarchy: %v", ctrl, err)
		}
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), dir)
		fds = append(fds, f)
		t.Cleanup(func() {
			f.Close()
			deadline := time.Now().Add(5 * time.Second)
			for unix.Rmdir(dir) == unix.EBUSY && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("could not remove %s", dir)
			}
		})
	}
	return rel, fds
}

// procsOf reads the pids in a v1 directory's cgroup.procs.
func procsOf(t *testing.T, ctrl, rel string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, rel, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	return pids
}

const v1Script = `grep -E '^[0-9]+:(memory|pids):' /proc/self/cgroup | cut -d: -f2,3 | sort; for fd in 4 5 6; do [ -e /proc/$$/fd/$fd ] && echo fd$fd=open; done; echo done`

// TestExecJoinsV1: the trampoline joins every cgroup v1 directory it is
// given before exec, so the command runs in each, and none of their fds
// reaches it.
func TestExecJoinsV1(t *testing.T) {
	needRoot(t)
	rel, fds := v1Dirs(t)
	r := startExec(t, helper.Exec{Path: "/bin/sh", Argv: []string{"sh", "-c", v1Script}, V1: 2,
		Env: []string{"PATH=/usr/bin:/bin"}}, fds...)
	r.eof()
	want := []string{"memory:" + rel, "pids:" + rel, "done"}
	for _, w := range want {
		if got := r.line(); got != w {
			t.Errorf("command: %q, want %q (it runs outside the unit's v1 cgroups, or holds their fds)", got, w)
		}
	}
	if ws := r.wait(); ws.ExitStatus() != 0 {
		t.Errorf("command %s; want exit 0", desc(ws))
	}
}

// TestExecV1NotACgroup: a directory that is no cgroup fails the start
// before exec, naming cgroup.procs.
func TestExecV1NotACgroup(t *testing.T) {
	needRoot(t)
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := startExec(t, helper.Exec{Path: "/bin/true", Argv: []string{"true"}, V1: 1}, d)
	if m := r.expect(helper.Failed); m.Errno != syscall.ENOENT || m.Path != "cgroup.procs" {
		t.Errorf("failed %v %q; want ENOENT cgroup.procs", m.Errno, m.Path)
	}
	r.eof()
	r.wait()
}

// TestSubreaperJoinsV1: the subreaper joins the unit's v1 directories
// before it forks the command: the command is in them from its start, and
// so is the helper.
func TestSubreaperJoinsV1(t *testing.T) {
	needRoot(t)
	rel, fds := v1Dirs(t)
	s := sh(t, v1Script+"; sleep 30")
	s.Cgroups = 2
	argv, env, err := s.Args()
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, argv, env, &syscall.SysProcAttr{Setsid: true}, fds)
	m := r.expect(helper.Started)
	for _, w := range []string{"memory:" + rel, "pids:" + rel, "done"} {
		if got := r.line(); got != w {
			t.Errorf("command: %q, want %q", got, w)
		}
	}
	for _, ctrl := range []string{"memory", "pids"} {
		pids := procsOf(t, ctrl, rel)
		if !slices.Contains(pids, r.pid) || !slices.Contains(pids, m.PID) {
			t.Errorf("%s %s holds %v; want the helper %d and the command %d", ctrl, rel, pids, r.pid, m.PID)
		}
	}
	r.conn.Close() // EOF: the helper kills its unit and exits
	if ws := r.wait(); ws.ExitStatus() != 0 {
		t.Errorf("helper %s; want exit 0", desc(ws))
	}
}
