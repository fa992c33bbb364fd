//go:build linux

// Package reaper owns wait4 and the table of tend's children. Its Run
// goroutine is the only caller of wait4(-1) in the process: it reaps every
// child that exits, queues the exit of each registered child for the one
// loop that owns them (supervisor), and counts the rest as orphans. Starting
// a child and registering it happen under the same lock as each reap pass,
// so no exit can arrive before its owner is known (DESIGN.md §1.2).
//
// A registered child is a *Child, a handle: signals go through it and only
// while that registration is live (DESIGN.md §1.3). A zombie keeps its pid
// until it is reaped, and the reap pass marks the handle reaped under the
// same lock as kill(2) is issued, so a signal through a handle can never
// reach a process that recycled the number. Whose exit it is comes from the
// handle, never from comparing pid numbers.
//
// Nothing else in tend may wait for a child: exec.Cmd.Wait, os.Process.Wait
// or a second wait4 would steal exits from this package. Never add __WALL or
// __WCLONE: the Go runtime's own pidfd probe child would be stolen. Under the
// lock only fork+exec and the registration run: path lookups, closing fds
// and any other call that can block happen before Start or after it.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/signals"
)

// ErrNotRunning is returned when a child is signalled whose exit has been
// reaped: its number may belong to someone else by now.
var ErrNotRunning = errors.New("process not running")

// Exit is one reaped child. Child is nil for an orphan: a process nobody
// registered (a reparented grandchild, a `docker exec` leftover).
type Exit struct {
	Child  *Child
	Pid    int
	Status unix.WaitStatus
}

const exitSignalOffset = 128

// Code is the exit status a shell would report: the exit code, or 128+N when
// the child died of signal N.
func (e Exit) Code() int { return Code(e.Status) }

// Code is the exit status a shell would report for ws.
func Code(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return exitSignalOffset + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Describe says how ws ended, for logs: "exited with code 3", "killed by
// SIGTERM", "killed by SIGSEGV (core dumped)".
func Describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		s := "killed by " + signals.Name(ws.Signal())
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("exited with code %d", ws.ExitStatus())
}

// String describes the exit for logs.
func (e Exit) String() string { return fmt.Sprintf("pid %d %s", e.Pid, Describe(e.Status)) }

// Options configure a Reaper.
type Options struct {
	// Orphan, if not nil, is called on the reaping goroutine, outside the
	// lock, for each exit nobody registered. It must not block.
	Orphan func(pid int, ws unix.WaitStatus)
	// PidFDs asks for a pidfd per child (clone's CLONE_PIDFD) where the
	// kernel gives one: a signal to that child then needs no lock. The
	// registry rule is the fallback and works alone.
	PidFDs bool
	// SignalAs makes, now, the OS thread that sends signals with a
	// caller's rights (Child.SignalAs, Reaper.As; see caller.go). It needs
	// tend to be root; without it a signal as a caller fails with
	// ErrNoSignaller and nothing is sent.
	SignalAs bool

	// Wait4 and Kill replace unix.Wait4 and unix.Kill, for tests of the
	// code above the reaper; nil means the real ones.
	Wait4 func(pid int, ws *unix.WaitStatus, options int, ru *unix.Rusage) (int, error)
	Kill  func(pid int, sig unix.Signal) error
	// NoChildren replaces the waitid(WNOWAIT) probe of Idle.
	NoChildren func() bool
}

// Reaper is the child table and the lock that guards it. The zero value is
// not usable; call New.
type Reaper struct {
	mu       sync.Mutex
	children map[int]*Child // guarded by mu; registered and not yet reaped
	exits    []Exit         // guarded by mu; reaped, not yet taken by the loop
	pidfds   bool           // read-only after New

	// ready gets a token when exits are queued or a reap pass found no
	// child at all; the loop then takes them (TakeExits) or checks Idle.
	ready chan struct{}
	// started gets a token at each Start: Run, told by waitid that tend
	// has no child, waits for one (or for SIGCHLD) before it blocks again.
	started chan struct{}
	// blocking: Run waits for exits in waitid(2) on a thread of its own;
	// false when Options.Wait4 replaces the kernel (tests), then Run
	// reaps on SIGCHLD alone.
	blocking bool

	orphan  func(pid int, ws unix.WaitStatus)
	orphans atomic.Uint64
	reaped  atomic.Uint64

	// noPidfdSignal is set once pidfd_send_signal failed with ENOSYS (a
	// seccomp filter): handles then signal under the lock.
	noPidfdSignal atomic.Bool

	// sg sends signals with a caller's rights; nil without
	// Options.SignalAs. Read-only after New.
	sg *signaller

	// wait4 is unix.Wait4; tests replace it. kill is unix.Kill.
	wait4      func(pid int, ws *unix.WaitStatus, options int, ru *unix.Rusage) (int, error)
	kill       func(pid int, sig unix.Signal) error
	noChildren func() bool
	orphs      []Exit          // reused by Reap; only the reaping goroutine touches it
	ws         unix.WaitStatus // likewise: a local would escape through r.wait4
	starts     atomic.Uint64   // Start calls, for tests
}

// New returns a Reaper.
func New(o Options) *Reaper {
	r := &Reaper{
		children: make(map[int]*Child),
		pidfds:   o.PidFDs,
		ready:    make(chan struct{}, 1),
		started:  make(chan struct{}, 1),
		blocking: o.Wait4 == nil,
		orphan:   o.Orphan,
		wait4:    unix.Wait4,
		kill:     unix.Kill,
	}
	if o.Wait4 != nil {
		r.wait4 = o.Wait4
	}
	if o.Kill != nil {
		r.kill = o.Kill
	}
	r.noChildren = o.NoChildren
	if o.SignalAs {
		r.sg = newSignaller()
	}
	if r.noChildren == nil {
		r.noChildren = noChildren
	}
	return r
}

// PidfdSignalAs is pidfd_send_signal(fd, sig) with uid's rights: from the
// signalling thread, whose real and effective uid are uid for that one call
// (its saved uid stays 0; see caller.go). uid 0 sends it here, as tend. The
// error is the call's (EPERM: not uid's to signal), or why it could not be
// made as uid (ErrNoSignaller wrapped, or the failed setresuid).
func (r *Reaper) PidfdSignalAs(uid, fd int, sig unix.Signal) error {
	if uid == 0 {
		return unix.PidfdSendSignal(fd, sig, nil, 0)
	}
	return r.sg.send(sigReq{uid: uid, pidfd: true, id: fd, sig: sig})
}

// killAs is kill(target, sig) with uid's rights, as PidfdSignalAs; uid 0
// is r.kill. The caller holds r.mu for a pid's sake; the thread takes no
// lock.
func (r *Reaper) killAs(uid, target int, sig unix.Signal) error {
	if uid == 0 {
		return r.kill(target, sig)
	}
	return r.sg.send(sigReq{uid: uid, id: target, sig: sig})
}

// Close ends the signalling thread, if any; the Reaper must not signal as a
// caller after. tend's Reaper lives as long as tend; tests close theirs.
func (r *Reaper) Close() {
	if r.sg != nil {
		r.sg.close()
	}
}

// Start calls start, which must create exactly one child and return its pid,
// and registers it with owner, all under the reap lock: the child cannot be
// reaped before it is registered. owner is whatever the caller needs to
// tell whose child it is when its Exit comes back (Child.Owner).
//
// start gets a pointer to place in syscall.SysProcAttr.PidFD, or nil when
// pidfds are off. It runs under the lock because os.StartProcess and
// syscall.ForkExec wait4 their own child when its exec fails; a concurrent
// wait4(-1) would otherwise steal that status. It must do nothing else that
// can block: resolve paths and open files before.
func (r *Reaper) Start(start func(pidfd *int) (int, error), owner any) (*Child, error) {
	c := &Child{r: r, owner: owner, pidfd: -1}
	var pidfd *int
	if r.pidfds {
		pidfd = &c.pidfd
	}
	r.starts.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start(pidfd)
	if err != nil {
		return nil, err
	}
	c.pid = pid
	r.children[pid] = c
	select {
	case r.started <- struct{}{}:
	default:
	}
	return c, nil
}

// Reap collects every child that has exited, looping wait4(-1, WNOHANG) until
// it reports 0 (children left, none exited) or ECHILD (no children), because
// SIGCHLD coalesces. Exits of registered children are queued for TakeExits;
// orphans are counted and handed to Options.Orphan after the lock is
// released. Only the goroutine in Run may call it.
func (r *Reaper) Reap() int {
	orphs := r.orphs[:0]
	queued, noChildren := 0, false
	r.mu.Lock()
	for {
		pid, err := r.wait4(-1, &r.ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: nothing left to wait for
			noChildren = true
			break
		}
		if pid <= 0 {
			break
		}
		if c := r.children[pid]; c != nil {
			delete(r.children, pid)
			c.reaped = true // from now on the number is not this handle's
			r.exits = append(r.exits, Exit{Child: c, Pid: pid, Status: r.ws})
			queued++
		} else {
			orphs = append(orphs, Exit{Pid: pid, Status: r.ws})
		}
	}
	r.mu.Unlock()

	for _, e := range orphs {
		r.orphans.Add(1)
		if r.orphan != nil {
			r.orphan(e.Pid, e.Status)
		}
	}
	n := queued + len(orphs)
	r.reaped.Add(uint64(n))
	r.orphs = orphs[:0]
	if queued > 0 || noChildren {
		select {
		case r.ready <- struct{}{}:
		default: // a token is pending: the loop will see these too
		}
	}
	return n
}

// Run is the reaping goroutine until ctx ends. It reaps once (children may
// have exited before it started), then whenever a child has exited. No
// timer, no polling: an idle tend sleeps here. It never forks.
//
// It learns of exits from the kernel directly: it blocks in
// waitid(P_ALL, WEXITED|WNOWAIT) on an OS thread of its own, which returns
// as soon as any child (a registered one or an orphan) is a zombie,
// without reaping it; Reap then reaps under the lock. WNOWAIT is what
// keeps this right beside Start: a child whose exec fails is waited for
// by Start itself, under the lock, and a waitid that sees it first has
// taken nothing. Against the hand-offs of SIGCHLD (the runtime's signal
// goroutine, os/signal's, then this one) it saves two goroutine
// switches per exit (docs/BENCHMARKS.md).
//
// waitid fails with ECHILD at once when tend has no child at all; Run
// then waits for a Start or for SIGCHLD (an orphan reparented to tend
// is not announced: its exit is, by SIGCHLD, since the kernel sets its
// exit signal to SIGCHLD) before it blocks again. So every exit is reaped
// by one of the two, and sigchld must be notified of SIGCHLD throughout.
//
// A Run blocked in waitid ends only when a child exits: the caller must
// not wait for it without a bound (tend at its exit may leave a process
// that never ends, in D state).
func (r *Reaper) Run(ctx context.Context, sigchld <-chan os.Signal) {
	r.Reap()
	if !r.blocking {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigchld:
				r.Reap()
			}
		}
	}
	// Locked: a thread blocked in a syscall is this goroutine's alone, and
	// the runtime runs every other goroutine elsewhere meanwhile.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for ctx.Err() == nil {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOWAIT, nil)
		switch {
		case errors.Is(err, unix.EINTR):
		case err == nil && r.Reap() > 0:
		default:
			// ECHILD: no child; or a zombie that wait4 does not report
			// (never seen; waiting here keeps it from being a spin).
			select {
			case <-ctx.Done():
				return
			case <-sigchld:
				r.Reap()
			case <-r.started:
			}
		}
	}
}

// Ready receives a token when exits are queued, or when a reap pass found
// that tend had no child left. The token may be stale: take what is there.
func (r *Reaper) Ready() <-chan struct{} { return r.ready }

// TakeExits appends the queued exits to buf, oldest first, and empties the
// queue. Only the loop that owns the children calls it.
func (r *Reaper) TakeExits(buf []Exit) []Exit {
	r.mu.Lock()
	defer r.mu.Unlock()
	buf = append(buf, r.exits...)
	clear(r.exits) // the handles may be freed once the loop drops them
	r.exits = r.exits[:0]
	return buf
}

// Idle reports whether tend has no child at all, alive or zombie (asked
// without reaping: WNOWAIT), and no exit waits in the queue. Having no child
// means having no descendant: an orphaned grandchild becomes tend's child the
// moment its parent dies.
func (r *Reaper) Idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.exits) == 0 && r.noChildren()
}

// noChildren asks the kernel, without reaping, whether tend has a child.
func noChildren() bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return errors.Is(err, unix.ECHILD)
	}
}

// Live is the number of registered children not yet reaped.
func (r *Reaper) Live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.children)
}

// Orphans is the number of reaped exits that nobody had registered.
func (r *Reaper) Orphans() uint64 { return r.orphans.Load() }

// Reaped is the number of children reaped in all.
func (r *Reaper) Reaped() uint64 { return r.reaped.Load() }
