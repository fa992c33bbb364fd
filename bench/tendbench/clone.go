//go:build linux

package main

import (
	"syscall"
	"unsafe"
)

// forkWaiter makes a child of tend's PID 1 (clone with CLONE_PARENT, so the
// init gets an unexpected child exactly as it gets an orphan) that closes
// every fd but fd (close_range(2): exiting with thousands of fds open would
// cost the kernel, not the init), blocks reading one byte from fd, and then
// exits 0. The child runs no Go code:
// only the raw syscalls below, on a copy of this goroutine's stack, which is
// why the function is nosplit (no stack growth, no scheduler in the child).
//
//go:nosplit
//go:norace
func forkWaiter(fd int, buf *byte) (int, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.CLONE_PARENT|syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	if pid != 0 {
		return int(pid), 0
	}
	if fd > 0 {
		syscall.RawSyscall(sysCloseRange, 0, uintptr(fd-1), 0)
	}
	syscall.RawSyscall(sysCloseRange, uintptr(fd+1), ^uintptr(0), 0)
	syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(buf)), 1)
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
}

// sysCloseRange is close_range(2)'s number on amd64 and arm64 alike.
const sysCloseRange = 436
