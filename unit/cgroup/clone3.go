//go:build linux

package cgroup

import (
	"sync"

	"golang.org/x/sys/unix"
)

var clone3 struct {
	once sync.Once
	ok   bool // set once by once
}

// Clone3Usable reports whether clone3 can be called, which Go needs for
// SysProcAttr.UseCgroupFD. Docker's and Podman's default seccomp profiles
// answer clone3 with ENOSYS (so that glibc falls back to clone), and Go's
// fork does not fall back: every start into a cgroup would fail. The probe
// runs once and forks nothing: clone3 with a size below
// CLONE_ARGS_SIZE_VER0 fails with EINVAL in copy_clone_args_from_user
// before anything is read or created (kernel/fork.c), while a filter
// answers before the kernel looks. Any answer but EINVAL (ENOSYS, or the
// EPERM of stricter profiles) means unusable.
func Clone3Usable() bool {
	clone3.once.Do(func() { clone3.ok = probeClone3() == unix.EINVAL })
	return clone3.ok
}

// probeClone3 calls clone3(NULL, 0) and returns its errno.
func probeClone3() unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	return errno
}
