//go:build linux

package logline

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// limitWriter accepts limit bytes in all, then fails.
type limitWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

var errFull = errors.New("device full")

func (w *limitWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(p), w.limit-w.buf.Len())
	w.buf.Write(p[:n])
	if n < len(p) {
		return n, errFull
	}
	return n, nil
}

// shortWriter breaks the io.Writer contract: it reports 1 byte and no error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return 1, nil }

func TestWriteErrors(t *testing.T) {
	brokenR, broken := servicePipe(t)
	brokenR.Close() // tend's stdout closed by its reader: EPIPE, not SIGPIPE (fd is not 1 or 2)
	line := "svc | a\n"
	tests := []struct {
		name        string
		w           io.Writer
		wantDropped uint64
		wantErr     error
	}{
		{"broken pipe", broken, 10, syscall.EPIPE},
		{"error after 3.1 lines", &limitWriter{limit: 3*len(line) + 1}, 7, errFull},
		{"short write", shortWriter{}, 10, io.ErrShortWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := NewSink(tt.w, 100)
			st := sink.Copy("svc", strings.NewReader(strings.Repeat("a\n", 10)))
			waitDone(t, "Copy", st.Done())
			timedClose(t, sink, 0, closeTimeout/2)
			if sink.Dropped() != tt.wantDropped || st.Dropped() != tt.wantDropped {
				t.Errorf("Dropped() = %d (stream %d), want %d", sink.Dropped(), st.Dropped(), tt.wantDropped)
			}
			if !errors.Is(sink.Err(), tt.wantErr) {
				t.Errorf("Err() = %v, want %v", sink.Err(), tt.wantErr)
			}
		})
	}
}

func TestPartialWriteDropsOnlyCutLines(t *testing.T) {
	// Called directly so that the three lines are surely one batch.
	line := "svc | a\n"
	tests := []struct {
		limit       int
		wantDropped uint64
	}{
		{0, 3}, {1, 3}, {len(line), 2}, {2*len(line) - 1, 2}, {2 * len(line), 1}, {3 * len(line), 0},
	}
	for _, tt := range tests {
		w := &limitWriter{limit: tt.limit}
		sink := &Sink{w: w}
		st := &Stream{sink: sink}
		var items []item
		for range 3 {
			b := []byte(line)
			items = append(items, item{buf: &b, st: st})
		}
		sink.flush(items, nil)
		if sink.Dropped() != tt.wantDropped || st.Dropped() != tt.wantDropped {
			t.Errorf("write cut after %d bytes: Dropped() = %d (stream %d), want %d", tt.limit, sink.Dropped(), st.Dropped(), tt.wantDropped)
		}
	}
}
