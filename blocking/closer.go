//go:build linux

package blocking

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Closer closes fds on its own threads. close(2) can block: the last close
// of a TCP socket with SO_LINGER {1, 120} and unsent data waits up to 120 s,
// and a caller may pass tend exactly such an fd. Close never blocks its
// caller; a stuck close holds one of the Closer's threads, never the loop,
// the reaper or a lock.
type Closer struct {
	mu      sync.Mutex
	queue   []int         // guarded by mu
	stopped bool          // guarded by mu; wake is closed
	wake    chan struct{} // cap 1
	pending atomic.Int64  // handed to Close, not yet closed
	stuck   atomic.Int32  // workers inside close(2) right now
}

// NewCloser starts n closing threads. A nil *Closer closes nothing: it is
// there only where fds may be passed to tend.
func NewCloser(n int) *Closer {
	c := &Closer{wake: make(chan struct{}, 1)}
	started := make(chan struct{})
	for range n {
		go c.worker(started)
		<-started
	}
	return c
}

// Close queues fds for closing and returns at once. Negative fds are
// skipped.
func (c *Closer) Close(fds ...int) {
	if c == nil {
		for _, fd := range fds { // nothing was passed to tend: these are its own, and never sockets
			unix.Close(fd)
		}
		return
	}
	n := 0
	c.mu.Lock()
	for _, fd := range fds {
		if fd >= 0 {
			c.queue = append(c.queue, fd)
			n++
		}
	}
	if n > 0 {
		c.pending.Add(int64(n))
		if !c.stopped {
			c.poke()
		}
	}
	c.mu.Unlock()
}

// Stop ends the workers once the queue is empty; Close must not be called
// after. tend's Closer lives as long as tend; tests stop theirs.
func (c *Closer) Stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	close(c.wake)
}

// Pending is the number of fds queued or being closed: they still count
// against tend's fd limit.
func (c *Closer) Pending() int {
	if c == nil {
		return 0
	}
	return int(c.pending.Load())
}

// Busy is the number of workers inside close(2) right now.
func (c *Closer) Busy() int { return int(c.stuck.Load()) }

func (c *Closer) worker(started chan<- struct{}) {
	runtime.LockOSThread() // made now, at start: never a new thread later
	started <- struct{}{}
	for range c.wake {
		c.drain()
	}
}

// drain closes queued fds until the queue is empty.
func (c *Closer) drain() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		fd := c.queue[0]
		c.queue = c.queue[1:]
		if len(c.queue) > 0 && !c.stopped {
			c.poke() // another worker takes the rest meanwhile
		}
		c.mu.Unlock()
		c.stuck.Add(1)
		unix.Close(fd) // EINTR: the fd is closed anyway on Linux (close(2))
		c.stuck.Add(-1)
		c.pending.Add(-1)
	}
}

// poke wakes a worker without waiting.
func (c *Closer) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
