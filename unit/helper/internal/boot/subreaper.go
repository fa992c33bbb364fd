//go:build linux

package boot

import (
	"runtime"
	"syscall"
)

// unit is the subreaper's state. It is owned by the event loop, the
// goroutine running runSubreaper (the init goroutine, locked to the main
// thread for the whole of init): it alone reaps, signals and reads fd 3.
type unit struct {
	o     *options
	pidfd bool // pidfd_open works (probed once)

	main     int  // the main process; 0 once reaped
	left     int  // members found when the main exited, or at a kill
	leftSet  bool // left was fixed by a kill while the main lived
	ending   bool // stop, kill, EOF or the main's end: exit once empty
	killing  bool // SIGKILL rounds: after the deadline, kill or EOF
	deadline int64
	ctlGone  bool // tend closed fd 3 or is gone
	done     bool // the unit is empty and ending: exit
}

// runSubreaper starts the command under the helper as its subreaper and
// runs the event loop until the unit is over.
func runSubreaper(o *options) int {
	// fd 3 is tend's socket: the command must not inherit it.
	syscall.CloseOnExec(ctlFD)
	// Every other fd above stdio is the command's (its ready fd, passed
	// sockets, the cgroup directories joined below): the helper gives them
	// up once the command has them, or a pipe's reader would not see EOF
	// when the command closes its end (ready = "fd:N" closed without a
	// newline) until the helper's own end.
	theirs := commandFDs()
	runtime.GOMAXPROCS(1) // one loop does all the work; fewer idle threads
	sigs, err := catchSignals()
	if err == nil {
		err = setSubreaper()
	}
	if err == nil {
		err = setNProc(o.nproc)
	}
	if err == nil {
		// The unit's limits (cgroup v1 directories): the helper joins
		// before forking the command, so the command and all it makes
		// are born inside, and so is the helper, whose threads count.
		err = joinCgroups(o.cgroupFDs)
	}
	what := "setup"
	if err == nil {
		// As the unit's user already: a limit above the hard one, or a
		// lower nice value, is refused here (EPERM) and named.
		what, err = applyProcess(o)
	}
	if err == nil {
		what, err = "prctl PR_SET_NO_NEW_PRIVS", setNoNewPrivs(o)
	}
	if err != nil {
		errno, _ := err.(syscall.Errno)
		report(ctlFD, failed(errno, what))
		return ExitNotExecutable
	}
	u := &unit{o: o, pidfd: pidfdWorks()}
	attr := &syscall.ProcAttr{
		Env:   syscall.Environ(),
		Files: []uintptr{0, 1, 2},
		// Its own process group, as tini gives its child: a `kill 0` in the
		// unit then never reaches the helper (which would pass it on: a
		// second delivery), and the main's group can be signalled. A job
		// leads its own session, as it would as tend's direct child.
		Sys: &syscall.SysProcAttr{Setpgid: !o.setsid, Setsid: o.setsid},
	}
	pid, err := syscall.ForkExec(o.path, o.argv, attr)
	for _, fd := range theirs {
		syscall.Close(fd)
	}
	if err != nil {
		// ForkExec reaped the child itself; nothing else has started.
		errno, _ := err.(syscall.Errno)
		report(ctlFD, failed(errno, o.path))
		return execCode(errno)
	}
	u.main = pid
	// The pidfd is opened before the loop runs, and only the loop reaps:
	// pid is still the command's here, alive or a zombie, never a recycled
	// number. Where pidfd_open fails (ENOSYS: an old kernel or a seccomp
	// filter) started comes without one.
	pidfd := -1
	if o.pidfd && u.pidfd {
		pidfd, _ = pidfdOpen(pid)
	}
	ok := reportFD(ctlFD, MsgStarted+" "+itoa(int64(pid)), pidfd)
	if pidfd >= 0 {
		syscall.Close(pidfd) // tend has its own now: the helper holds no extra fd
	}
	if !ok {
		u.onEOF()
	}
	return u.loop(sigs)
}

// commandFDs lists the fds open now above stdio, ctlFD left out
// (/proc/self/fd; none when it cannot be read: they then stay open). The
// listing's own fd is in the listing, closed by the time F_GETFD asks.
func commandFDs() []int {
	var fds []int
	for _, name := range listDir("/proc/self/fd") {
		n, err := atoi(name)
		fd := int(n)
		if err != nil || fd <= 2 || fd == ctlFD {
			continue
		}
		if _, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); errno == 0 {
			fds = append(fds, fd)
		}
	}
	return fds
}

func setSubreaper() error {
	const prSetChildSubreaper = 36 // linux/prctl.h; not in package syscall
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// setNProc sets RLIMIT_NPROC, soft = hard, before the command starts. The
// kernel counts the processes of the real uid (setrlimit(2)) and does not
// enforce it for root.
func setNProc(n int64) error {
	if n < 0 {
		return nil
	}
	const rlimitNProc = 6 // RLIMIT_NPROC on every Linux architecture but alpha, mips, sparc
	lim := syscall.Rlimit{Cur: uint64(n), Max: uint64(n)}
	return syscall.Setrlimit(rlimitNProc, &lim)
}

// loop waits in epoll_wait for signals, commands and the deadline. With
// nothing to do it sleeps with no timeout: no timers, no polling.
func (u *unit) loop(sigs int) int {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		u.killNow()
		return ExitNotExecutable
	}
	add := func(fd int) {
		syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}
	add(sigs)
	if !u.ctlGone {
		add(ctlFD)
	}
	var events [4]syscall.EpollEvent
	for !u.done {
		n, err := syscall.EpollWait(ep, events[:], u.timeout())
		if err != nil && err != syscall.EINTR {
			u.killNow()
			return ExitNotExecutable
		}
		for _, ev := range events[:max(n, 0)] {
			switch int(ev.Fd) {
			case sigs:
				u.onSignals(sigs)
			case ctlFD:
				u.onControl(ep)
			}
		}
		if u.deadline != 0 && monotonicMS() >= u.deadline {
			u.deadline = 0
			u.killing = true
		}
		u.settle()
	}
	if !u.ctlGone {
		report(ctlFD, MsgLeft+" "+itoa(int64(u.left)))
	}
	return 0
}

// settle reaps, kills another round when killing, and notices the end.
func (u *unit) settle() {
	empty := u.reapAll()
	if u.killing && !empty {
		u.walk(func(p pinned) { u.send(p, syscall.SIGKILL) })
		empty = u.reapAll()
	}
	if u.ending && empty {
		u.done = true
	}
}

// timeout is epoll_wait's: -1 (none) unless a stop deadline is set.
func (u *unit) timeout() int {
	if u.deadline == 0 {
		return -1
	}
	return int(max(u.deadline-monotonicMS(), 0))
}

// killNow is the last resort when the loop cannot go on: SIGKILL rounds
// until the unit is empty, blocking in wait4 between them.
func (u *unit) killNow() {
	u.ending, u.killing = true, true
	for !u.reapAll() {
		u.walk(func(p pinned) { u.send(p, syscall.SIGKILL) })
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &ws, 0, nil); err == nil && pid == u.main {
			u.mainExited(ws)
		}
	}
}
