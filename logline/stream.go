//go:build linux

package logline

import (
	"bufio"
	"errors"
	"io"
	"sync/atomic"
)

// separator goes between a Stream's prefix and each line.
const separator = " | "

// Stream copies one reader, typically the read end of a service's stdout or
// stderr pipe, into a Sink line by line. It is started by Sink.Copy and ends
// by itself at EOF or on a read error.
type Stream struct {
	sink    *Sink
	head    []byte // prefix + separator; written only before the goroutine starts
	done    chan struct{}
	dropped atomic.Uint64 // lines of this Stream dropped, by its reader or the Sink
	err     error         // the read error that ended the Stream; set before done is closed
}

// Copy starts a goroutine that reads r until EOF or a read error and queues
// each line on s as prefix + " | " + line + "\n" (just line + "\n" when
// prefix is ""). A line longer than MaxLine bytes is queued as several pieces
// of at most MaxLine bytes each; a last line without a newline is queued with
// one. The goroutine keeps reading even when s is full or closed, dropping
// lines instead, so whoever writes into r never blocks on s's destination.
//
// A pipe whose write end a service's descendant still holds gives no EOF when
// the service exits; to end the Stream anyway, set a read deadline on the
// *os.File (or close it): the partial last line is queued all the same. The
// caller owns r and closes it after Done.
func (s *Sink) Copy(prefix string, r io.Reader) *Stream {
	st := &Stream{sink: s, done: make(chan struct{})}
	if prefix != "" {
		st.head = []byte(prefix + separator)
	}
	go st.run(r)
	return st
}

// Done is closed when the Stream has read its last line and queued it (or
// dropped it). The lines may still be in the Sink's queue: Sink.Close drains it.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Dropped returns how many lines (or pieces of split lines) of this Stream
// were dropped so far. It is final once Done is closed and the Sink is closed.
func (st *Stream) Dropped() uint64 { return st.dropped.Load() }

// Err returns the read error that ended the Stream, or nil for EOF. It is
// valid once Done is closed.
func (st *Stream) Err() error {
	select {
	case <-st.done:
		return st.err
	default:
		return nil
	}
}

// run reads lines until EOF or an error and emits them.
func (st *Stream) run(r io.Reader) {
	defer close(st.done)
	// The reader's buffer is the line cap: ReadSlice returns ErrBufferFull
	// with exactly MaxLine bytes when no newline fits.
	br := bufio.NewReaderSize(r, MaxLine)
	split := false // the last piece emitted was cut at MaxLine
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			// A newline right after a cut only ends the cut line: emitting
			// it would add an empty line after every line of exactly
			// k*MaxLine bytes.
			if !split || len(line) > 1 {
				st.emit(line[:len(line)-1])
			}
			split = false
		case errors.Is(err, bufio.ErrBufferFull):
			st.emit(line)
			split = true
		default:
			if len(line) > 0 {
				st.emit(line) // the partial last line
			}
			if !errors.Is(err, io.EOF) {
				st.err = err
			}
			return
		}
	}
}

// emit queues head + line + "\n" on the Sink, or drops it. line is only
// valid until the next read, so it is copied into a pooled buffer.
func (st *Stream) emit(line []byte) {
	n := len(st.head) + len(line) + 1
	if st.sink.full(n) {
		// Under backpressure do not even copy: the reader must keep up
		// with the service, whatever the destination does.
		st.sink.drop(st)
		return
	}
	bp := bufs.Get().(*[]byte)
	b := append((*bp)[:0], st.head...)
	b = append(b, line...)
	*bp = append(b, '\n')
	st.sink.enqueue(item{buf: bp, st: st})
}
