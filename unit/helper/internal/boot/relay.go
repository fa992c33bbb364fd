//go:build linux

package boot

import (
	"syscall"
	"unsafe"
)

// os/signal cannot be imported here (it imports os, whose init must not
// run), so boot uses the two runtime functions os/signal is built on. The
// runtime defines them and pushes them to these names itself
// (//go:linkname signal_enable os/signal.signal_enable in
// runtime/sigqueue.go), which is why the linker's -checklinkname accepts the
// references. Should a Go release ever refuse them, the build fails loudly;
// TestSignalsForwarded and the inittrace test cover the behaviour.
//
// Only one goroutine may receive (runtime/sigqueue.go): in helper mode
// os/signal's own loop never starts, as nothing calls signal.Notify.

//go:linkname signalEnable os/signal.signal_enable
func signalEnable(sig uint32)

//go:linkname signalRecv os/signal.signal_recv
func signalRecv() uint32

// keepIgnored are the signals tend leaves ignored when it was started with
// them ignored; the helper does the same, so the command inherits SIG_IGN.
// The Go runtime leaves these dispositions alone until they are enabled.
var keepIgnored = [...]syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGCONT}

// catchSignals enables every catchable signal and starts the relay: one
// goroutine that writes each signal number, as one byte, to a pipe that the
// event loop polls. A pipe keeps their order (TSTP before CONT); the runtime
// coalesces each signal while it is pending, as the kernel does, and a full
// pipe only makes the relay wait. It returns the pipe's read end.
func catchSignals() (int, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return -1, err
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		return -1, err
	}
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if catchable(sig) {
			signalEnable(uint32(sig))
		}
	}
	go relay(p[1])
	return p[0], nil
}

// catchable leaves out KILL and STOP, PROF (the runtime's profiler), URG
// (the runtime's own preemption signal: left alone it is ignored), 32-34
// (libc's, never handled by Go) and the keepIgnored signals found ignored.
func catchable(sig syscall.Signal) bool {
	switch {
	case sig == syscall.SIGKILL, sig == syscall.SIGSTOP, sig == syscall.SIGPROF, sig == syscall.SIGURG:
		return false
	case sig >= 32 && sig <= 34:
		return false
	}
	for _, k := range keepIgnored {
		if sig == k && ignored(sig) {
			return false
		}
	}
	return true
}

func relay(w int) {
	for {
		b := [1]byte{byte(signalRecv())}
		for {
			if _, err := syscall.Write(w, b[:]); err != syscall.EINTR {
				break
			}
		}
	}
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
