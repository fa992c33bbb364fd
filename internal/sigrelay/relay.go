//go:build linux

// Package sigrelay turns signals into bytes in a pipe, with a handler of
// its own instead of the Go runtime's: on amd64 an assembly handler writes
// the signal's number to the pipe and returns. It costs one rt_sigaction
// per signal, where the runtime's signal_enable (what os/signal.Notify
// calls) costs a round trip to the runtime's signal-mask thread each, about
// 40 µs on a loaded 2-core machine: 60 of them were 2.5 ms of a unit
// helper's 7.7 ms start, and most of `tend spawn`'s time apart from its
// request. A pipe keeps the signals' order (TSTP before CONT); a full pipe
// drops the byte of a signal the reader has yet to read, as the kernel
// coalesces a pending signal.
//
// Users: the unit helper (unit/helper/internal/boot, which may import only
// what package syscall imports: so may this package, see boot's
// TestBootImports) and `tend spawn`'s forwarder (client). Where Supported
// is false (architectures other than amd64) they use the runtime's way.
//
// Why the handler is safe beside the Go runtime:
//   - it touches no Go state: it reads the pipe's fd (set before any
//     handler is installed, never changed) and makes one write(2), which
//     is async-signal-safe; the kernel restores every register at
//     rt_sigreturn;
//   - SA_ONSTACK: it runs on the thread's signal stack, which the runtime
//     gives every thread it makes (a goroutine stack is too small for a
//     signal frame), and it uses the 128-byte red zone below the stack
//     pointer, which the kernel leaves alone on amd64;
//   - the write end is non-blocking: a full pipe drops the byte, never
//     blocks the thread the signal landed on;
//   - the runtime keeps its own handler for what it needs: Install refuses
//     URG (its preemption), PROF (its profiler) and the faults (SEGV, BUS,
//     FPE, ILL, TRAP, SYS: its handler turns the program's own into a
//     crash report); a fork resets these handlers as it resets its own
//     (the runtime marked them handled at start), and exec resets every
//     caught signal to its default;
//   - nothing else in the process may catch the same signals through
//     os/signal afterwards (Notify would put the runtime's handler back).
package sigrelay

import (
	"syscall"
	"unsafe"
)

// Own reports whether the runtime must keep sig: Install refuses these.
func Own(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGPROF, syscall.SIGURG,
		syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSYS:
		return true
	}
	return sig >= 32 && sig <= 34 // libc's, never handled by Go
}

// Ignored asks the kernel for sig's disposition with rt_sigaction(2) and
// no new action. struct kernel_sigaction starts with the handler on every
// Linux architecture; 4 words are more than any of them needs.
func Ignored(sig syscall.Signal) bool {
	const sigIGN = 1
	var old [4]uint64
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0,
		uintptr(unsafe.Pointer(&old[0])), 8, 0, 0)
	return errno == 0 && old[0] == sigIGN
}

// Pipe makes a pipe, both ends close-on-exec, the read end non-blocking
// for an event loop; wnonblock makes the write end non-blocking too (a
// signal handler must never block).
func Pipe(wnonblock bool) (r, w int, err error) {
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
