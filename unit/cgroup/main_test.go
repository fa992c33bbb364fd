//go:build linux

package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests run in a private mount namespace with their own cgroup2 mount
// (DESIGN.md §8): TestMain re-executes the test binary with CLONE_NEWNS, and
// that copy mounts cgroup2 and runs the tests under one top cgroup,
// tend-test-<pid>, removed at the end. The hierarchy is the host's, shared:
// after the copy exits, the outer process runs the "sweep" helper, which
// removes whatever the copy left (and fails the run if there was any).

const (
	envHelper = "TEND_CGROUP_TEST_HELPER" // a helper's name: we are a re-executed helper
	envInNS   = "TEND_CGROUP_TEST_IN_NS"  // set in the copy that runs the tests
	v1Memory  = "/sys/fs/cgroup/memory"
)

// Set by TestMain in the copy that runs the tests.
var (
	testMount string // our cgroup2 mount point
	testTop   string // tend-test-<pid>, relative to testMount
)

var helpers = map[string]func(args []string) int{
	"sweep":   helperSweep,
	"alloc":   helperAlloc,
	"seccomp": helperSeccomp,
	"find":    helperFind,
	"findv1":  helperFindV1,
}

func TestMain(m *testing.M) {
	if name := os.Getenv(envHelper); name != "" {
		os.Exit(helpers[name](os.Args[1:]))
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "unit/cgroup: not root: the tests that need a cgroup2 mount skip")
		os.Exit(m.Run())
	}
	if os.Getenv(envInNS) == "" {
		os.Exit(outer())
	}
	os.Exit(inNS(m))
}

// outer runs the tests in a copy of this binary in a new mount namespace,
// then sweeps what the copy left.
func outer() int {
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInNS+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		fmt.Fprintf(os.Stderr, "unit/cgroup: run the tests in a mount namespace: %v\n", err)
		code = 1
	}
	sweep := helperCmd("sweep", "tend-test-"+strconv.Itoa(cmd.Process.Pid))
	sweep.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS} // it mounts
	sweep.Stdout, sweep.Stderr = os.Stdout, os.Stderr
	if err := sweep.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "unit/cgroup: sweep: %v\n", err)
		code = max(code, 1)
	}
	return code
}

// inNS makes / private (so our mounts do not leak out), mounts cgroup2,
// runs the tests under testTop and removes testTop.
func inNS(m *testing.M) int {
	mnt, err := mountCgroup2()
	if err != nil {
		fmt.Fprintln(os.Stderr, "unit/cgroup:", err)
		return 1
	}
	testMount, testTop = mnt, "tend-test-"+strconv.Itoa(os.Getpid())
	if err := os.Mkdir(filepath.Join(mnt, testTop), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "unit/cgroup:", err)
		return 1
	}
	code := m.Run()
	if err := removeTree(filepath.Join(mnt, testTop)); err != nil {
		fmt.Fprintln(os.Stderr, "unit/cgroup: clean up:", err)
		code = max(code, 1)
	}
	_ = unix.Unmount(mnt, unix.MNT_DETACH)
	_ = os.Remove(mnt)
	return code
}

// mountCgroup2 makes / private and mounts cgroup2 at a new temp dir. It
// refuses to run in the mount namespace it was started in (the outer test
// process's): the caller must have been started with CLONE_NEWNS.
func mountCgroup2() (string, error) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return "", err
	}
	parent, err := os.Readlink("/proc/" + strconv.Itoa(os.Getppid()) + "/ns/mnt")
	if err != nil {
		return "", err
	}
	if self == parent {
		return "", fmt.Errorf("refusing to mount: in the parent's mount namespace %s (start with CLONE_NEWNS)", self)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make / private: %w", err)
	}
	mnt, err := os.MkdirTemp("", "cgroup2-")
	if err != nil {
		return "", err
	}
	if err := unix.Mount("none", mnt, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("mount cgroup2 at %s: %w", mnt, err)
	}
	return mnt, nil
}

// removeTree kills every process under dir and removes dir and the cgroups
// below it, waiting up to 5s for the killed to exit.
func removeTree(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_ = writeFile(filepath.Join(dir, "cgroup.kill"), "1")
	g := &Group{dir: dir}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := g.walk(func(d string) error { return unix.Rmdir(d) })
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// helperSweep removes the top cgroup args[0] left by the tests and the v1
// memory cgroups named after it, in a mount namespace of its own, and fails
// when it found any. It also removes what earlier runs left when they were
// killed before they could sweep (tend-test-<pid> whose pid is gone).
func helperSweep(args []string) int {
	top := args[0]
	var left []string
	mnt, err := mountCgroup2()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
		return 1
	}
	defer os.Remove(mnt)
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	v2, _ := filepath.Glob(filepath.Join(mnt, "tend-test-*"))
	v1, _ := filepath.Glob(filepath.Join(v1Memory, "tend-test-*"))
	for _, dir := range append(v2, v1...) {
		name := filepath.Base(dir)
		if name != top && !strings.HasPrefix(name, top+"-") {
			pid, _, _ := strings.Cut(strings.TrimPrefix(name, "tend-test-"), "-")
			if exists("/proc/" + pid) {
				continue // a run going on now
			}
			fmt.Fprintf(os.Stderr, "sweep: removing %s, left by an earlier run\n", dir)
		} else {
			left = append(left, dir)
		}
		if err := removeTree(dir); err != nil {
			fmt.Fprintln(os.Stderr, "sweep:", err)
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "sweep: the tests left %s behind\n", strings.Join(left, ", "))
		return 1
	}
	return 0
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// helperCmd re-executes the test binary as helper name.
func helperCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envHelper+"="+name, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	return cmd
}

// needNS skips a test outside the tests' mount namespace, which only root
// gets.
func needNS(t *testing.T) {
	t.Helper()
	if testMount == "" {
		t.Skip("needs root (a private mount namespace with cgroup2)")
	}
}

// testHierarchy opens a fresh base below testTop for this test, removed
// (processes killed) when the test ends, failed or not.
func testHierarchy(t *testing.T) *Hierarchy {
	t.Helper()
	needNS(t)
	rel := "/" + testTop + "/" + strings.NewReplacer("/", "_").Replace(t.Name())
	dir := filepath.Join(testMount, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeTree(dir); err != nil {
			t.Error(err)
		}
	})
	h, err := Open(testMount, rel)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", testMount, rel, err)
	}
	return h
}

// newGroup makes a unit, killed and removed when the test ends.
func newGroup(t *testing.T, h *Hierarchy, name string) *Group {
	t.Helper()
	g, err := h.New(name)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	t.Cleanup(func() {
		_ = g.Kill()
		if err := removeTree(g.dir); err != nil {
			t.Error(err)
		}
		if g.fd >= 0 {
			unix.Close(g.fd)
		}
	})
	return g
}

// startIn starts argv in g (clone3 CLONE_INTO_CGROUP; outside any unit
// when g is nil); the test waits for it, and a cleanup kills and reaps it if the test did not.
func startIn(t *testing.T, g *Group, stdout *os.File, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if stdout != nil {
		cmd.Stdout = stdout // an *os.File: no copying goroutine
	}
	if g != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", argv, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// waitEvent waits up to 5s for the next watcher event.
func waitEvent(t *testing.T, w *Watcher) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("Events closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watcher event within 5s")
	}
	panic("unreachable")
}

// readLine reads one line from a pipe (a helper's readiness or pid line).
func readLine(t *testing.T, r *os.File) string {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read line: %v (got %q)", err, line)
	}
	return strings.TrimSpace(line)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i > 0 && i+2 < len(data) && data[i+2] != 'Z'
}

// waitCmd waits up to 5s for cmd (a test never hangs on a child that
// should have died); past that it kills and reaps it and fails the test.
func waitCmd(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%q still running after 5s", cmd.Args)
		return nil
	}
}
