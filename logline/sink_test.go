//go:build linux

package logline

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockWriter blocks every Write until release is closed, as a stalled
// terminal or log driver does. entered is closed when the first Write starts.
type blockWriter struct {
	enterOnce sync.Once
	entered   chan struct{}
	release   chan struct{}
}

func newBlockWriter(t *testing.T) *blockWriter {
	w := &blockWriter{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-w.release:
		default:
			close(w.release)
		}
	})
	return w
}

func (w *blockWriter) Write(p []byte) (int, error) {
	w.enterOnce.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

// produce writes total bytes of 100-byte lines into w, closes it, and returns
// the number of lines and a channel closed when it is done.
func produce(t *testing.T, w io.WriteCloser, total int) (int, <-chan struct{}) {
	line := strings.Repeat("x", 99) + "\n"
	lines := total / len(line)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Close()
		chunk := []byte(strings.Repeat(line, 1000))
		for i := 0; i < lines; i += 1000 {
			if _, err := w.Write(chunk[:min(1000, lines-i)*len(line)]); err != nil {
				t.Errorf("service write: %v", err)
				return
			}
		}
	}()
	return lines, done
}

// servicePipe returns the two ends of a service's stdout pipe, closed at the
// end of the test.
func servicePipe(t *testing.T) (*os.File, *os.File) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); pw.Close() })
	return pr, pw
}

// timedClose calls Close and fails the test unless it returns within bounds.
func timedClose(t *testing.T, sink *Sink, least, most time.Duration) {
	t.Helper()
	start := time.Now()
	sink.Close()
	if took := time.Since(start); took < least || took > most {
		t.Errorf("Close() took %v, want %v to %v", took, least, most)
	}
}

func TestBlockedWriterNeverBlocksService(t *testing.T) {
	t.Parallel()
	w := newBlockWriter(t)
	sink := NewSink(w, 64)
	pr, pw := servicePipe(t)
	st := sink.Copy("svc", pr)
	start := time.Now()
	lines, produced := produce(t, pw, 10<<20)
	waitDone(t, "the service writing 10 MB", produced)
	t.Logf("10 MB written by the service in %v", time.Since(start))
	waitDone(t, "Copy", st.Done())
	<-w.entered
	if st.Dropped() == 0 {
		t.Errorf("Dropped() before Close = 0, want > 0")
	}
	timedClose(t, sink, closeTimeout, closeTimeout+2*time.Second)
	// Nothing was written: every line is dropped, counted exactly once.
	if got, got2 := sink.Dropped(), st.Dropped(); got != uint64(lines) || got2 != uint64(lines) {
		t.Errorf("Dropped() after Close = %d (stream %d), want %d", got, got2, lines)
	}
	close(w.release)
	waitDone(t, "the writer goroutine", sink.done)
	if got := sink.Dropped(); got != uint64(lines) {
		t.Errorf("Dropped() once the write returned = %d, want %d still", got, lines)
	}
}

func TestFullPipeDestination(t *testing.T) {
	t.Parallel()
	dr, dw := servicePipe(t) // tend's stdout, which nobody reads
	sink := NewSink(dw, 64)
	pr, pw := servicePipe(t)
	st := sink.Copy("svc", pr)
	lines, produced := produce(t, pw, 10<<20)
	waitDone(t, "the service writing 10 MB", produced)
	waitDone(t, "Copy", st.Done())
	timedClose(t, sink, closeTimeout, closeTimeout+2*time.Second)
	// The deadline set by Close unblocks the write: the goroutine ends.
	waitDone(t, "the writer goroutine", sink.done)
	if !errors.Is(sink.Err(), os.ErrDeadlineExceeded) {
		t.Errorf("Err() = %v, want %v", sink.Err(), os.ErrDeadlineExceeded)
	}
	dw.Close()
	out, err := io.ReadAll(dr)
	if err != nil {
		t.Fatal(err)
	}
	written := bytes.Count(out, []byte("\n"))
	want := "svc | " + strings.Repeat("x", 99) + "\n"
	if written == 0 || !bytes.Equal(out[:written*len(want)], []byte(strings.Repeat(want, written))) {
		t.Errorf("destination got %d lines, %.200q..., want some lines %q", written, out, want)
	}
	// The batch cut by the deadline counts as dropped even if some of it
	// got out, so the sum may exceed the lines by that batch, never fall short.
	if dropped := int(sink.Dropped()); dropped == 0 || written+dropped < lines || written+dropped > lines+batchBytes/len(want)+1 {
		t.Errorf("%d lines written, %d dropped, want a sum of %d (+ one batch at most)", written, dropped, lines)
	}
}

func TestQueueFullDropsExactly(t *testing.T) {
	t.Parallel()
	ll := "svc | " + strings.Repeat("x", MaxLine-1) + "\n"
	fitBytes := maxQueuedBytes / len(ll) // the byte budget, not the line count, is the limit
	tests := []struct {
		name       string
		queueLines int
		line       string
		n          int
		wantQueued int
	}{
		{"line limit", 4, "a\n", 10, 4},
		{"byte limit", 1000, ll[len("svc | "):], 100, fitBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newBlockWriter(t)
			sink := NewSink(w, tt.queueLines)
			pr, pw := io.Pipe()
			st := sink.Copy("svc", pr)
			if _, err := pw.Write([]byte("first\n")); err != nil {
				t.Fatal(err)
			}
			<-w.entered // "first" is in flight, alone; the queue is empty
			if _, err := pw.Write([]byte(strings.Repeat(tt.line, tt.n))); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			waitDone(t, "Copy", st.Done())
			if got, want := st.Dropped(), uint64(tt.n-tt.wantQueued); got != want {
				t.Errorf("Dropped() with a full queue = %d, want %d", got, want)
			}
			timedClose(t, sink, closeTimeout, closeTimeout+2*time.Second)
			if got, want := sink.Dropped(), uint64(tt.n+1); got != want || st.Dropped() != want {
				t.Errorf("Dropped() after Close = %d (stream %d), want %d", got, st.Dropped(), want)
			}
		})
	}
}

func TestCopyAfterClose(t *testing.T) {
	var out safeBuffer
	sink := NewSink(&out, 10)
	sink.Close()
	sink.Close() // a second Close returns at once
	waitDone(t, "the writer goroutine", sink.done)
	st := sink.Copy("svc", strings.NewReader("a\nb\nc"))
	waitDone(t, "Copy", st.Done())
	if out.String() != "" || st.Dropped() != 3 || sink.Dropped() != 3 {
		t.Errorf("output %q, Dropped() = %d (stream %d); want nothing written and 3", out.String(), sink.Dropped(), st.Dropped())
	}
}

func TestReadDeadlineEndsStream(t *testing.T) {
	// A grandchild holding the pipe open denies EOF: the supervisor ends the
	// Stream with a read deadline, and the partial line still comes out.
	var out safeBuffer
	sink := NewSink(&out, 10)
	pr, pw := servicePipe(t)
	if _, err := pw.Write([]byte("line\npartial")); err != nil {
		t.Fatal(err)
	}
	st := sink.Copy("svc", pr)
	if err := pr.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, "Copy", st.Done())
	sink.Close()
	if got, want := out.String(), "svc | line\nsvc | partial\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
	if !errors.Is(st.Err(), os.ErrDeadlineExceeded) {
		t.Errorf("Err() = %v, want %v", st.Err(), os.ErrDeadlineExceeded)
	}
}

// countWriter counts the bytes written and keeps none.
type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

func TestFewAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under -race")
	}
	const lines = 1000
	data := []byte(strings.Repeat("some log line of a service\n", lines))
	w := &countWriter{}
	sink := NewSink(w, 2*lines)
	defer sink.Close()
	perRun := int64(len(data) + lines*len("svc | "))
	var want int64
	allocs := testing.AllocsPerRun(10, func() {
		want += perRun
		st := sink.Copy("svc", bytes.NewReader(data))
		<-st.Done()
		for w.n.Load() < want { // let buffers come back to the pool
			runtime.Gosched()
		}
	})
	// A Stream costs a few allocations (its goroutine, reader and buffer);
	// the lines themselves must cost none in the steady state.
	if allocs > 30 {
		t.Errorf("copying %d lines: %v allocations per run, want at most 30", lines, allocs)
	}
	if sink.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", sink.Dropped())
	}
}
