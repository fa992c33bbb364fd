//go:build linux

package reaper

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Child is the handle of one registered child: the only way to signal it.
// Only the loop that started it may use a Child (DESIGN.md §1.9): it signals
// through it, reads its Exit, and releases it.
type Child struct {
	r     *Reaper
	pid   int
	owner any // set at Start, never changed

	// pidfd refers to this process and no other, whatever its number
	// becomes; -1 when there is none. It belongs to the loop: used
	// without the lock, closed by Release once the exit is handled.
	pidfd int

	reaped bool // guarded by r.mu: the exit was collected, the number is free

	// as is the uid whose rights every signal through this handle carries
	// (Reaper.PidfdSignalAs); 0: tend's own. Set by the loop before its first signal.
	as int
}

// SignalAs makes every later signal through c (Signal, SignalGroup,
// SignalTree) carry uid's rights instead of tend's: it reaches only what a
// process of uid could signal itself (DESIGN.md §1.7). 0 means tend's own
// rights. Only the loop calls it, before it first signals c.
func (c *Child) SignalAs(uid int) { c.as = uid }

// Pid is the child's pid, as a number for logs and the API. Never signal or
// compare it: use the handle.
func (c *Child) Pid() int { return c.pid }

// Owner is what was registered with the child at Start.
func (c *Child) Owner() any { return c.owner }

// PidFD is the child's pidfd, or -1. It is valid until Release.
func (c *Child) PidFD() int { return c.pidfd }

// Signal sends sig to the child, as long as it has not been reaped; after
// that it returns ErrNotRunning. Through the pidfd where there is one (the
// kernel then refuses a reaped process itself), else with kill(2) under the
// reap lock while this registration is live: a zombie keeps its number until
// it is reaped, and the reap pass takes the same lock to mark it reaped.
//
// With SignalAs the signal is sent from the signalling thread as that uid:
// pidfd_send_signal(2) checks the calling thread's credentials as kill(2)
// does, and EPERM says the child is no longer the caller's to signal.
func (c *Child) Signal(sig unix.Signal) error {
	if c.pidfd >= 0 && !c.r.noPidfdSignal.Load() {
		err := c.r.PidfdSignalAs(c.as, c.pidfd, sig)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ESRCH):
			return ErrNotRunning
		case errors.Is(err, unix.ENOSYS):
			c.r.noPidfdSignal.Store(true) // seccomp: the registry rule it is
		default:
			return err
		}
	}
	return c.kill(c.pid, sig)
}

// SignalGroup sends sig to the process group the child leads. The group's
// number is the leader's pid, which nobody else can get while the leader is
// unreaped, so this too is refused once the child has been reaped: after
// that only the unit tracking may reach what is left of the group.
func (c *Child) SignalGroup(sig unix.Signal) error { return c.kill(-c.pid, sig) }

// kill signals target (pid or -pgid) while c is registered and unreaped,
// with the rights of c's uid (SignalAs): the reap lock is held across the
// hand-off to the signalling thread, which takes no lock itself. A group
// signal as a caller skips the members the caller may not signal; EPERM
// means there was none it could.
func (c *Child) kill(target int, sig unix.Signal) error {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if c.reaped {
		return ErrNotRunning
	}
	if err := c.r.killAs(c.as, target, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			// A live group leader has a group; ESRCH here means it is a
			// zombie whose group has emptied. It has exited all the same.
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// Reaped reports whether the child's exit has been collected.
func (c *Child) Reaped() bool {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	return c.reaped
}

// Release closes the child's pidfd. The loop calls it once it has handled
// the child's Exit, so that records kept for long hold no fd. Closing a
// pidfd never blocks. Calling it again does nothing.
func (c *Child) Release() {
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
}

// OpenPidFD returns a new pidfd of the child (close-on-exec), for a caller
// to keep: a duplicate of its own pidfd, else pidfd_open(2) under the reap
// lock while this registration is live (the number cannot be another's
// then). ErrNotRunning once reaped; ENOSYS or EPERM where seccomp refuses.
// A pidfd of a child tend reaps is readable when it exits and can signal
// it, but waitid on it fails: tend stays the only reaper.
func (c *Child) OpenPidFD() (int, error) {
	if c.pidfd >= 0 {
		return unix.FcntlInt(uintptr(c.pidfd), unix.F_DUPFD_CLOEXEC, 3)
	}
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if c.reaped {
		return -1, ErrNotRunning
	}
	return unix.PidfdOpen(c.pid, 0) // pidfds are always close-on-exec
}
