//go:build linux

package outlet

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/signal"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestWritesInOrder(t *testing.T) {
	r, w := pipe(t)
	o := New(int(w.Fd()), 0)
	var want bytes.Buffer
	for i := range 1000 {
		line := []byte("line " + string(rune('a'+i%26)) + "\n")
		want.Write(line)
		o.Write(line)
	}
	o.Close(5 * time.Second)
	w.Close()
	got, _ := io.ReadAll(r)
	if !bytes.Equal(got, want.Bytes()) || o.Dropped() != 0 {
		t.Errorf("got %d bytes (dropped %d), want %d in order", len(got), o.Dropped(), want.Len())
	}
}

// TestNeverBlocks: nobody reads the pipe; writes return at once and drop.
func TestNeverBlocks(t *testing.T) {
	_, w := pipe(t)
	o := New(int(w.Fd()), 64<<10)
	chunk := bytes.Repeat([]byte("x"), 4096)
	start := time.Now()
	for range 10000 { // 40 MB against a 64 KiB pipe
		o.Write(chunk)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("40 MB of writes took %v against a stuck pipe", d)
	}
	if o.Dropped() == 0 {
		t.Error("Dropped() = 0 with a stuck reader")
	}
	start = time.Now()
	o.Close(200 * time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v, want about its timeout", d)
	}
}

// TestNoSIGPIPE: a write to a pipe whose reader is gone fails with EPIPE on
// the outlet's thread and raises no SIGPIPE that tend would see.
func TestNoSIGPIPE(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGPIPE)
	defer signal.Stop(sigs)
	r, w := pipe(t)
	r.Close()
	o := New(int(w.Fd()), 0)
	o.Write([]byte("into the void\n"))
	o.Write([]byte("and again\n"))
	o.Close(5 * time.Second)
	if !errors.Is(o.Err(), unix.EPIPE) {
		t.Errorf("Err() = %v, want EPIPE", o.Err())
	}
	if o.Dropped() != 2 {
		t.Errorf("Dropped() = %d, want 2", o.Dropped())
	}
	select {
	case <-sigs:
		t.Error("a SIGPIPE reached the process")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSecondCloseReturnsAtOnce: the thread is stuck in write(2) on a full
// pipe; the first Close waits its timeout, a second one must not wait again
// (tend's exit path may close an outlet that its teardown already closed).
func TestSecondCloseReturnsAtOnce(t *testing.T) {
	_, w := pipe(t)
	o := New(int(w.Fd()), 0)
	chunk := bytes.Repeat([]byte("x"), 4096)
	for range 64 { // 256 KiB against a 64 KiB pipe nobody reads
		o.Write(chunk)
	}
	start := time.Now()
	o.Close(200 * time.Millisecond)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("first Close took %v with the writer stuck: want its 200ms", d)
	}
	start = time.Now()
	o.CloseBy(time.Now().Add(5 * time.Second))
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("second Close took %v, want it at once", d)
	}
}
