//go:build linux

// Package blocking runs the system calls that can block for long (path
// lookups, stat and open of a caller's paths, user database reads, closing
// fds a caller passed) on a fixed number of OS threads made at start, each
// locked to its goroutine for good. No caller can then make tend create
// threads (the Go runtime aborts the whole process when it cannot create
// one, DESIGN.md §1.10), and no such call runs on the loop, on the reaper or
// under their locks (§1.9): a hung NFS or FUSE path costs one worker, once,
// never a reap.
//
// A Pool call may run as another user for the filesystem: the worker thread
// switches its own fsuid, fsgid and supplementary groups with raw per-thread
// system calls (setfsuid(2), setfsgid(2), the raw setgroups(2)); never
// syscall.Setuid or syscall.Setgroups, which change every thread of tend.
// Path lookups for a caller's job are thereby made with the caller's rights
// (§1.7). A thread whose credentials cannot be restored is never used again:
// its goroutine exits locked, and the runtime ends the thread with it.
package blocking

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrBusy is returned when every worker stayed busy until the deadline.
var ErrBusy = errors.New("every worker is busy")

// ErrTimeout is returned when the call did not finish before the deadline;
// it may still finish later, on its worker.
var ErrTimeout = errors.New("did not finish in time")

// Pool is a fixed set of worker threads. The zero value is not usable.
type Pool struct {
	name  string
	work  chan *task // unbuffered: a send succeeds only when a worker is free
	alive atomic.Int32
	here  chan struct{} // permits of Here: how many callers may block in it at once
	n     int
	start sync.Once
	// become switches a worker's identity (the function become); a test
	// may replace it before the first Do or Start.
	become func(cred *syscall.Credential) error
}

type task struct {
	cred *syscall.Credential
	fn   func()
	done chan error // buffered: the worker never waits for the caller
}

// New returns a pool of n workers; Start makes their threads.
func New(name string, n int) *Pool {
	return &Pool{name: name, work: make(chan *task), here: make(chan struct{}, n), n: n, become: become}
}

// Start makes the workers' threads, and as many spare ones for Here, now:
// call it before anyone who is not tend can use the pool (tend: before the
// control socket serves). Do starts them itself if it must. Calling it
// again does nothing.
func (p *Pool) Start() {
	p.start.Do(func() {
		started := make(chan struct{})
		for range p.n {
			p.alive.Add(1)
			go p.worker(started)
			<-started // the thread exists before Start returns
		}
		spareThreads(p.n)
	})
}

// Here runs fn on the calling goroutine, as tend, once one of the pool's
// permits is free (or fails when ctx ends first). It spares the hand-off to
// a worker thread where no identity changes; at most as many callers as the
// pool has workers can be blocked in it, each holding one OS thread, and
// New has made that many spare threads already.
func (p *Pool) Here(ctx context.Context, fn func()) error {
	select {
	case p.here <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", p.name, ErrBusy)
	}
	defer func() { <-p.here }()
	return run(fn)
}

// spareThreads makes the Go runtime start n more OS threads now, at start,
// where creating one cannot fail: n goroutines block in a system call at
// once, so the scheduler hands their processors to new threads, which stay
// idle afterwards (the runtime never ends an idle thread). A caller that
// later blocks in Here takes one of them instead of making one, perhaps at
// the pids limit, where the runtime would abort.
func spareThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := unix.Timespec{Nsec: 20e6} // long enough for sysmon to retake the P
			syscall.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		}()
	}
	wg.Wait()
}

// Close ends the workers once they are idle; Do must not be called after.
// tend's pools live as long as tend; tests close theirs.
func (p *Pool) Close() {
	p.start.Do(func() {}) // a pool never started has nothing to end
	close(p.work)
}

// Size is the number of workers still usable.
func (p *Pool) Size() int { return int(p.alive.Load()) }

// Do runs fn on a worker, as cred for the filesystem (nil: as tend), and
// waits for it until ctx ends. When Do returns an error fn may still be
// running or about to run: it must publish its results only through what it
// owns (a buffered channel, say), never through the caller's variables.
func (p *Pool) Do(ctx context.Context, cred *syscall.Credential, fn func()) error {
	p.Start()
	if p.alive.Load() == 0 {
		return fmt.Errorf("%s: no worker left", p.name)
	}
	t := &task{cred: cred, fn: fn, done: make(chan error, 1)}
	select {
	case p.work <- t:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", p.name, ErrBusy)
	}
	select {
	case err := <-t.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", p.name, ErrTimeout)
	}
}

func (p *Pool) worker(started chan<- struct{}) {
	// Never unlocked: this thread's credentials are changed, and no other
	// goroutine may ever run on it.
	runtime.LockOSThread()
	started <- struct{}{}
	var cur *syscall.Credential // the identity this thread has now; nil: tend's
	for t := range p.work {
		// The thread keeps the last identity while idle (nothing else
		// ever runs on it), so a run of calls as one caller switches once.
		if !same(cur, t.cred) {
			if err := p.become(t.cred); err != nil {
				if rerr := p.become(nil); rerr != nil {
					t.done <- errors.Join(err, rerr)
					p.alive.Add(-1)
					return // exits locked: the thread is destroyed, never reused
				}
				cur = nil
				t.done <- err
				continue
			}
			cur = t.cred
		}
		t.done <- run(t.fn)
	}
}

// same reports whether a and b are the same filesystem identity.
func same(a, b *syscall.Credential) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Uid == b.Uid && a.Gid == b.Gid && slices.Equal(a.Groups, b.Groups)
}

// run calls fn and turns a panic into an error: PID 1 never dies of one.
func run(fn func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	fn()
	return nil
}

// become switches this thread's filesystem identity to cred, or back to
// tend's own (uid and gid 0, no supplementary groups, as PID 1 runs) for
// nil. setfsuid(2) reports no error: it returns the previous value, so the
// switch is checked by reading the value back.
func become(cred *syscall.Credential) error {
	if self.uid != 0 {
		// A non-root tend cannot change identity and runs everything as
		// itself; asking for anyone else is a bug of the caller.
		if cred == nil || (int(cred.Uid) == self.uid && int(cred.Gid) == self.gid) {
			return nil
		}
		return fmt.Errorf("tend runs as uid %d: cannot act as uid %d: %w", self.uid, cred.Uid, unix.EPERM)
	}
	uid, gid, groups := self.uid, self.gid, self.groups
	if cred != nil {
		uid, gid = int(cred.Uid), int(cred.Gid)
		groups = make([]int, len(cred.Groups))
		for i, g := range cred.Groups {
			groups[i] = int(g)
		}
	}
	// Groups first, while the thread may still change them: setgroups
	// needs CAP_SETGID, which a non-zero fsuid does not remove, but keep
	// the order that is right for a general credential switch.
	if err := unix.Setgroups(groups); err != nil { // x/sys: this thread only
		return fmt.Errorf("setgroups: %w", err)
	}
	unix.Setfsgid(gid)
	unix.Setfsuid(uid)
	if got, _ := unix.SetfsuidRetUid(-1); got != uid {
		return fmt.Errorf("setfsuid(%d): still %d", uid, got)
	}
	if got, _ := unix.SetfsgidRetGid(-1); got != gid {
		return fmt.Errorf("setfsgid(%d): still %d", gid, got)
	}
	return nil
}

// self is tend's own identity, read once: what a worker goes back to.
var self = func() (s struct {
	uid, gid int
	groups   []int
}) {
	s.uid, s.gid = unix.Geteuid(), unix.Getegid()
	s.groups, _ = unix.Getgroups()
	if s.groups == nil {
		s.groups = []int{}
	}
	return s
}()
