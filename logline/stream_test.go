//go:build linux

package logline

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// safeBuffer is a bytes.Buffer the writer goroutine and the test may share.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chunkReader returns its chunks one Read at a time, so a test decides where
// reads end.
type chunkReader struct{ chunks []string }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && r.chunks[0] == "" {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// chop cuts s into reads of n bytes.
func chop(s string, n int) []string {
	var chunks []string
	for len(s) > n {
		chunks, s = append(chunks, s[:n]), s[n:]
	}
	return append(chunks, s)
}

// patience is how long waitDone waits: far more than anything here needs
// (milliseconds), so that only a real hang fails on a loaded 2-core VM under
// -race.
const patience = 20 * time.Second

// waitDone fails the test if ch is not closed within patience.
func waitDone(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(patience):
		t.Fatalf("%s did not end within %v", what, patience)
	}
}

// pattern returns n bytes of a repeating, position-revealing text, so a
// misplaced cut shows in the output.
func pattern(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%07d,", i)
	}
	return b.String()[:n]
}

func TestCopy(t *testing.T) {
	big := pattern(200 << 10)
	exact := pattern(MaxLine)
	piece := func(s string) string { return "svc | " + s + "\n" }
	tests := []struct {
		name   string
		prefix string
		chunks []string
		want   string
	}{
		{"prefix", "svc", []string{"hello\n"}, "svc | hello\n"},
		{"no prefix", "", []string{"a\nb"}, "a\nb\n"},
		{"lines in one read", "svc", []string{"a\nbb\nccc\n"}, "svc | a\nsvc | bb\nsvc | ccc\n"},
		{"one line per read", "svc", []string{"a\n", "b\n"}, "svc | a\nsvc | b\n"},
		{"line across reads", "svc", []string{"hel", "lo\nwo", "r", "ld\n"}, "svc | hello\nsvc | world\n"},
		{"partial last line", "svc", []string{"a\nb"}, "svc | a\nsvc | b\n"},
		{"partial last line across reads", "svc", []string{"a", "b"}, "svc | ab\n"},
		{"empty lines kept", "svc", []string{"\n\na\n"}, "svc | \nsvc | \nsvc | a\n"},
		{"empty input", "svc", nil, ""},
		{"carriage return kept", "svc", []string{"a\r\n"}, "svc | a\r\n"},
		{"line of MaxLine is one piece", "svc", chop(exact+"\n", 4096), piece(exact)},
		{"line of MaxLine then an empty line", "svc", []string{exact + "\n\n"}, piece(exact) + piece("")},
		{"line of MaxLine+1 is two pieces", "svc", []string{exact + "y\n"}, piece(exact) + piece("y")},
		{"200 KiB line in 64 KiB pieces", "svc", chop(big+"\nend\n", 1000),
			piece(big[:64<<10]) + piece(big[64<<10:128<<10]) + piece(big[128<<10:192<<10]) + piece(big[192<<10:]) + piece("end")},
		{"200 KiB partial last line", "svc", []string{big},
			piece(big[:64<<10]) + piece(big[64<<10:128<<10]) + piece(big[128<<10:192<<10]) + piece(big[192<<10:])},
		{"2*MaxLine at EOF adds no empty piece", "svc", []string{exact + exact}, piece(exact) + piece(exact)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out safeBuffer
			sink := NewSink(&out, 1000)
			st := sink.Copy(tt.prefix, &chunkReader{chunks: tt.chunks})
			waitDone(t, "Copy", st.Done())
			sink.Close()
			if got := out.String(); got != tt.want {
				t.Errorf("output = %.200q (%d bytes), want %.200q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
			if st.Dropped() != 0 || sink.Dropped() != 0 || st.Err() != nil || sink.Err() != nil {
				t.Errorf("Dropped() = %d/%d, Err() = %v/%v; want 0 and nil", st.Dropped(), sink.Dropped(), st.Err(), sink.Err())
			}
		})
	}
}

func TestStreamsDoNotInterleave(t *testing.T) {
	const lines = 5000
	var out safeBuffer
	sink := NewSink(&out, 2*lines) // room for everything: no drops
	var streams []*Stream
	for _, name := range []string{"one", "two"} {
		var b strings.Builder
		for i := range lines {
			fmt.Fprintf(&b, "%s line %d\n", name, i)
		}
		streams = append(streams, sink.Copy(name, &chunkReader{chunks: chop(b.String(), 777)}))
	}
	for _, st := range streams {
		waitDone(t, "Copy", st.Done())
	}
	sink.Close()
	next := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var name, again string
		var i int
		if _, err := fmt.Sscanf(sc.Text(), "%s | %s line %d", &name, &again, &i); err != nil || name != again || i != next[name] {
			t.Fatalf("line %q: want %q line %d", sc.Text(), name, next[name])
		}
		next[name]++
	}
	if next["one"] != lines || next["two"] != lines || sink.Dropped() != 0 {
		t.Errorf("got %v lines, %d dropped; want %d each, 0 dropped", next, sink.Dropped(), lines)
	}
}
