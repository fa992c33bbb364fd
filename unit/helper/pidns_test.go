//go:build linux

package helper_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tendinit/tend/unit/helper"
)

// TestTreeSkipsRecycledPID forces a unit member's pid to be reused by a
// process outside the unit, then sends tree USR1: the outsider must not
// get it. It runs as PID 1 of a new PID namespace (ns_last_pid is per
// namespace; DESIGN §8), with its own /proc.
func TestTreeSkipsRecycledPID(t *testing.T) {
	needRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HELPER_TEST=pidns")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("pid namespace helper:\n%s", out)
	if err != nil || !strings.Contains(string(out), "ok: outsider") {
		t.Errorf("pid namespace helper: %v; want exit 0 and an ok line", err)
	}
}

// helperPIDNS is the namespace's PID 1. It starts a unit whose main execs
// sleep (tree USR1 kills it: the signal reached the unit) after
// double-forking a member M; it kills M, forks an outsider with USR1
// blocked onto M's pid (ns_last_pid = M-1), sends tree USR1 and checks
// that USR1 is not pending in the outsider.
func helperPIDNS([]string) int {
	fail := func(format string, a ...any) int {
		fmt.Printf("FAIL: "+format+"\n", a...)
		return 1
	}
	if err := syscall.Mount("", "/", "", syscall.MS_PRIVATE|syscall.MS_REC, ""); err != nil {
		return fail("make / private: %v", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	d, err := os.MkdirTemp("", "pidns")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(d)
	s := helper.Subreaper{Path: "/bin/sh", Env: []string{"PATH=/usr/bin:/bin", "D=" + d},
		Argv: []string{"sh", "-c", `(sleep 1000 & echo $! > $D/m); echo ready; exec sleep 1000`}}
	h, err := startPlain(s)
	if err != nil {
		return fail("start helper: %v", err)
	}
	defer h.stop()
	if m := <-h.conn.Messages(); m.Kind != helper.Started {
		return fail("first message %+v", m)
	}
	if l, _ := h.out.ReadString('\n'); l != "ready\n" {
		return fail("stdout %q", l)
	}
	b, _ := os.ReadFile(d + "/m")
	member, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if member < 2 {
		return fail("member pid %q", b)
	}
	// M is alive and nothing else forks in this namespace now: kill it and
	// wait until the helper has reaped it (its /proc entry is gone).
	syscall.Kill(member, syscall.SIGKILL)
	for i := 0; ; i++ {
		if _, err := os.Stat("/proc/" + strconv.Itoa(member)); os.IsNotExist(err) {
			break
		}
		if i > 500 {
			return fail("member %d not reaped", member)
		}
		time.Sleep(10 * time.Millisecond)
	}
	outsider, err := forkOnto(member, "/bin/sleep", "1000")
	if err != nil {
		return fail("outsider: %v", err)
	}
	defer func() { syscall.Kill(outsider, syscall.SIGKILL); syscall.Wait4(outsider, nil, 0, nil) }()
	if outsider != member {
		return fail("forced reuse: outsider got pid %d, member had %d", outsider, member)
	}
	h.conn.Tree(syscall.SIGUSR1)
	h.conn.Count() // answered after tree is done: every signal is sent by then
	for m := range h.conn.Messages() {
		if m.Kind == helper.Exited && m.Status.Signal() != syscall.SIGUSR1 {
			return fail("main %+v; want killed by tree USR1", m)
		}
		if m.Kind == helper.Counted {
			break
		}
	}
	if pend, err := pendingUSR1(outsider); err != nil || pend {
		return fail("outsider %d (recycled pid of member %d): USR1 pending = %v (%v)", outsider, member, pend, err)
	}
	fmt.Printf("ok: outsider %d on member %d's recycled pid got no USR1\n", outsider, member)
	return 0
}

// plain is a helper started outside the testing framework.
type plain struct {
	pid  int
	conn *helper.Conn
	out  *bufio.Reader
}

func startPlain(s helper.Subreaper) (*plain, error) {
	argv, env, err := s.Args()
	if err != nil {
		return nil, err
	}
	tend, peer, err := helper.Socketpair()
	if err != nil {
		return nil, err
	}
	defer peer.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pw.Close()
	pid, err := syscall.ForkExec(helper.Exe, argv, &syscall.ProcAttr{Env: env,
		Files: []uintptr{0, pw.Fd(), 2, peer.Fd()}, Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		return nil, err
	}
	return &plain{pid, helper.NewConn(tend), bufio.NewReader(pr)}, nil
}

func (p *plain) stop() {
	p.conn.Close()
	syscall.Wait4(p.pid, nil, 0, nil)
}

// forkOnto starts argv with SIGUSR1 blocked (a forked child keeps the
// forking thread's mask) as pid want: ns_last_pid = want-1 right before.
func forkOnto(want int, argv ...string) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	set := uint64(1) << (syscall.SIGUSR1 - 1)
	var old uint64
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&set)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return 0, e
	}
	defer syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 2 /* SIG_SETMASK */, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(want-1)), 0); err != nil {
		return 0, err
	}
	return syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
}

// pendingUSR1 reads whether USR1 is pending for pid, on a thread or the
// whole process (SigPnd, ShdPnd in /proc/PID/status).
func pendingUSR1(pid int) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, err
	}
	blocked := false
	pending := false
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		bit := err == nil && mask&(1<<(syscall.SIGUSR1-1)) != 0
		switch k {
		case "SigPnd", "ShdPnd":
			pending = pending || bit
		case "SigBlk":
			blocked = bit
		}
	}
	if !blocked {
		return false, fmt.Errorf("USR1 not blocked in %d: the check would prove nothing", pid)
	}
	return pending, nil
}
