//go:build linux

package boot

import "syscall"

// applyProcess sets the command's umask, nice value and resource limits,
// in the helper before the exec (or the fork: the command inherits them),
// and names the step that failed. no_new_privs comes last, in setNoNewPrivs,
// once the credentials are dropped (it changes nothing about them, but
// the order keeps the failure story simple).
func applyProcess(o *options) (string, error) {
	if o.umask >= 0 {
		syscall.Umask(o.umask)
	}
	if o.niceSet {
		// A nice value is per thread on Linux, and the exec (or the fork)
		// may come from any of the runtime's threads: set every one's.
		// Threads made later inherit it from their maker.
		tids, err := threadIDs()
		if err != nil {
			return "setpriority", err
		}
		for _, tid := range tids {
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, o.nice); err != nil && err != syscall.ESRCH {
				return "setpriority", err
			}
		}
	}
	for _, r := range o.rlimits {
		lim := syscall.Rlimit{Cur: r.cur, Max: r.max}
		if err := syscall.Setrlimit(r.res, &lim); err != nil {
			return "setrlimit " + rlimitName(r.res), err
		}
	}
	return "", nil
}

// setNoNewPrivs is PR_SET_NO_NEW_PRIVS: the command's execs gain no
// privilege (setuid bits, file capabilities).
func setNoNewPrivs(o *options) error {
	if !o.noNewPrivs {
		return nil
	}
	const prSetNoNewPrivs = 38 // linux/prctl.h
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func rlimitName(res int) string {
	names := [...]string{"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
		"RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
		"RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"}
	if res >= 0 && res < len(names) {
		return names[res]
	}
	return "RLIMIT_" + itoa(int64(res))
}

// threadIDs lists the helper's threads (/proc/self/task).
func threadIDs() ([]int, error) {
	fd, err := syscall.Open("/proc/self/task", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var tids []int
	buf := make([]byte, 4096)
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return tids, nil
		}
		_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if id, err := atoi(name); err == nil {
				tids = append(tids, int(id))
			}
		}
	}
}
