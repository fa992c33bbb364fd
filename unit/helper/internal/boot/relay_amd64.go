//go:build linux

package boot

import (
	"syscall"
	"unsafe"
)

// On amd64 the helper installs a signal handler of its own, written in
// assembly (relay_amd64.s): it writes the signal's number to the relay
// pipe and returns. That is all a relay needs, and it costs one
// rt_sigaction per signal at start, where the runtime's signal_enable
// costs a round trip to the runtime's signal-mask thread each (60 of them
// were 2.5 ms of a 7.7 ms helper start) and two threads for good.
//
// Why this is safe beside the Go runtime:
//   - the handler touches no Go state: it reads relayFD (set before any
//     handler is installed, never changed) and makes one write(2), which
//     is async-signal-safe; the kernel restores every register at
//     rt_sigreturn;
//   - SA_ONSTACK: it runs on the thread's signal stack, which the runtime
//     gives every thread it makes (a goroutine stack is too small for a
//     signal frame), and it uses the 128-byte red zone below the stack
//     pointer, which the kernel leaves alone on amd64;
//   - the write end is non-blocking: a full pipe drops the byte (the loop
//     has bytes to read and reaps everything it finds), never blocks the
//     thread the signal landed on;
//   - the runtime keeps its own handler for what it needs (URG, PROF and
//     the faults, see catchable); a fork in the helper resets these
//     handlers as it resets its own (the runtime marked them handled at
//     start), and exec resets every caught signal to its default.

// relayFD is the pipe's write end that relayHandler writes to.
var relayFD int32 = -1

// relayHandler is the handler: void handler(int sig).
func relayHandler()

// relayRestorer is the sa_restorer: rt_sigreturn(2). amd64 requires one.
func relayRestorer()

// relayPCs returns the entry addresses of relayHandler and relayRestorer
// themselves (ABI0), not of Go's wrappers for calls from Go.
func relayPCs() (handler, restorer uintptr)

// kernelSigaction is struct kernel_sigaction on amd64.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// catchSignals installs relayHandler for every catchable signal and
// returns the pipe's read end.
func catchSignals() (int, error) {
	r, w, err := signalPipe(true)
	if err != nil {
		return -1, err
	}
	relayFD = int32(w)
	const (
		saRestorer = 0x04000000
		saOnStack  = 0x08000000
		saRestart  = 0x10000000
	)
	h, rs := relayPCs()
	act := kernelSigaction{handler: h, flags: saOnStack | saRestart | saRestorer, restorer: rs, mask: ^uint64(0)}
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if !catchable(sig) {
			continue
		}
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
			uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
		if errno != 0 {
			return -1, errno
		}
	}
	return r, nil
}
