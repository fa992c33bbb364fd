//go:build linux

package boot

import "syscall"

// runExec is the exec trampoline: tend starts it (as root) where it cannot
// clone straight into the unit's cgroup (clone3 refused, e.g. by Docker's
// seccomp profile, which answers ENOSYS), or where the unit has cgroup v1
// directories for its limits, which no clone joins. In order it joins the
// cgroups of fds o.cgroupFDs (the unit's v2 cgroup, its v1 ones), sets
// RLIMIT_NPROC, drops to the unit's credentials and execs the command:
// every process the command makes is born inside. fd 3 is the report socket, close-on-exec: a
// successful execve closes it and tend reads EOF; any failure is sent as
// "failed ERRNO WHAT" and the helper exits 126 (127 for ENOENT, ENOTDIR).
// It returns only on failure.
func runExec(o *options) int {
	syscall.CloseOnExec(ctlFD)
	what, err := prepareExec(o)
	if err == nil {
		what = o.path
		err = syscall.Exec(o.path, o.argv, syscall.Environ())
	}
	errno, ok := err.(syscall.Errno)
	if !ok {
		errno = syscall.EINVAL
	}
	report(ctlFD, failed(errno, what))
	return execCode(errno)
}

// prepareExec does every step before execve and names the one that failed.
func prepareExec(o *options) (string, error) {
	if err := joinCgroups(o.cgroupFDs); err != nil {
		return "cgroup.procs", err
	}
	if err := setNProc(o.nproc); err != nil {
		return "setrlimit", err
	}
	if what, err := applyProcess(o); err != nil {
		return what, err // as root: a limit may be raised, nice lowered
	}
	// Groups, then gid, then uid: after setuid the others are no longer
	// allowed. Go's syscall.Setgroups, Setgid and Setuid change every thread
	// of the process (AllThreadsSyscall), as POSIX credentials must be.
	if o.setGroups {
		if err := syscall.Setgroups(o.groups); err != nil {
			return "setgroups", err
		}
	}
	if o.gid >= 0 {
		if err := syscall.Setgid(o.gid); err != nil {
			return "setgid", err
		}
	}
	if o.uid >= 0 {
		if err := syscall.Setuid(o.uid); err != nil {
			return "setuid", err
		}
	}
	if err := setNoNewPrivs(o); err != nil {
		return "prctl PR_SET_NO_NEW_PRIVS", err
	}
	return "", nil
}

// joinCgroups joins each cgroup of fds, in order, and closes the fds: none
// reaches the command.
func joinCgroups(fds []int) error {
	for _, fd := range fds {
		syscall.CloseOnExec(fd)
	}
	for _, fd := range fds {
		if err := joinCgroup(fd); err != nil {
			return err
		}
		syscall.Close(fd)
	}
	return nil
}

// joinCgroup moves the helper, and so the command it becomes, into the
// cgroup whose directory is dirfd: "0" written to cgroup.procs means the
// writer (cgroups(7)), in v2 and v1 alike. In v1 it moves the writing thread's
// whole thread group; the helper joins before making any child.
func joinCgroup(dirfd int) error {
	fd, err := openat(dirfd, "cgroup.procs", syscall.O_WRONLY|syscall.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_, err = syscall.Write(fd, []byte("0"))
	return err
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, name, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}
