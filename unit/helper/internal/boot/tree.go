//go:build linux

package boot

import (
	"syscall"
	"unsafe"
)

// The unit is the helper's descendants: it is their subreaper
// (PR_SET_CHILD_SUBREAPER, prctl(2)), so an orphan of the unit reparents to
// the helper, never out of the unit.
//
// Who may be signalled without ever hitting a recycled pid:
//   - a direct child: the helper is its only reaper, and the event loop,
//     the one goroutine that reaps, makes every kill; until it is reaped its
//     pid cannot be reused (wait(2)).
//   - a deeper descendant Y, child of X, through a pidfd: pidfd_open(Y), then
//     read Y's parent from /proc/Y/stat and check it is X, then check that
//     X is still pinned (a direct child, or X's own pidfd still refers to a
//     live or zombie process) and that Y's pidfd does too. A process that
//     is alive or unreaped still holds its pid, so both /proc reads were of
//     the processes the pidfds name, and Y really is X's child: a member.
//     The signal then goes through Y's pidfd (pidfd_send_signal(2)).
//
// Without pidfds (kernel < 5.3, or a seccomp filter answering ENOSYS) only
// the first kind is safe. The fallback then signals the direct children and,
// while the main process is unreaped, its process group (the group cannot
// be recycled while its leader's pid is held). Its limit: a descendant that
// left the main's group (setsid, setpgid) and whose parent is alive gets no
// tree or stop signal; it is reached only once it reparents to the helper,
// that is, by the SIGKILL rounds of kill, stop and the end of the unit,
// which converge because each round kills every direct child and every
// orphan becomes one.

const (
	sysPidfdOpen       = 434 // the same number on every Linux architecture
	sysPidfdSendSignal = 424
)

func pidfdOpen(pid int) (int, syscall.Errno) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	syscall.CloseOnExec(int(fd)) // pidfds are always O_CLOEXEC; be explicit
	return int(fd), 0
}

func pidfdSignal(fd int, sig syscall.Signal) syscall.Errno {
	_, _, errno := syscall.Syscall6(sysPidfdSendSignal, uintptr(fd), uintptr(sig), uintptr(unsafe.Pointer(nil)), 0, 0, 0)
	return errno
}

// pidfdWorks probes pidfd_open once, on the helper itself.
func pidfdWorks() bool {
	fd, errno := pidfdOpen(syscall.Getpid())
	if errno != 0 {
		return false
	}
	syscall.Close(fd)
	return true
}

// pinned is a member whose pid cannot be recycled while it is used: a
// direct child (fd -1) or one held by its pidfd.
type pinned struct {
	pid, fd int
}

func (p pinned) held() bool {
	if p.fd < 0 {
		return true
	}
	// EPERM: a member that is no longer the unit's uid's to signal (a
	// setuid program; the helper runs as the unit) is there all the same.
	errno := pidfdSignal(p.fd, 0)
	return errno == 0 || errno == syscall.EPERM
}

// walk calls visit once for every process of the unit it can reach safely,
// parents before children, and returns how many it visited. Direct
// children come from /proc/self (the helper's threads), deeper ones only
// with pidfds. visit gets -1 as fd for a direct child.
func (u *unit) walk(visit func(p pinned)) int {
	n := 0
	for _, pid := range children(syscall.Getpid()) {
		n += u.descend(pinned{pid, -1}, visit)
	}
	return n
}

func (u *unit) descend(p pinned, visit func(pinned)) int {
	visit(p)
	n := 1
	if !u.pidfd {
		return n
	}
	for _, kid := range children(p.pid) {
		fd, errno := pidfdOpen(kid)
		if errno != 0 {
			continue // gone already
		}
		parent, ok := ppid(kid)
		if ok && parent == p.pid && p.held() && (pinned{kid, fd}).held() {
			n += u.descend(pinned{kid, fd}, visit)
		}
		syscall.Close(fd)
	}
	return n
}

// signalTree sends sig to every process of the unit. The main's process
// group (its session's, for a job) gets it first and at once, by one
// kill(2) of the group, as a unit tracked by its group does: so the walk,
// which finds processes one by one, skips that group, and a process that
// a handler of sig starts in it (a shell's trap running date) is not hit
// by a signal meant for the processes that were there. The rest of the
// unit (what left the group: setsid, double forks) gets it from the walk.
// The group is the main's pid only while the main is unreaped, so it
// cannot be another process's number.
func (u *unit) signalTree(sig syscall.Signal) {
	group := 0
	if u.main > 0 && syscall.Kill(-u.main, sig) == nil {
		group = u.main
	}
	u.walk(func(p pinned) {
		if group != 0 {
			if pg, err := syscall.Getpgid(p.pid); err == nil && pg == group {
				return // signalled with its group
			}
		}
		u.send(p, sig)
	})
}

// send signals one pinned member; ESRCH (exited, unreaped) is not an error.
func (u *unit) send(p pinned, sig syscall.Signal) {
	if p.fd < 0 {
		syscall.Kill(p.pid, sig)
		return
	}
	pidfdSignal(p.fd, sig)
}

// count is how many processes the unit has now, the main included while
// it is unreaped. Without pidfds it reads the tree unpinned: a snapshot,
// as any count is, and nothing is signalled.
func (u *unit) count() int {
	if u.pidfd {
		return u.walk(func(pinned) {})
	}
	n := 0
	queue := children(syscall.Getpid())
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if !seen[pid] {
			seen[pid] = true
			n++
			queue = append(queue, children(pid)...)
		}
	}
	return n
}
