//go:build linux

package supervisor

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/spawn"
)

// goid is the calling goroutine's number, from its stack's first line
// ("goroutine 7 [running]:"): only to tell goroutines apart in a test.
func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	n, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return n
}

// TestQueuedJobStartsOnTheLoop (DESIGN.md §1.9, issue 10: "the reaper
// goroutine never forks"): with [jobs] max_running = 1, job B waits behind
// job A. A's exit is reaped by a reap pass on another goroutine, as the
// reaper's own would: the pass forks nothing, and B is then forked on the
// loop's goroutine, once the loop has taken A's exit. Before issue 10 an
// exit's callback, run by the reap pass on the reaper goroutine, started
// the next queued job there: the fork would be seen on the reap pass's
// goroutine, before Reap returned.
func TestQueuedJobStartsOnTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, err := config.Parse(nil, "defaults")
		if err != nil {
			t.Fatal(err)
		}
		f.Control.Socket = ""
		f.Jobs.MaxRunning = 1
		h := newHarness(t, Config{File: f, Init: true, Main: []string{"/bin/true", "main"}})
		synctest.Wait()
		var (
			mu    sync.Mutex
			forks = map[string]uint64{} // argv's last word -> forking goroutine
			loopG uint64
		)
		h.do(func() {
			loopG = goid()
			fork := h.l.fork
			h.l.fork = func(p *spawn.Prepared, pidfd *int) (int, error) {
				mu.Lock()
				forks[p.Spec().Argv[len(p.Spec().Argv)-1]] = goid()
				mu.Unlock()
				return fork(p, pidfd)
			}
		})
		a, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "A"}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.submit(control.Submit{Caller: root, Argv: []string{"/bin/true", "B"}})
		if err != nil {
			t.Fatal(err)
		}
		if ra, rb := h.jobRec(a), h.jobRec(b); ra.State != api.StateRunning || rb.State != api.StateQueued {
			t.Fatalf("A %s, B %s; want A running, B queued behind max_running = 1", ra.State, rb.State)
		}

		h.exit(*h.jobRec(a).PID, exitedWith(0))
		reapG := goid() // this goroutine stands in for the reaper's
		h.reap()
		mu.Lock()
		g, forked := forks["B"]
		mu.Unlock()
		if forked && g == reapG {
			t.Fatalf("B was forked by the reap pass, on its goroutine: the reaper forks")
		}
		synctest.Wait() // the loop takes A's exit and starts B
		if rb := h.jobRec(b); rb.State != api.StateRunning {
			t.Fatalf("after A's exit B is %s, want running", rb.State)
		}
		mu.Lock()
		defer mu.Unlock()
		if g := forks["B"]; g != loopG {
			t.Errorf("B was forked on goroutine %d, want the loop's (%d); the reap pass ran on %d", g, loopG, reapG)
		}
		if g := forks["A"]; g != loopG {
			t.Errorf("A was forked on goroutine %d, want the loop's (%d)", g, loopG)
		}
	})
}
