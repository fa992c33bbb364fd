//go:build linux

package helper_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/internal/seccomptest"
	"github.com/tendinit/tend/unit/helper"
)

// pidfdScript runs until SIGUSR1, then exits 5.
const pidfdScript = `trap "exit 5" USR1; echo ready; while :; do sleep 0.02; done`

// TestStartedPidFD: with Subreaper.PidFD the helper passes, with started,
// a pidfd naming its command: pidfd_send_signal through it reaches the
// command, poll sees it readable once the command exits, and the helper
// keeps no copy. Without the option the message carries none.
func TestStartedPidFD(t *testing.T) {
	needRoot(t)
	s := sh(t, pidfdScript)
	s.PidFD = true
	r := startSubreaper(t, s)
	m := r.expect(helper.Started)
	if m.FD < 0 {
		t.Fatalf("started %+v: no pidfd passed", m)
	}
	defer unix.Close(m.FD)
	r.line() // ready: the trap is set
	if got := fdinfoPid(t, m.FD); got != strconv.Itoa(m.PID) {
		t.Errorf("the pidfd names pid %s; want the command's, %d", got, m.PID)
	}
	if fl, err := unix.FcntlInt(uintptr(m.FD), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("the passed pidfd's flags %#x, %v: want close-on-exec", fl, err)
	}
	// It closes its copy right after the send: polled, as that may not
	// have run yet.
	for end := time.Now().Add(5 * time.Second); helperPidfds(t, r.pid) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the helper holds %d pidfds 5s after started; want none (tend has the only copy)", helperPidfds(t, r.pid))
		}
	}
	pfd := []unix.PollFd{{Fd: int32(m.FD), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 0); n != 0 || err != nil {
		t.Errorf("poll on the pidfd of the running command: %d, %v; want not readable", n, err)
	}
	if err := unix.PidfdSendSignal(m.FD, unix.SIGUSR1, nil, 0); err != nil {
		t.Fatalf("pidfd_send_signal: %v", err)
	}
	if ws := r.expect(helper.Exited).Status; ws.ExitStatus() != 5 {
		t.Errorf("the command %s; want exit 5 (its USR1 trap)", desc(ws))
	}
	if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil || pfd[0].Revents&unix.POLLIN == 0 {
		t.Errorf("poll on the pidfd after the exit: %d, %v, revents %#x; want readable", n, err, pfd[0].Revents)
	}
	r.expect(helper.Left)
	r.eof()

	off := startSubreaper(t, sh(t, "exit 0"))
	if m := off.expect(helper.Started); m.FD != -1 {
		unix.Close(m.FD)
		t.Errorf("started %+v without the option; want no fd", m)
	}
}

// TestStartedPidFDSeccomp: where a seccomp filter answers pidfd_open with
// ENOSYS, started comes without an fd and the unit runs as ever.
func TestStartedPidFDSeccomp(t *testing.T) {
	needRoot(t)
	s := sh(t, pidfdScript)
	s.PidFD = true
	argv, env, err := s.Args()
	if err != nil {
		t.Fatal(err)
	}
	// The wrapper is this test binary: boot's init would take the marker
	// from it (argv[0] is not the helper's), so it travels renamed.
	var wenv []string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "TEND_UNIT_HELPER="); ok {
			kv = "HELPER_TEST_MARKER=" + v
		}
		wenv = append(wenv, kv)
	}
	wenv = append(wenv, "HELPER_TEST=nopidfd")
	r := startVia(t, "/proc/self/exe", append([]string{"nopidfd", "--", exe}, argv...), wenv, &syscall.SysProcAttr{Setsid: true}, nil)
	m := r.expect(helper.Started)
	if m.FD != -1 {
		unix.Close(m.FD)
		t.Errorf("started %+v under a filter refusing pidfd_open; want no fd", m)
	}
	r.line()
	if err := r.conn.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if ws := r.expect(helper.Exited).Status; ws.ExitStatus() != 5 {
		t.Errorf("the command %s; want exit 5", desc(ws))
	}
}

// helperNoPidfd installs the filter (inherited across exec) and execs the
// unit helper. args: -- PATH ARGV...
func helperNoPidfd(args []string) int {
	if len(args) < 2 || args[0] != "--" {
		fmt.Println("nopidfd: want -- PATH ARGV")
		return 2
	}
	if err := seccomptest.DenyPidfdOpen(); err != nil {
		fmt.Println("nopidfd:", err)
		return 1
	}
	if _, _, errno := syscall.Syscall(unix.SYS_PIDFD_OPEN, uintptr(os.Getpid()), 0, 0); errno != syscall.ENOSYS {
		fmt.Println("nopidfd: pidfd_open not refused:", errno)
		return 1
	}
	var env []string
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "HELPER_TEST="):
		case strings.HasPrefix(kv, "HELPER_TEST_MARKER="):
			env = append(env, "TEND_UNIT_HELPER="+strings.TrimPrefix(kv, "HELPER_TEST_MARKER="))
		default:
			env = append(env, kv)
		}
	}
	err := syscall.Exec(args[1], args[2:], env)
	fmt.Println("nopidfd: exec:", err)
	return 1
}

// TestConnPassedFDs: tend's side keeps one fd passed with started (close-
// on-exec) and closes every other passed fd at once: more than one with
// started, any with another message. Each fd sent is a pipe's only write
// end, so its read end sees EOF exactly when the received copy is closed.
func TestConnPassedFDs(t *testing.T) {
	for _, c := range []struct {
		msg  string
		n    int
		keep bool
	}{
		{"started 42", 1, true},
		{"started 42", 2, false},
		{"exit 0", 1, false},
		{"count 3", 1, false},
		{"bogus", 1, false},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.msg, c.n), func(t *testing.T) {
			tend, peer, err := helper.Socketpair()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			conn := helper.NewConn(tend)
			defer conn.Close()
			var reads, writes []*os.File
			var fds []int
			for range c.n {
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer pr.Close()
				reads, writes = append(reads, pr), append(writes, pw)
				fds = append(fds, int(pw.Fd()))
			}
			err = syscall.Sendmsg(int(peer.Fd()), []byte(c.msg), syscall.UnixRights(fds...), nil, 0)
			for _, pw := range writes {
				pw.Close() // the copy in flight, then tend's, is the only one left
			}
			if err != nil {
				t.Fatal(err)
			}
			var m helper.Message
			select {
			case m = <-conn.Messages():
			case <-time.After(5 * time.Second):
				t.Fatal("no message")
			}
			if c.keep != (m.FD >= 0) {
				t.Fatalf("%q with %d fds: Message.FD %d; want kept %v", c.msg, c.n, m.FD, c.keep)
			}
			if c.keep {
				if fl, err := unix.FcntlInt(uintptr(m.FD), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
					t.Errorf("the kept fd's flags %#x, %v: want close-on-exec", fl, err)
				}
				unix.Close(m.FD)
			}
			for i, pr := range reads {
				pr.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := pr.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
					t.Errorf("fd %d passed with %q: read %d, %v; want EOF (every copy closed)", i, c.msg, n, err)
				}
			}
		})
	}
}

// fdinfoPid is the Pid: line of a pidfd's fdinfo.
func fdinfoPid(t *testing.T, fd int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pid:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// helperPidfds counts the pidfds a process holds.
func helperPidfds(t *testing.T, pid int) int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(dir + "/" + e.Name()); strings.Contains(l, "pidfd") {
			n++
		}
	}
	return n
}
