//go:build linux

// Package outlet writes to tend's own stdout and stderr without ever
// blocking the writer and without ever raising SIGPIPE.
//
// tend catches SIGPIPE to forward it, and the kernel's SIGPIPE for a write to
// a broken pipe looks exactly like one sent with kill (si_code SI_USER, see
// runtime/signal_unix.go), so a SIGPIPE that tend's own log write raised
// would be forwarded to the main process and kill it. An Outlet therefore
// writes from one OS thread that keeps SIGPIPE blocked: the kernel's SIGPIPE
// stays pending on that thread, never delivered, and the write just fails
// with EPIPE. The writes are raw write(2) calls, not os.File ones, which
// would raise SIGPIPE themselves on EPIPE for fds 1 and 2 (os.epipecheck).
//
// Writers never wait for the destination: Write queues a copy and returns;
// when the queue is full (a stalled terminal, a pipe nobody reads) the bytes
// are dropped and counted. Only the outlet's thread may block, in write(2).
package outlet

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultQueueBytes bounds what waits for a slow destination.
const DefaultQueueBytes = 1 << 20

// Outlet is one destination fd with its writing thread.
type Outlet struct {
	fd       int
	queue    chan []byte
	limit    int64
	queued   atomic.Int64  // bytes in queue
	dropped  atomic.Uint64 // writes dropped (queue full, write error, closed)
	failed   atomic.Bool   // a write failed: later writes are dropped
	closeMu  sync.RWMutex  // held for reading around every send
	closed   bool          // guarded by closeMu
	done     chan struct{} // closed when the thread's goroutine ends
	lastErr  atomic.Value  // error
	stopOnce sync.Once
}

// New starts the writing thread for fd (1 or 2, usually). queueBytes <= 0
// means DefaultQueueBytes.
func New(fd int, queueBytes int) *Outlet {
	if queueBytes <= 0 {
		queueBytes = DefaultQueueBytes
	}
	o := &Outlet{fd: fd, queue: make(chan []byte, 4096), limit: int64(queueBytes), done: make(chan struct{})}
	ready := make(chan struct{})
	go o.run(ready)
	<-ready
	return o
}

// run is the writing goroutine, locked to its thread for good: the thread's
// signal mask (SIGPIPE blocked) must never be seen by another goroutine, and
// a locked goroutine that returns takes its thread with it.
func (o *Outlet) run(ready chan<- struct{}) {
	runtime.LockOSThread()
	var set unix.Sigset_t
	set.Val[(unix.SIGPIPE-1)/64] |= 1 << ((uint(unix.SIGPIPE) - 1) % 64)
	_ = unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil)
	close(ready)
	defer close(o.done)
	for b := range o.queue {
		o.queued.Add(-int64(len(b)))
		if o.failed.Load() {
			o.dropped.Add(1)
			continue
		}
		if err := writeAll(o.fd, b); err != nil {
			o.lastErr.Store(err)
			o.failed.Store(true)
			o.dropped.Add(1)
		}
	}
}

// writeAll writes b whole, retrying on EINTR and short writes, waiting with
// poll on EAGAIN (a non-blocking fd inherited from the parent).
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(fds, -1)
			continue
		case err != nil:
			return err
		}
		b = b[n:]
	}
	return nil
}

// Write queues a copy of p and returns len(p), nil: the outlet never makes
// its caller wait and never fails it. Bytes that do not fit are dropped.
func (o *Outlet) Write(p []byte) (int, error) {
	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	if o.closed || o.failed.Load() || o.queued.Load()+int64(len(p)) > o.limit {
		o.dropped.Add(1)
		return len(p), nil
	}
	b := append([]byte(nil), p...)
	select {
	case o.queue <- b:
		o.queued.Add(int64(len(b)))
	default:
		o.dropped.Add(1)
	}
	return len(p), nil
}

// Dropped is how many writes were dropped.
func (o *Outlet) Dropped() uint64 { return o.dropped.Load() }

// Err is the write error that made the outlet drop everything after it
// (EPIPE for a closed reader, EBADF for a closed fd), or nil.
func (o *Outlet) Err() error {
	err, _ := o.lastErr.Load().(error)
	return err
}

// Close is CloseBy with timeout from now.
func (o *Outlet) Close(timeout time.Duration) { o.CloseBy(time.Now().Add(timeout)) }

// CloseBy stops taking writes and waits until deadline for what is queued
// to be written. A thread stuck in write(2) is left behind: tend is
// exiting. A second CloseBy returns at once: the first one did the
// waiting, and a stalled destination must not cost tend a second wait.
func (o *Outlet) CloseBy(deadline time.Time) {
	first := false
	o.stopOnce.Do(func() {
		first = true
		o.closeMu.Lock()
		o.closed = true
		close(o.queue)
		o.closeMu.Unlock()
	})
	if !first {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-o.done:
	case <-t.C:
	}
}
