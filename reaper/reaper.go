//go:build linux

// Package reaper owns wait4. Its Run goroutine is the only caller of
// wait4(-1) in the process: it reaps every child that exits, hands each exit
// to whoever registered that pid, and counts the rest as orphans. Starting a
// child and registering its pid happen under the same lock as each reap pass,
// so no exit can arrive before its owner is known (DESIGN.md §1.2).
//
// Nothing else in tend may wait for a child: exec.Cmd.Wait, os.Process.Wait or
// a second wait4 would steal exits from this package. Never add __WALL or
// __WCLONE: the Go runtime's own pidfd probe child would be stolen.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrNotRunning is returned when a pid is signalled that is not registered
// or already reaped: its number may belong to someone else by now.
var ErrNotRunning = errors.New("process not running")

// Exit is one reaped child.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
}

const exitSignalOffset = 128

// Code is the exit status a shell would report: the exit code, or 128+N when
// the child died of signal N.
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return exitSignalOffset + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

// String describes the exit for logs.
func (e Exit) String() string {
	if e.Status.Signaled() {
		s := fmt.Sprintf("pid %d killed by %v", e.Pid, e.Status.Signal())
		if e.Status.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("pid %d exited with code %d", e.Pid, e.Status.ExitStatus())
}

// Reaper is the pid table and the lock that guards it. The zero value is not
// usable; call New.
type Reaper struct {
	mu     sync.Mutex
	owners map[int]func(Exit) // guarded by mu; pid -> who gets its exit

	orphan  func(Exit) // called for exits nobody registered; may be nil
	orphans atomic.Uint64
	reaped  atomic.Uint64

	// empty gets a token after each reap pass that ended with ECHILD: at
	// that moment tend had no child at all, hence no descendant.
	empty chan struct{}

	// delivering is set (under mu) while the exits of a pass are being
	// handed out: until they are, NoChildren must not report the tree gone,
	// or tend could exit before an owner or the -w log saw the last exit.
	delivering atomic.Bool

	// wait4 is unix.Wait4; tests replace it.
	wait4 func(pid int, ws *unix.WaitStatus, options int, ru *unix.Rusage) (int, error)
	batch []delivery      // reused by Reap; only the reaping goroutine touches it
	ws    unix.WaitStatus // likewise: a local would escape through r.wait4
}

type delivery struct {
	owner func(Exit)
	exit  Exit
}

// New returns a Reaper. orphan, if not nil, is called on the reaping
// goroutine for each exit whose pid nobody registered; it must not block.
func New(orphan func(Exit)) *Reaper {
	return &Reaper{
		owners: make(map[int]func(Exit)),
		orphan: orphan,
		empty:  make(chan struct{}, 1),
		wait4:  unix.Wait4,
	}
}

// Start calls start, which must create exactly one child and return its pid,
// and registers owner for that pid, all under the reap lock: the child cannot
// be reaped before it is registered. owner is called once, on the reaping
// goroutine and outside the lock, when the child exits; it must not block for
// long and must never call Reap.
//
// start runs under the lock because os.StartProcess and syscall.ForkExec
// wait4 their own child when its exec fails; a concurrent wait4(-1) would
// otherwise steal that status.
func (r *Reaper) Start(start func() (int, error), owner func(Exit)) (int, error) {
	if owner == nil {
		panic("reaper: Start with a nil owner")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, err
	}
	r.owners[pid] = owner
	return pid, nil
}

// Signal sends sig to pid if pid is registered and not yet reaped, so it can
// never reach a process that recycled the number. It returns ErrNotRunning
// otherwise. With group set it signals the process group led by pid, which
// exists at least as long as its unreaped leader.
func (r *Reaper) Signal(pid int, sig unix.Signal, group bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.owners[pid]; !ok {
		return ErrNotRunning
	}
	target := pid
	if group {
		target = -pid
	}
	if err := unix.Kill(target, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// Running reports whether pid is registered and not yet reaped.
func (r *Reaper) Running(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.owners[pid]
	return ok
}

// Reap collects every child that has exited, looping wait4(-1, WNOHANG) until
// it reports 0 (children left, none exited) or ECHILD (no children), because
// SIGCHLD coalesces. Exits are delivered after the lock is released. Only the
// goroutine in Run may call it.
func (r *Reaper) Reap() int {
	batch := r.batch[:0]
	noChildren := false
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
		owner := r.owners[pid]
		delete(r.owners, pid)
		batch = append(batch, delivery{owner, Exit{Pid: pid, Status: r.ws}})
	}
	if len(batch) > 0 {
		r.delivering.Store(true)
	}
	r.mu.Unlock()

	for i, d := range batch {
		if d.owner != nil {
			d.owner(d.exit)
		} else {
			r.orphans.Add(1)
			if r.orphan != nil {
				r.orphan(d.exit)
			}
		}
		batch[i] = delivery{} // drop the closure so its captures can be freed
	}
	r.reaped.Add(uint64(len(batch)))
	r.batch = batch[:0]
	r.delivering.Store(false)
	if noChildren {
		select {
		case r.empty <- struct{}{}:
		default:
		}
	}
	return len(batch)
}

// Run is the reaping goroutine: it reaps once (children may have exited
// before SIGCHLD was notified), then on every SIGCHLD, until ctx ends. No
// timer, no polling: an idle tend sleeps here.
func (r *Reaper) Run(ctx context.Context, sigchld <-chan os.Signal) {
	r.Reap()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigchld:
			r.Reap()
		}
	}
}

// Empty receives a token after a reap pass found no child left. It may be
// stale by the time it is read: confirm with NoChildren.
func (r *Reaper) Empty() <-chan struct{} { return r.empty }

// NoChildren reports whether tend has no child at all, alive or zombie,
// without reaping anything (WNOWAIT), and every exit reaped so far has been
// delivered. Having no child means having no descendant: an orphaned
// grandchild becomes tend's child the moment its parent dies.
func (r *Reaper) NoChildren() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.delivering.Load() {
		return false // Reap sends an Empty token once it has delivered
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return errors.Is(err, unix.ECHILD)
	}
}

// Orphans is the number of reaped exits that nobody had registered.
func (r *Reaper) Orphans() uint64 { return r.orphans.Load() }

// Reaped is the number of children reaped in all.
func (r *Reaper) Reaped() uint64 { return r.reaped.Load() }
