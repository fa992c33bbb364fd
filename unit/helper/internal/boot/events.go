//go:build linux

package boot

import (
	"syscall"
	"unsafe"
)

// onSignals handles the signals the relay passed on. SIGCHLD only wakes
// the loop (settle reaps after every event); TTIN and TTOU are dropped, as
// tend drops them; every other one goes to the main process while it is
// unreaped, as tini forwards to its child.
func (u *unit) onSignals(r int) {
	var buf [64]byte
	for {
		n, err := syscall.Read(r, buf[:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return // EAGAIN: drained
		}
		for _, b := range buf[:n] {
			switch sig := syscall.Signal(b); sig {
			case syscall.SIGCHLD, syscall.SIGTTIN, syscall.SIGTTOU:
			default:
				if u.main > 0 {
					syscall.Kill(u.main, sig)
				}
			}
		}
	}
}

// onControl reads one command from tend. EOF, or an error other than a
// spurious wake-up, means tend is gone.
func (u *unit) onControl(ep int) {
	buf := make([]byte, MaxMessage)
	n, _, err := syscall.Recvfrom(ctlFD, buf, syscall.MSG_DONTWAIT)
	if err == syscall.EINTR || err == syscall.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, ctlFD, nil)
		u.onEOF()
		return
	}
	c, ok := parseCommand(buf[:n])
	if !ok {
		return
	}
	switch c.verb {
	case CmdSignal:
		if u.main > 0 {
			syscall.Kill(u.main, c.sig)
		}
	case CmdTree:
		u.signalTree(c.sig)
	case CmdStop:
		u.stop(c.sig, c.timeout)
	case CmdKill:
		// Everything dies in the same round, so what is found at the
		// main's reap depends on wait4's order; the leftovers are the
		// members other than the main when the kill came.
		if u.main > 0 && !u.killing {
			u.left, u.leftSet = max(u.count()-1, 0), true
		}
		u.ending, u.killing = true, true
	case CmdCount:
		u.reply(MsgCount + " " + itoa(int64(u.count())))
	}
}

// stop sends sig to the whole unit and sets the SIGKILL deadline (a later
// stop moves it); the helper exits once the unit is empty.
func (u *unit) stop(sig syscall.Signal, timeoutMS int64) {
	u.ending = true
	if u.killing {
		return
	}
	if sig != 0 {
		u.signalTree(sig)
	}
	if timeoutMS == 0 {
		u.killing = true
		return
	}
	u.deadline = monotonicMS() + timeoutMS
}

// onEOF: tend died or closed the socket. Nobody is left to decide, so
// nothing of the unit may outlive it.
func (u *unit) onEOF() {
	u.ctlGone = true
	u.ending, u.killing = true, true
}

func (u *unit) reply(msg string) {
	if !u.ctlGone && !report(ctlFD, msg) {
		u.onEOF()
	}
}

// reapAll reaps every exited child (wait4(-1, WNOHANG) until 0 or ECHILD:
// signals coalesce) and reports whether the unit is empty (ECHILD: as their
// subreaper, the helper is the ancestor of every member).
func (u *unit) reapAll() (empty bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.ECHILD:
			return true
		case err != nil, pid == 0:
			return false
		}
		if pid == u.main {
			u.mainExited(ws)
		}
	}
}

// mainExited reports the raw wait status (never re-raised on the helper:
// that would dump the helper's core and lose the command's core flag), and
// starts the end of the unit as its kill mode says.
func (u *unit) mainExited(ws syscall.WaitStatus) {
	u.main = 0
	u.reply(MsgExit + " " + itoa(int64(ws)))
	if u.ending {
		if !u.leftSet {
			u.left = u.count()
		}
		return // stop, kill or EOF already decided
	}
	u.ending = true
	if u.o.mainOnly {
		u.done = true // left 0: nothing is killed; the rest reparent to tend
		return
	}
	if u.left = u.count(); u.left > 0 {
		u.stop(u.o.stopSig, u.o.stopTimeout)
	}
}

// monotonicMS reads CLOCK_MONOTONIC in milliseconds (clock_gettime(2); the
// time package is not among boot's imports).
func monotonicMS() int64 {
	const clockMonotonic = 1
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	return int64(ts.Sec)*1000 + int64(ts.Nsec)/1e6
}
