//go:build linux

// Package logline copies the output of services to tend's own stdout and
// stderr as "name | line" lines (DESIGN.md §4 log_prefix) without ever
// blocking a service on tend's output.
//
// A Sink owns one destination and the one goroutine that writes to it. Each
// Stream reads one service pipe until EOF and queues whole lines on a Sink.
// Queueing never blocks: when the destination is slow (a terminal, a full
// pipe, a stalled log driver) lines are dropped and counted instead, so the
// service keeps writing into its pipe at full speed. Nothing here waits
// forever: Close gives up on a stuck destination after closeTimeout
// (DESIGN.md §1.6).
//
// Writing to a closed stdout or stderr gives EPIPE, counted as drops. It
// stays an error, not a SIGPIPE death, only because main notifies SIGPIPE
// (DESIGN.md §1.5; os/signal: without Notify, "a write to a broken pipe on
// file descriptors 1 or 2 ... will cause the program to exit with a SIGPIPE
// signal").
package logline

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// MaxLine is the longest piece of a line that is copied as one line;
	// longer lines are split into pieces of MaxLine bytes (prefix and
	// newline not counted).
	MaxLine = 64 << 10
	// maxQueuedBytes bounds the memory held by a Sink's queue whatever
	// queueLines is: 1,024 queued lines of MaxLine would be 64 MiB.
	maxQueuedBytes = 1 << 20
	// batchBytes is how much the writer gathers into one write(2), so a
	// chatty service costs one syscall per batch, not one per line.
	batchBytes = 64 << 10
	// closeTimeout bounds how long Close waits for the queue to drain.
	closeTimeout = time.Second
)

// bufs recycles line buffers between the Streams that fill them and the
// writer goroutine that empties them, so steady output allocates nothing.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// item is one queued line and the Stream to charge if it is dropped.
type item struct {
	buf *[]byte
	st  *Stream
}

// Sink writes queued lines to one destination from one goroutine. Its
// methods are safe for concurrent use.
type Sink struct {
	w       io.Writer
	queue   chan item
	queued  atomic.Int64  // bytes in queue
	dropped atomic.Uint64 // lines dropped, all Streams together

	closeMu sync.RWMutex // guards closed; held for reading around every send
	closed  bool

	mu        sync.Mutex // guards the fields below
	flight    []item     // the batch inside w.Write; nil once Close counted it as dropped
	abandoned bool       // Close gave up: the writer drops instead of writing
	err       error      // the first write error

	stop chan struct{} // closed by Close: drain the queue and end
	done chan struct{} // closed by the writer goroutine when it ends
}

// NewSink returns a Sink that writes to w and starts its writer goroutine. At
// most queueLines lines (and 1 MiB) wait in its queue; more are dropped.
// queueLines below 1 is taken as 1. Call Close to end the goroutine.
func NewSink(w io.Writer, queueLines int) *Sink {
	s := &Sink{
		w:     w,
		queue: make(chan item, max(queueLines, 1)),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go s.run()
	return s
}

// Dropped returns how many lines (or pieces of split lines) were dropped so
// far: queue full, write error, or abandoned by Close.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Err returns the first error the destination returned, or nil. Lines are
// still attempted after an error and dropped while it lasts.
func (s *Sink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close is CloseBy with closeTimeout from now.
func (s *Sink) Close() { s.CloseBy(time.Now().Add(closeTimeout)) }

// CloseBy stops accepting lines, lets the writer drain the queue and waits
// for it until deadline. If the destination is still blocked then, the
// rest of the queue and the batch being written are counted as dropped and
// Close returns; a writer with SetWriteDeadline (an *os.File pipe in
// non-blocking mode, a net.Conn) is unblocked, any other stays blocked in
// Write until it returns. Lines queued later are dropped. A second Close
// returns at once.
func (s *Sink) CloseBy(deadline time.Time) {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return
	}
	s.closed = true // after this no send happens, so the queue only shrinks
	s.closeMu.Unlock()
	close(s.stop)

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-s.done:
		return
	case <-timer.C:
	}
	s.mu.Lock()
	s.abandoned = true
	for _, it := range s.flight {
		s.drop(it.st)
	}
	s.flight = nil // tells the writer these lines are already counted
	s.mu.Unlock()
	if d, ok := s.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now()) // ErrNoDeadline on a blocking fd: nothing more to do
	}
	for {
		select {
		case it := <-s.queue:
			s.release(it)
			s.drop(it.st)
		default:
			return
		}
	}
}

// enqueue queues a line for the writer or drops it; it never blocks.
func (s *Sink) enqueue(it item) {
	n := int64(len(*it.buf))
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		s.release(it)
		s.drop(it.st)
		return
	}
	if s.queued.Add(n) > maxQueuedBytes {
		s.queued.Add(-n)
		s.release(it)
		s.drop(it.st)
		return
	}
	select {
	case s.queue <- it:
	default:
		s.queued.Add(-n)
		s.release(it)
		s.drop(it.st)
	}
}

// full reports whether a line of n bytes would surely be dropped, so a Stream
// can skip copying it. A false answer may still end in a drop.
func (s *Sink) full(n int) bool {
	return len(s.queue) == cap(s.queue) || s.queued.Load()+int64(n) > maxQueuedBytes
}

// drop counts one lost line against st and the Sink.
func (s *Sink) drop(st *Stream) {
	s.dropped.Add(1)
	st.dropped.Add(1)
}

// release recycles the buffer of a line that was written or dropped.
func (s *Sink) release(it item) {
	bufs.Put(it.buf)
}

// run is the writer goroutine: it gathers queued lines into batches and
// writes them until Close, then drains what is left.
func (s *Sink) run() {
	defer close(s.done)
	batch := make([]byte, 0, batchBytes)
	var items []item
	for {
		var first item
		select {
		case first = <-s.queue:
		case <-s.stop:
			select {
			case first = <-s.queue: // Close waits for the drain
			default:
				return
			}
		}
		items = append(items[:0], s.take(first))
		// Gather what is already queued, up to about batchBytes: the last
		// line may overshoot, which beats holding it back outside both the
		// queue and the batch, where Close could not count it.
		for size := len(*first.buf); size < batchBytes; {
			select {
			case it := <-s.queue:
				items = append(items, s.take(it))
				size += len(*it.buf)
				continue
			default:
			}
			break
		}
		batch = s.flush(items, batch)
	}
}

// take removes a received line from the byte budget and returns it.
func (s *Sink) take(it item) item {
	s.queued.Add(-int64(len(*it.buf)))
	return it
}

// flush writes one batch and recycles its buffers; it returns the batch
// buffer for reuse.
func (s *Sink) flush(items []item, batch []byte) []byte {
	p := *items[0].buf
	if len(items) > 1 {
		batch = batch[:0]
		for _, it := range items {
			batch = append(batch, *it.buf...)
		}
		p = batch
	}
	s.mu.Lock()
	abandoned := s.abandoned
	if !abandoned {
		s.flight = items
	}
	s.mu.Unlock()

	n, err := 0, error(nil)
	if !abandoned {
		n, err = s.w.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite // a broken io.Writer; os.File never does this
		}
	}

	s.mu.Lock()
	counted := !abandoned && s.flight == nil // Close already counted this batch
	s.flight = nil
	if err != nil && s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	if !counted && (abandoned || err != nil) {
		// Lines that ended within the n bytes written got out whole.
		end := 0
		for _, it := range items {
			end += len(*it.buf)
			if abandoned || end > n {
				s.drop(it.st)
			}
		}
	}
	for _, it := range items {
		s.release(it)
	}
	return batch
}
