//go:build linux

// Package seccomptest gives tests seccomp filters that refuse one syscall
// with ENOSYS, as container runtimes' profiles do to clone3 (and older
// ones to pidfd_open), so that tend's fallbacks can be tested where these
// are refused. Only tests import it.
package seccomptest

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// auditArch is the seccomp_data.arch of this build's syscalls.
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}

// DenyClone3 installs, on every thread (TSYNC), the filter of Docker's and
// Podman's default profiles as far as clone3 goes: ENOSYS for clone3, any
// other syscall allowed.
func DenyClone3() error { return denyENOSYS(unix.SYS_CLONE3) }

// DenyPidfdOpen installs, as DenyClone3 does, a filter answering
// pidfd_open with ENOSYS, as a profile written before the syscall existed
// can (kernels before 5.3 answer the same).
func DenyPidfdOpen() error { return denyENOSYS(unix.SYS_PIDFD_OPEN) }

// denyENOSYS installs the filter: ENOSYS for syscall nr, any other allowed.
func denyENOSYS(nr uint32) error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no audit arch for %s", runtime.GOARCH)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// seccomp_data: int nr at offset 0, u32 arch at offset 4.
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: arch},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: nr},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	// With TSYNC a positive return is the tid of a thread that could not
	// be synchronised.
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 || r != 0 {
		return fmt.Errorf("seccomp: %d %w", r, errno)
	}
	return nil
}
