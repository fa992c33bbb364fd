//go:build linux

package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/reaper"
)

// testReaper is the one reaper of the test process: every job of every test
// is its child. It runs on SIGCHLD for the whole package, as in tend; the
// test process is a subreaper, so jobs' orphaned grandchildren come back to
// it too (and can be seen to die).
var testReaper *reaper.Reaper

func TestMain(m *testing.M) {
	ignore := goleak.IgnoreCurrent()
	if err := reaper.SetSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	testReaper = reaper.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { testReaper.Run(ctx, ch); close(done) }()

	code := m.Run()
	cancel()
	<-done
	signal.Stop(ch)
	if code == 0 {
		// A goroutine leaked in PID 1 lives as long as the container.
		if err := goleak.Find(ignore); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

var root = Caller{UID: 0, GID: 0}

// recorder collects published events.
type recorder struct {
	mu     sync.Mutex
	events []api.Event
}

func (r *recorder) publish(ev api.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// of returns the types of the events of job id, in order.
func (r *recorder) of(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Job.ID == id {
			out = append(out, ev.Type)
		}
	}
	return out
}

// newManager returns a manager whose jobs are all gone when the test ends,
// with no timer left.
func newManager(t *testing.T, cfg Config) (*Manager, *recorder) {
	t.Helper()
	rec := &recorder{}
	if cfg.Publish == nil {
		cfg.Publish = rec.publish
	}
	m := New(testReaper, cfg)
	t.Cleanup(func() {
		select {
		case <-m.Shutdown(time.Now()):
		case <-time.After(10 * time.Second):
			t.Error("Shutdown: jobs still running after 10s")
		}
		if n := timers(m); n != 0 {
			t.Errorf("%d job timers left after every job exited", n)
		}
	})
	return m, rec
}

// timers counts the jobs that hold a timer.
func timers(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, j := range m.jobs {
		if j.timer != nil {
			n++
		}
	}
	return n
}

// submit submits req (its zero Caller is root) and fails the test on error.
func submit(t *testing.T, m *Manager, req SubmitRequest) api.Job {
	t.Helper()
	j, err := m.Submit(req)
	if err != nil {
		t.Fatalf("Submit(%q): %v", req.Argv, err)
	}
	return j
}

func sh(script string) api.JobRequest {
	return api.JobRequest{Argv: []string{"/bin/sh", "-c", script}}
}

func waitJob(t *testing.T, m *Manager, c Caller, id string) api.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	j, err := m.Wait(ctx, c, id, 0)
	if err != nil {
		t.Fatalf("Wait(%s): %v (state %s)", id, err, j.State)
	}
	return j
}

// statusCode is the HTTP status of err, or 0.
func statusCode(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// pipe returns a pipe; the reader is closed at the end of the test, the
// writer belongs to whoever it is passed to.
func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, w
}

// readLine reads one line from r byte by byte, so nothing after it is
// consumed.
func readLine(t *testing.T, r io.Reader) string {
	t.Helper()
	var sb strings.Builder
	b := make([]byte, 1)
	for {
		if _, err := r.Read(b); err != nil {
			t.Fatalf("read line: %v (got %q)", err, sb.String())
		}
		if b[0] == '\n' {
			return sb.String()
		}
		sb.WriteByte(b[0])
	}
}

func intp(p *int) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func strp(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}
