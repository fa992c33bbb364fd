//go:build linux

package supervisor

import (
	"container/heap"
	"time"
)

// timers are the loop's: one time.Timer armed for the earliest of a heap
// of deadlines, each a function run on the loop when it falls due. A timer
// is an event into the loop like any other (DESIGN.md §1.9); none runs on a
// goroutine of its own, so none can signal a child. With no deadline
// pending nothing is armed: idle means no wake-up (§1.8).
type timers struct {
	h    timerHeap
	byID map[uint64]*timerEntry
	next uint64
	t    *time.Timer // armed for h[0].when while h is not empty
	at   time.Time   // what t is armed for; zero when stopped
}

type timerEntry struct {
	id    uint64
	when  time.Time
	fn    func()
	index int // in h
}

type timerHeap []*timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].id < h[j].id // same deadline: in the order they were set
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *timerHeap) Push(x any)   { e := x.(*timerEntry); e.index = len(*h); *h = append(*h, e) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

func newTimers() *timers {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timers{byID: make(map[uint64]*timerEntry), t: t}
}

// after runs fn on the loop once d has passed, and returns an id for
// cancel; ids are never 0, so 0 can mean "no timer".
func (ts *timers) after(d time.Duration, fn func()) uint64 {
	ts.next++
	e := &timerEntry{id: ts.next, when: time.Now().Add(d), fn: fn}
	heap.Push(&ts.h, e)
	ts.byID[e.id] = e
	ts.arm()
	return e.id
}

// cancel forgets timer id; an id that fired or was cancelled is ignored.
func (ts *timers) cancel(id uint64) {
	e, ok := ts.byID[id]
	if !ok {
		return
	}
	delete(ts.byID, id)
	heap.Remove(&ts.h, e.index)
	ts.arm()
}

// arm points the time.Timer at the earliest deadline, or stops it.
func (ts *timers) arm() {
	if len(ts.h) == 0 {
		if !ts.at.IsZero() {
			ts.t.Stop()
			ts.at = time.Time{}
		}
		return
	}
	if when := ts.h[0].when; !when.Equal(ts.at) {
		ts.t.Reset(time.Until(when))
		ts.at = when
	}
}

// C fires when the earliest deadline is due.
func (ts *timers) C() <-chan time.Time { return ts.t.C }

// fire runs every function now due, earliest first. A function may set or
// cancel timers; one set for now or earlier runs in this same call.
func (ts *timers) fire() {
	ts.at = time.Time{} // the Timer has fired: arm must reset it
	now := time.Now()
	for len(ts.h) > 0 && !ts.h[0].when.After(now) {
		e := heap.Pop(&ts.h).(*timerEntry)
		delete(ts.byID, e.id)
		e.fn()
	}
	ts.arm()
}

// pending is the number of timers set.
func (ts *timers) pending() int { return len(ts.h) }
