//go:build linux

package boot

import (
	"syscall"
	"unsafe"
)

// The helper relays every catchable signal it receives to the unit's main
// process. How it catches them is per architecture: on amd64 a handler of
// its own (relay_amd64.go), elsewhere the runtime's os/signal hooks
// (relay_runtime.go). Either way each signal becomes one byte, its number,
// in a pipe that the event loop polls: a pipe keeps their order (TSTP
// before CONT), and a full pipe only drops bytes of signals the loop has
// yet to read, as the kernel coalesces a pending signal.

// keepIgnored are the signals tend leaves ignored when it was started with
// them ignored; the helper does the same, so the command inherits SIG_IGN.
// The Go runtime leaves these dispositions alone until they are enabled.
var keepIgnored = [...]syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGCONT}

// catchable leaves out KILL and STOP, PROF (the runtime's profiler), URG
// (the runtime's own preemption signal: left alone it is ignored), 32-34
// (libc's, never handled by Go), the faults (SEGV, BUS, FPE, ILL, TRAP,
// SYS: the runtime's handler turns the helper's own into a crash report,
// and one sent with kill(2) is ignored by it) and the keepIgnored signals
// found ignored.
func catchable(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGPROF, syscall.SIGURG,
		syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSYS:
		return false
	}
	if sig >= 32 && sig <= 34 {
		return false
	}
	for _, k := range keepIgnored {
		if sig == k && ignored(sig) {
			return false
		}
	}
	return true
}

// signalPipe makes the relay's pipe, both ends close-on-exec, the read end
// non-blocking for the loop; wnonblock makes the write end non-blocking
// too (a signal handler must never block).
func signalPipe(wnonblock bool) (r, w int, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return -1, -1, err
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		return -1, -1, err
	}
	if wnonblock {
		if err := syscall.SetNonblock(p[1], true); err != nil {
			return -1, -1, err
		}
	}
	return p[0], p[1], nil
}

// ignored asks the kernel for sig's disposition with rt_sigaction(2) and no
// new action. struct kernel_sigaction starts with the handler on every
// Linux architecture; 4 words are more than any of them needs.
func ignored(sig syscall.Signal) bool {
	const sigIGN = 1
	var old [4]uint64
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0,
		uintptr(unsafe.Pointer(&old[0])), 8, 0, 0)
	return errno == 0 && old[0] == sigIGN
}
