//go:build linux

package sigrelay

import (
	"syscall"
	"unsafe"
)

// Supported: this architecture has the handler.
const Supported = true

// relayFD is the pipe's write end that relayHandler writes to; -1 until
// Install.
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

// Install makes the pipe and installs the handler for each of sigs (none
// of them Own), and returns the pipe's read end, non-blocking: each signal
// caught from then on is one byte there, its number. Call it once per
// process.
func Install(sigs []syscall.Signal) (int, error) {
	for _, sig := range sigs {
		if Own(sig) || sig < 1 || sig > 64 {
			return -1, syscall.EINVAL
		}
	}
	r, w, err := Pipe(true)
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
	for _, sig := range sigs {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
			uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
		if errno != 0 {
			return -1, errno
		}
	}
	return r, nil
}
