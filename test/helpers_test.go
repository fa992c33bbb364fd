//go:build linux

package test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds the re-executed helpers. Each prints a line when ready
// (never sleeps instead) and returns its exit code.

// helperPID1 runs as PID 1 of a fresh PID and mount namespace: it makes /
// private, mounts its own /proc, sets pid_max, sets up the signal
// dispositions and mask tend should start with, and execs tend.
// args: pid_max (0: keep) ignored-sigs blocked-sigs argv...
func helperPID1(args []string) int {
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fail("make / private: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc: %v", err)
	}
	if args[0] != "0" {
		if err := os.WriteFile("/proc/sys/kernel/pid_max", []byte(args[0]), 0); err != nil {
			return fail("pid_max: %v", err)
		}
	}
	for _, sig := range parseSigs(args[1]) {
		ignoreRaw(sig) // exec keeps SIG_IGN
	}
	runtime.LockOSThread() // the mask is per thread; exec from this one
	if block := parseSigs(args[2]); len(block) > 0 {
		var set unix.Sigset_t
		for _, sig := range block {
			set.Val[(sig-1)/64] |= 1 << ((uint(sig) - 1) % 64)
		}
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
			return fail("block: %v", err)
		}
	}
	err := unix.Exec(args[3], args[3:], os.Environ())
	return fail("exec %s: %v", args[3], err)
}

// ignoreRaw sets SIG_IGN with rt_sigaction(2) itself: signal.Ignore leaves
// alone the signals the Go runtime does not know (32-34).
func ignoreRaw(sig unix.Signal) {
	act := [4]uint64{1} // handler SIG_IGN, no flags
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
	if errno != 0 {
		fail("ignore %d: %v", sig, errno)
	}
}

func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "helper: "+format+"\n", a...)
	return 98
}

func parseSigs(s string) []unix.Signal {
	var out []unix.Signal
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, unix.Signal(n))
		}
	}
	return out
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// noPreempt re-execs the helper in place (same pid) with async preemption
// off: the Go runtime preempts with SIGURG, which a helper that reports
// every signal it gets would otherwise see without anyone sending it.
func noPreempt() {
	const want = "asyncpreemptoff=1"
	old := os.Getenv("GODEBUG")
	if strings.Contains(old, want) {
		return
	}
	val := want
	if old != "" {
		val = old + "," + want
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(testBin, os.Args, append(env, "GODEBUG="+val))
	panic(err)
}

// reportable lists the signals a Go helper can be notified of.
func reportable() []os.Signal {
	var out []os.Signal
	for sig := unix.Signal(1); sig <= 64; sig++ {
		switch {
		case sig == unix.SIGKILL, sig == unix.SIGSTOP, sig == unix.SIGPROF, sig >= 32 && sig <= 34:
		default:
			out = append(out, sig)
		}
	}
	return out
}

// stdinEOF is closed when stdin reaches its end.
func stdinEOF() <-chan struct{} {
	c := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(c)
	}()
	return c
}

// helperSigReport catches every signal it can, prints "TAG sig N" for each,
// and at the end of stdin prints "TAG bye" and exits with CODE.
// args: TAG CODE
func helperSigReport(args []string) int {
	noPreempt()
	tag, code := args[0], atoi(args[1])
	c := make(chan os.Signal, 1024)
	signal.Notify(c, reportable()...)
	fmt.Printf("%s ready\n", tag)
	eof := stdinEOF()
	for {
		select {
		case sig := <-c:
			fmt.Printf("%s sig %d\n", tag, sig)
		case <-eof:
			fmt.Printf("%s bye\n", tag)
			return code
		}
	}
}

// familyChild reports SIGUSR1 and SIGUSR2. It is a single-threaded shell
// on purpose: the kernel hands it pending signals lowest number first, and
// dash runs pending traps in number order, so a SIGUSR1 sent before a
// SIGUSR2 is always reported first. (A Go program may handle them on two
// threads in either order.)
const familyChild = `trap 'echo child sig 10' USR1; trap 'echo child sig 12' USR2
echo child ready
while :; do sleep 100 >/dev/null & wait $!; done`

// helperFamily is a main process with a child in its own process group.
// Both report signals ("main sig N", "child sig N"); when the main gets
// SIGUSR1 it sends SIGUSR2 to the child, a sentinel that tells whether the
// child got the SIGUSR1 too. At the end of stdin it ends the child and
// exits with CODE.
// args: CODE
func helperFamily(args []string) int {
	noPreempt()
	code := atoi(args[0])
	c := make(chan os.Signal, 1024)
	signal.Notify(c, reportable()...)
	child := exec.Command("/bin/sh", "-c", familyChild)
	out, err := child.StdoutPipe()
	if err != nil {
		return fail("%v", err)
	}
	if err := child.Start(); err != nil {
		return fail("%v", err)
	}
	ready, relayed := make(chan struct{}), make(chan struct{})
	go func() { // relay the child's lines
		defer close(relayed)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Println(sc.Text())
			if sc.Text() == "child ready" {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		return fail("child not ready")
	}
	fmt.Println("main ready")
	eof := stdinEOF()
	for {
		select {
		case sig := <-c:
			fmt.Printf("main sig %d\n", sig)
			if sig == unix.SIGUSR1 {
				_ = child.Process.Signal(unix.SIGUSR2)
			}
		case <-eof:
			_ = child.Process.Signal(unix.SIGTERM)
			<-relayed
			_ = child.Wait()
			fmt.Println("main bye")
			return code
		}
	}
}

// helperTermExit prints "term" and exits with CODE on SIGTERM; SIGUSR1 and
// SIGWINCH are caught and dropped.
// args: CODE
func helperTermExit(args []string) int {
	code := atoi(args[0])
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM)
	signal.Notify(make(chan os.Signal, 1), unix.SIGUSR1, unix.SIGWINCH)
	fmt.Println("ready")
	<-term
	fmt.Println("term")
	return code
}

// helperIgnoreTerm ignores SIGTERM, prints "TAG ready" and sleeps.
// args: TAG
func helperIgnoreTerm(args []string) int {
	signal.Ignore(unix.SIGTERM)
	fmt.Printf("%s ready\n", args[0])
	time.Sleep(time.Hour)
	return 0
}

// helperDrain takes 500ms to finish after SIGTERM, then exits 0.
func helperDrain(args []string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM)
	fmt.Println("ready")
	<-term
	fmt.Println("draining")
	time.Sleep(500 * time.Millisecond) // the drain itself, not a synchronisation
	fmt.Println("drained")
	return 0
}

// helperLeftovers starts `sleep 1000` and a process that ignores SIGTERM,
// prints "ready sleep=PID ign=PID" once both run, and exits with CODE,
// leaving them behind.
// args: CODE
func helperLeftovers(args []string) int {
	code := atoi(args[0])
	sl := exec.Command("sleep", "1000")
	if err := sl.Start(); err != nil {
		return fail("%v", err)
	}
	ig := exec.Command(testBin, "ignoreterm", "ign")
	out, err := ig.StdoutPipe()
	if err != nil {
		return fail("%v", err)
	}
	if err := ig.Start(); err != nil {
		return fail("%v", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ign ready\n" {
		return fail("ignoreterm said %q", line)
	}
	fmt.Printf("ready sleep=%d ign=%d\n", sl.Process.Pid, ig.Process.Pid)
	return code
}

// helperSubreap is a child subreaper: it starts ARGV (passing fd 3 on),
// then reaps everything and prints "reaped pid=N code=C" for each exit,
// until it has no child left.
// args: ARGV...
func helperSubreap(args []string) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail("subreaper: %v", err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(3, "extra")}
	if err := cmd.Start(); err != nil {
		return fail("%v", err)
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		fmt.Printf("reaped pid=%d code=%d\n", pid, code)
	}
}

// helperPDParent starts ARGV (tend), prints "tend pid=N", and exits once fd
// 3 reaches its end: tend's parent dies when the test says so.
// args: ARGV...
func helperPDParent(args []string) int {
	unix.CloseOnExec(3)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("tend pid=%d\n", cmd.Process.Pid)
	_, _ = io.Copy(io.Discard, os.NewFile(3, "extra"))
	return 0
}
