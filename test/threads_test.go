//go:build linux

package test

import (
	"runtime"
	"testing"
	"time"
)

// tendThreadsMade is how many OS threads tend with a control socket makes
// at start beyond GOMAXPROCS, as README "Pids and threads" and
// docs/GUARANTEES.md §0d state it (supervisor/run.go): 4 lookup workers
// and 4 spares for their permits (blocking.Pool), 2 closers, 9 spares
// (blocking.Spare: 8 and the one the reaper keeps, blocked in waitid), the
// thread that signals as a caller (reaper), and the writers of tend's
// stdout and stderr (outlet).
const tendThreadsMade = 4 + 4 + 2 + 9 + 1 + 2

// threadBound is the stated bound of tend's threads, GOMAXPROCS +
// tendThreadsMade: tend inherits the test's environment and cgroup, so its
// GOMAXPROCS is the test's.
func threadBound() int { return runtime.GOMAXPROCS(0) + tendThreadsMade }

// threadWatch samples tend's thread count every 2 ms until done.
type threadWatch struct {
	stop chan struct{}
	most chan int
}

// watchThreads starts sampling r's threads; call done when the flood ends.
func watchThreads(r *tendRun) *threadWatch {
	w := &threadWatch{stop: make(chan struct{}), most: make(chan int, 1)}
	go func() {
		most := 0
		for {
			most = max(most, rStatus(r, "Threads"))
			select {
			case <-w.stop:
				w.most <- most
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return w
}

// done stops the sampling, fails t if any sample was over threadBound, and
// returns the most seen.
func (w *threadWatch) done(t *testing.T, flood string) int {
	t.Helper()
	close(w.stop)
	most := <-w.most
	t.Logf("%s: tend had at most %d threads (stated bound %d)", flood, most, threadBound())
	if most > threadBound() {
		t.Errorf("%s: tend had %d threads, over the stated bound GOMAXPROCS %d + %d = %d",
			flood, most, runtime.GOMAXPROCS(0), tendThreadsMade, threadBound())
	}
	return most
}
