//go:build linux

package reaper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Signals with a caller's rights (DESIGN.md §1.7: nobody gets more than he
// had). A non-root caller's job may hold processes that are no longer the
// caller's: a setuid program that set all its uids to another (su, sudo do).
// tend, as root, could signal them; the caller could not. So every signal
// tend sends to such a job is sent from one OS thread, made at New and locked
// to its goroutine for good, which for each signal switches its own uids with
// the raw per-thread setresuid(uid, uid, 0), signals, and switches back with
// setresuid(0, 0, 0). The kernel then decides exactly as for the caller
// (kill(2): the sender's real or effective uid must match the target's real
// or saved uid, or the sender needs CAP_KILL), never tend: no /proc scan by
// uid, which a setuid exec would race. A group signal reaches the group
// members the caller may signal and skips the rest; pidfd_send_signal(2)
// checks the calling thread's credentials in the same way.
//
// Why a thread of its own: syscall.Setresuid (and Setuid) change every
// thread of the process since Go 1.16 (they go through the runtime's
// AllThreadsSyscall); the raw system call changes only the calling thread,
// which must then run nothing else: a goroutine locked to it that never
// unlocks. A pool of several would buy nothing, since handle signals are
// serialised by the reap lock anyway; and a pool shared with slow work (path
// lookups on NFS) could hold up a kill made under that lock.
//
// Capabilities (capabilities(7), "Effect of user ID changes on
// capabilities"): when the effective uid leaves 0 the effective set is
// cleared, so CAP_KILL is gone while the caller's uid is in force; the
// permitted set stays, because the saved uid stays 0; when the effective uid
// returns to 0 the effective set is the permitted set again. After each
// restore the thread's uids and effective set are checked against what it
// had at start: a thread that is not fully root again is never used again
// (its goroutine exits still locked, and the runtime ends the thread with
// it), and later signals as a caller fail with ErrNoSignaller rather than be
// sent with any other rights.
//
// Lock order: the reap lock (Reaper.mu), then signaller.mu. The thread
// itself takes neither, so a signal made under the reap lock cannot deadlock
// with a reap pass.

// ErrNoSignaller is returned for a signal as a caller when there is no
// thread to send it with that caller's rights: the Reaper was made without
// Options.SignalAs, or its thread could not restore its credentials once.
// Nothing was sent.
var ErrNoSignaller = errors.New("no thread to signal with a caller's rights")

// signaller is the thread that sends signals as a caller.
type signaller struct {
	mu   sync.Mutex   // serialises requests (after Reaper.mu, if that is held)
	req  chan sigReq  // unbuffered: the thread takes one request at a time
	dead atomic.Bool  // set by the thread before its last answer
	tid  int          // the thread's id, read-only after newSignaller
	caps [2]uint32    // the thread's effective capabilities at start
	err  atomic.Value // error: why the thread was retired

	// setresuid is the raw per-thread system call; tests replace it
	// before the first request (the request's send orders the write).
	setresuid func(ruid, euid, suid int) error
	// drained counts signals sent to the thread itself while it had a
	// caller's uid, discarded (see serve); for tests.
	drained atomic.Uint64
}

// sigReq is one signal: kill(id, sig), or pidfd_send_signal(id, sig) when
// pidfd is set.
type sigReq struct {
	uid   int
	pidfd bool
	id    int
	sig   unix.Signal
	done  chan error // buffered: the thread never waits for the caller
}

// newSignaller makes the thread and waits until it runs.
func newSignaller() *signaller {
	s := &signaller{req: make(chan sigReq), setresuid: rawSetresuid}
	started := make(chan struct{})
	go s.start(started)
	<-started
	return s
}

// start locks a thread for run that is not the main thread. The main
// thread is the process's leader: kill(2) of tend's pid checks the leader's
// credentials, so while it had a caller's uid the caller could signal tend
// itself. A goroutine that finds itself locked to it keeps it occupied while
// run's goroutine takes another thread, and then lets it go: its
// credentials were never changed.
func (s *signaller) start(started chan<- struct{}) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		s.run(started)
		return
	}
	ready := make(chan struct{})
	go s.start(ready)
	<-ready
	runtime.UnlockOSThread()
	close(started)
}

func (s *signaller) run(started chan<- struct{}) {
	// Never unlocked: this thread's credentials change, and no other
	// goroutine may ever run on it. Threads the runtime makes while this
	// one is locked are cloned from its template thread, not from here.
	s.tid = unix.Gettid()
	s.caps, _ = effectiveCaps()
	close(started)
	for q := range s.req {
		err, ok := s.serve(q)
		if !ok {
			s.err.Store(err)
			s.dead.Store(true) // before the answer: the next caller sees it
			q.done <- err
			return // exits locked: the thread is destroyed, never reused
		}
		q.done <- err
	}
}

// serve sends one signal as q.uid; ok is false when the thread could not be
// made root again.
//
// While the thread has the caller's real uid the caller may signal this
// thread (tgkill(2) checks the target thread's credentials), so the window
// holds only raw system calls, with every signal blocked; once root again,
// what arrived for the thread alone meanwhile is taken off its queue
// unhandled (rt_sigtimedwait, thread-private signals first) before the mask
// is restored. Signals to tend's pid are checked against the main thread,
// which never changes credentials (start). SIGKILL and SIGSTOP cannot be
// blocked: as PID 1 of its namespace tend ignores them from inside it.
func (s *signaller) serve(q sigReq) (err error, ok bool) {
	all, old := ^uint64(0), uint64(0)
	if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); errno != 0 {
		return fmt.Errorf("rt_sigprocmask: %w", errno), true
	}
	if err := s.setresuid(q.uid, q.uid, 0); err != nil {
		// setresuid(2) changes all three or none; check all the same.
		if cerr := s.isRoot(); cerr != nil {
			return fmt.Errorf("setresuid(%d, %d, 0): %w; %w", q.uid, q.uid, err, cerr), false
		}
		s.unmask(old)
		return fmt.Errorf("setresuid(%d, %d, 0): %w", q.uid, q.uid, err), true
	}
	var errno unix.Errno
	if q.pidfd {
		_, _, errno = unix.RawSyscall6(unix.SYS_PIDFD_SEND_SIGNAL, uintptr(q.id), uintptr(q.sig), 0, 0, 0, 0)
	} else {
		_, _, errno = unix.RawSyscall(unix.SYS_KILL, uintptr(q.id), uintptr(q.sig), 0)
	}
	if errno != 0 {
		err = errno
	}
	if rerr := s.setresuid(0, 0, 0); rerr != nil {
		return errors.Join(err, fmt.Errorf("restore setresuid(0, 0, 0) after signalling as uid %d: %w", q.uid, rerr)), false
	}
	if cerr := s.isRoot(); cerr != nil {
		return errors.Join(err, fmt.Errorf("after signalling as uid %d: %w", q.uid, cerr)), false
	}
	s.drain()
	s.unmask(old)
	return err, true
}

// drain takes the signals pending for this thread alone (SigPnd of
// /proc/thread-self/status, not the process's ShdPnd) off its queue.
func (s *signaller) drain() {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return
	}
	i := bytes.Index(b, []byte("\nSigPnd:"))
	if i < 0 {
		return
	}
	f := bytes.Fields(b[i+len("\nSigPnd:"):])
	if len(f) == 0 {
		return
	}
	pnd, err := strconv.ParseUint(string(f[0]), 16, 64)
	if err != nil || pnd == 0 {
		return
	}
	var ts unix.Timespec // zero: do not wait
	var info [128]byte
	for sig := 1; sig <= 64; sig++ {
		set := uint64(1) << (sig - 1)
		if pnd&set == 0 {
			continue
		}
		// rt_sigtimedwait(2) dequeues the thread's private instance
		// before the process's shared one.
		if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGTIMEDWAIT, uintptr(unsafe.Pointer(&set)), uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&ts)), 8, 0, 0); errno == 0 {
			s.drained.Add(1)
		}
	}
}

func (s *signaller) unmask(old uint64) {
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
}

// isRoot checks that the thread has uids 0, 0, 0 and the effective
// capabilities it started with.
func (s *signaller) isRoot() error {
	var r, e, sv uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETRESUID, uintptr(unsafe.Pointer(&r)), uintptr(unsafe.Pointer(&e)), uintptr(unsafe.Pointer(&sv))); errno != 0 {
		return fmt.Errorf("getresuid: %w", errno)
	}
	if r != 0 || e != 0 || sv != 0 {
		return fmt.Errorf("the signalling thread has uids %d, %d, %d, not root's", r, e, sv)
	}
	caps, err := effectiveCaps()
	if err != nil {
		return err
	}
	if caps != s.caps {
		return fmt.Errorf("the signalling thread's effective capabilities are %#x%08x, not %#x%08x", caps[1], caps[0], s.caps[1], s.caps[0])
	}
	return nil
}

// send makes q's signal on the thread and returns its error, or why it
// could not be sent as q.uid (ErrNoSignaller wrapped).
func (s *signaller) send(q sigReq) error {
	if s == nil {
		return fmt.Errorf("signal as uid %d: %w", q.uid, ErrNoSignaller)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead.Load() {
		return fmt.Errorf("signal as uid %d: %w (retired: %v)", q.uid, ErrNoSignaller, s.err.Load())
	}
	q.done = make(chan error, 1)
	s.req <- q
	return <-q.done
}

// close ends the thread once it is idle (tests; tend's lives as long as it).
func (s *signaller) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dead.Load() {
		s.dead.Store(true)
		s.err.Store(errors.New("closed"))
		close(s.req)
	}
}

// rawSetresuid is setresuid(2) for the calling thread only: the raw system
// call, not syscall.Setresuid, which the runtime applies to every thread.
func rawSetresuid(ruid, euid, suid int) error {
	_, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(ruid), uintptr(euid), uintptr(suid))
	if errno != 0 {
		return errno
	}
	return nil
}

// effectiveCaps is the calling thread's effective capability set (capget(2),
// version 3: two 32-bit words).
func effectiveCaps() ([2]uint32, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: this thread
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return [2]uint32{}, fmt.Errorf("capget: %w", err)
	}
	return [2]uint32{data[0].Effective, data[1].Effective}, nil
}
