//go:build linux

package reaper

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The uids of the signal-as-caller tests: the caller, and the uid a setuid
// program of his becomes.
const (
	callerUID = 1000
	otherUID  = 1001
)

// becomeSource setresuid's fully to otherUID, says "ready", and sleeps.
const becomeSource = `#include <stdio.h>
#include <unistd.h>
int main(void) {
	if (setresuid(1001, 1001, 1001) != 0) { perror("setresuid"); return 1; }
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (;;) pause();
}
`

// setuidProgram builds becomeSource at test time, owned by otherUID with
// mode 4755, in a directory the caller may enter.
func setuidProgram(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: setuid programs and other uids")
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("needs a C compiler for the setuid test program")
	}
	dir, err := os.MkdirTemp("", "tend-setuid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	src, bin := filepath.Join(dir, "become.c"), filepath.Join(dir, "become")
	if err := os.WriteFile(src, []byte(becomeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-O", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	for _, step := range []error{os.Chmod(dir, 0o755), os.Chown(bin, otherUID, otherUID), os.Chmod(bin, os.ModeSetuid|0o755)} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("%s: %v, %v; want setuid", bin, fi.Mode(), err)
	}
	return bin
}

// caller starts sh as callerUID in its own group: it starts the setuid
// program in the background (same group) and then sleeps itself. It
// returns the handle and a pidfd of the setuid program once that is
// otherUID's.
func startCaller(t *testing.T, r *Reaper, script string) (*Child, int) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	c, err := r.Start(func(pidfd *int) (int, error) {
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", script}, &syscall.ProcAttr{
			Files: []uintptr{0, pw.Fd(), 2},
			Sys: &syscall.SysProcAttr{PidFD: pidfd, Setpgid: true,
				Credential: &syscall.Credential{Uid: callerUID, Gid: callerUID, Groups: []uint32{}}}})
	}, "caller")
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.SignalGroup(unix.SIGKILL) })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(pr).ReadString('\n')
		line <- s
	}()
	var s string
	select {
	case s = <-line:
	case <-time.After(10 * time.Second):
		t.Fatal("the setuid program did not say ready in 10s")
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(s), "ready "))
	if err != nil {
		t.Fatalf("setuid program said %q", s)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); unix.Close(fd) })
	if got := taskUIDs(t, pid, pid); got != "1001 1001 1001 1001" {
		t.Fatalf("setuid program's uids = %q, want all 1001", got)
	}
	return c, fd
}

// taskUIDs is the Uid: line (real, effective, saved, fs) of a thread.
func taskUIDs(t *testing.T, pid, tid int) string {
	t.Helper()
	return strings.Join(strings.Fields(statusField(t, pid, tid, "Uid")), " ")
}

func statusField(t *testing.T, pid, tid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s: in /proc/%d/task/%d/status", name, pid, tid)
	return ""
}

// alive reports whether the process behind a pidfd is still running, not
// a zombie, after a moment for a signal to act.
func alive(t *testing.T, fd int) bool {
	t.Helper()
	time.Sleep(100 * time.Millisecond)
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		return false
	}
	pid := pidOfFD(t, fd)
	return pid > 0 && statusField(t, pid, pid, "State")[0] != 'Z'
}

// pidOfFD reads a pidfd's Pid: from /proc/self/fdinfo (-1: exited).
func pidOfFD(t *testing.T, fd int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// waitExit waits for c's exit on exits.
func waitExit(t *testing.T, exits <-chan Exit, c *Child) Exit {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-exits:
			if e.Child == c {
				return e
			}
		case <-timeout:
			t.Fatal("the caller's process did not exit within 10s")
		}
	}
}

// checkRootAgain fails unless the signalling thread has root's uids and
// tend's effective capabilities again.
func checkRootAgain(t *testing.T, r *Reaper) {
	t.Helper()
	pid := os.Getpid()
	if got := taskUIDs(t, pid, r.sg.tid); got != "0 0 0 0" {
		t.Errorf("signalling thread's uids after = %q, want 0 0 0 0", got)
	}
	if got, want := statusField(t, pid, r.sg.tid, "CapEff"), statusField(t, pid, pid, "CapEff"); got != want {
		t.Errorf("signalling thread's CapEff after = %s, want tend's %s", got, want)
	}
}

// TestSignalGroupAsCaller: a group signal as the caller reaches the
// caller's own process and not the one his setuid program turned into
// another uid's, and the signalling thread is root again afterwards.
func TestSignalGroupAsCaller(t *testing.T) {
	bin := setuidProgram(t)
	both(t, func(t *testing.T, pidfds bool) {
		r := New(Options{PidFDs: pidfds, SignalAs: true})
		defer r.Close()
		exits := runReaper(t, r)
		c, other := startCaller(t, r, bin+" & exec sleep 1000")
		c.SignalAs(callerUID)
		if err := c.SignalGroup(unix.SIGTERM); err != nil {
			t.Fatalf("SignalGroup(SIGTERM) as %d: %v", callerUID, err)
		}
		if e := waitExit(t, exits, c); !e.Status.Signaled() || e.Status.Signal() != unix.SIGTERM {
			t.Errorf("caller's process: %v, want killed by SIGTERM", e)
		}
		if !alive(t, other) {
			t.Errorf("the uid %d process died of a signal sent as uid %d", otherUID, callerUID)
		}
		checkRootAgain(t, r)
	})
}

// TestSignalAsCallerRefused: a signal as the caller to a main process that
// is another uid's now is EPERM, through the pidfd or kill(2), and nothing
// reaches it; the thread is root again after.
func TestSignalAsCallerRefused(t *testing.T) {
	bin := setuidProgram(t)
	both(t, func(t *testing.T, pidfds bool) {
		r := New(Options{PidFDs: pidfds, SignalAs: true})
		defer r.Close()
		exits := runReaper(t, r)
		c, other := startCaller(t, r, "exec "+bin)
		c.SignalAs(callerUID)
		if err := c.Signal(unix.SIGKILL); !errors.Is(err, unix.EPERM) {
			t.Errorf("Signal as %d to a uid %d process: %v, want EPERM", callerUID, otherUID, err)
		}
		if err := c.SignalGroup(unix.SIGKILL); !errors.Is(err, unix.EPERM) {
			t.Errorf("SignalGroup as %d to a uid %d group: %v, want EPERM", callerUID, otherUID, err)
		}
		if n := c.SignalTree(unix.SIGKILL); n != 0 {
			t.Errorf("SignalTree as %d to a uid %d process: signalled %d, want 0", callerUID, otherUID, n)
		}
		if !alive(t, other) {
			t.Errorf("the uid %d process died of a signal sent as uid %d", otherUID, callerUID)
		}
		checkRootAgain(t, r)
		// As root (the handle's default) it does reach it; its exit is
		// taken here, not left for another test's reaper.
		c.SignalAs(0)
		if err := c.Signal(unix.SIGKILL); err != nil {
			t.Errorf("Signal(SIGKILL) as root: %v", err)
		}
		waitExit(t, exits, c)
	})
}

// TestSignalAsNoThread: without Options.SignalAs nothing is sent as a
// caller, and nothing as root in its place.
func TestSignalAsNoThread(t *testing.T) {
	r := New(Options{Kill: func(int, unix.Signal) error { t.Error("sent with tend's rights"); return nil }})
	if err := r.killAs(callerUID, os.Getpid(), 0); !errors.Is(err, ErrNoSignaller) {
		t.Errorf("killAs without Options.SignalAs: %v, want ErrNoSignaller", err)
	}
}

// TestSignalAsDrainsOwnSignals: a signal sent to the signalling thread
// itself while it has the caller's uid (the caller may: tgkill checks the
// thread's credentials) is taken off its queue, never handled by tend; and
// the thread is never tend's main thread, whose credentials kill(tend)
// checks.
func TestSignalAsDrainsOwnSignals(t *testing.T) {
	if os.Geteuid() != 0 || os.Getpid() == 1 {
		t.Skip("needs root, and not to be pid 1")
	}
	got := make(chan os.Signal, 1)
	signal.Notify(got, unix.SIGUSR1)
	defer signal.Stop(got)
	r := New(Options{SignalAs: true})
	defer r.Close()
	if r.sg.tid == os.Getpid() {
		t.Fatalf("the signalling thread is the main thread %d", r.sg.tid)
	}
	r.sg.setresuid = func(ru, eu, su int) error {
		err := rawSetresuid(ru, eu, su)
		if ru != 0 && err == nil {
			// What a caller racing the window could do.
			unix.Tgkill(unix.Getpid(), unix.Gettid(), unix.SIGUSR1)
		}
		return err
	}
	// Signal 0 to root's init: EPERM as the caller (tend itself would
	// always be allowed: same thread group).
	if err := r.killAs(callerUID, 1, 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("signal 0 as uid %d to pid 1: %v, want EPERM", callerUID, err)
	}
	select {
	case <-got:
		t.Errorf("tend handled the SIGUSR1 sent to its signalling thread while it was uid %d's", callerUID)
	case <-time.After(200 * time.Millisecond):
	}
	if n := r.sg.drained.Load(); n != 1 {
		t.Errorf("drained %d signals, want 1", n)
	}
	checkRootAgain(t, r)
}

// TestSignalAsRestoreFails: a thread whose restore fails is never used
// again: the call says so, later ones get ErrNoSignaller without running,
// and the thread itself is gone.
func TestSignalAsRestoreFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	r := New(Options{SignalAs: true})
	defer r.Close()
	tid := r.sg.tid
	r.sg.setresuid = func(ru, eu, su int) error {
		if ru == 0 {
			return unix.EPERM // the thread stays the caller's
		}
		return rawSetresuid(ru, eu, su)
	}
	if err := r.killAs(callerUID, os.Getpid(), 0); err == nil || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("As with a failing restore: %v, want the restore's error", err)
	}
	calls := 0
	r.sg.setresuid = func(int, int, int) error { calls++; return nil }
	if err := r.killAs(callerUID, os.Getpid(), 0); !errors.Is(err, ErrNoSignaller) || calls != 0 {
		t.Errorf("killAs after a failed restore: %v, %d setresuid calls; want ErrNoSignaller, none", err, calls)
	}
	if tid == os.Getpid() {
		// The goroutine ran on the main thread, which the runtime never
		// ends: it parks it for good instead (runtime.mexit). Nothing
		// runs on it again either way.
		t.Logf("thread %d is the main thread: parked for good, not ended", tid)
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d (tend %d) still exists 5s after its restore failed (uids %s)", tid, os.Getpid(), taskUIDs(t, os.Getpid(), tid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
