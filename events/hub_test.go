//go:build linux

package events

import (
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

func TestPublishOrderAndSeq(t *testing.T) {
	h := NewHub(Limits{})
	s := sub(t, h, 10)
	defer s.Close()
	fixed := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	h.Publish(api.Event{Type: api.EventJobStarted})
	h.Publish(api.Event{Type: api.EventJobExited, Time: fixed})
	h.Publish(api.Event{Type: api.EventOrphanReaped, PID: 7})
	for i, want := range []string{api.EventJobStarted, api.EventJobExited, api.EventOrphanReaped} {
		ev := <-s.C
		if ev.Seq != uint64(i+1) || ev.Type != want {
			t.Errorf("event %d = seq %d type %q, want seq %d type %q", i, ev.Seq, ev.Type, i+1, want)
		}
		if ev.Time.IsZero() {
			t.Errorf("event %d has no time", i)
		}
		if i == 1 && !ev.Time.Equal(fixed) {
			t.Errorf("event with a time got %v, want %v kept", ev.Time, fixed)
		}
	}
}

func TestLateSubscriberSeesOnlyLaterEvents(t *testing.T) {
	h := NewHub(Limits{})
	h.Publish(api.Event{Type: "a"})
	s := sub(t, h, 1)
	defer s.Close()
	h.Publish(api.Event{Type: "b"})
	if ev := <-s.C; ev.Type != "b" || ev.Seq != 2 {
		t.Errorf("got %q seq %d, want \"b\" seq 2", ev.Type, ev.Seq)
	}
}

// TestStuckSubscriberIsCutOff: a subscriber that never reads must neither
// block Publish nor keep the others from getting every event.
func TestStuckSubscriberIsCutOff(t *testing.T) {
	h := NewHub(Limits{})
	stuck := sub(t, h, 2)
	live := sub(t, h, 1000)
	defer live.Close()
	done := make(chan struct{})
	go func() {
		for range 100 {
			h.Publish(api.Event{Type: "x"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a stuck subscriber")
	}
	if !stuck.Overflowed() {
		t.Error("stuck subscriber: Overflowed() = false, want true")
	}
	n := 0
	for range stuck.C { // the buffered events, then closed
		n++
	}
	if n != 2 {
		t.Errorf("stuck subscriber got %d events before the cut, want 2", n)
	}
	if live.Overflowed() {
		t.Error("live subscriber overflowed")
	}
	for i := range 100 {
		if ev := <-live.C; ev.Seq != uint64(i+1) {
			t.Fatalf("live subscriber event %d has seq %d", i, ev.Seq)
		}
	}
	stuck.Close() // after the cut: a no-op
	if got := h.Subscribers(); got != 1 {
		t.Errorf("Subscribers() = %d, want 1", got)
	}
}

func TestCloseIdempotent(t *testing.T) {
	h := NewHub(Limits{})
	s := sub(t, h, 0)
	if cap(s.C) != DefaultBuffer {
		t.Errorf("Subscribe(0) buffer = %d, want %d", cap(s.C), DefaultBuffer)
	}
	s.Close()
	s.Close()
	if _, ok := <-s.C; ok {
		t.Error("C not closed after Close")
	}
	if s.Overflowed() {
		t.Error("Overflowed() after a plain Close")
	}
	h.Publish(api.Event{Type: "after"}) // must not panic on the closed channel
}

// TestConcurrent publishes, subscribes, reads and closes from many
// goroutines at once; run it with -race. Every subscriber sees strictly
// increasing sequence numbers.
func TestConcurrent(t *testing.T) {
	h := NewHub(Limits{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					h.Publish(api.Event{Type: "x"})
				}
			}
		}()
	}
	var subs sync.WaitGroup
	for g := range 8 {
		subs.Add(1)
		go func() {
			defer subs.Done()
			for range 50 {
				s := sub(t, h, 1+g*4)
				var last uint64
				for range 20 {
					ev, ok := <-s.C
					if !ok {
						break
					}
					if ev.Seq <= last {
						t.Errorf("seq %d after %d", ev.Seq, last)
					}
					last = ev.Seq
				}
				go s.Close() // races with Publish and with the next Close
				s.Close()
			}
		}()
	}
	subs.Wait()
	close(stop)
	wg.Wait()
	if n := h.Subscribers(); n != 0 {
		t.Errorf("Subscribers() = %d after every Close, want 0", n)
	}
}

// sub subscribes as uid 0 to h, which has room.
func sub(t *testing.T, h *Hub, buffer int) *Sub {
	t.Helper()
	s, err := h.Subscribe(0, buffer)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return s
}

// TestSubscriberCaps: beyond PerUID a uid is refused with a 429, beyond Max
// anyone with a 503, each naming its setting; a closed subscription frees
// its place.
func TestSubscriberCaps(t *testing.T) {
	h := NewHub(Limits{Max: 3, PerUID: 2})
	a, _ := h.Subscribe(1000, 4)
	h.Subscribe(1000, 4)
	if _, err := h.Subscribe(1000, 4); code(err) != http.StatusTooManyRequests || !strings.Contains(err.Error(), "[control] max_subscribers_per_uid") {
		t.Errorf("uid 1000's third: %v, want a 429 naming max_subscribers_per_uid", err)
	}
	h.Subscribe(1001, 4)
	if _, err := h.Subscribe(1002, 4); code(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "[control] max_subscribers)") {
		t.Errorf("the fourth in all: %v, want a 503 naming max_subscribers", err)
	}
	a.Close()
	a.Close()
	if _, err := h.Subscribe(1002, 4); err != nil {
		t.Errorf("after a close: %v", err)
	}
	if _, err := h.Subscribe(1000, 4); err == nil {
		t.Error("a fifth subscription with 3 open")
	}
}

// TestSubscriberMemory: a subscriber costs its channel of pointers (about
// 8 KiB with a buffer of 1024), not a buffer of events, and gives it all
// back when it is gone.
func TestSubscriberMemory(t *testing.T) {
	const n, buffer = 2000, 1024
	h := NewHub(Limits{})
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	base := heap()
	subs := make([]*Sub, n)
	for i := range subs {
		subs[i] = sub(t, h, buffer)
	}
	h.Publish(api.Event{Type: api.EventJobStarted, Job: &api.Job{ID: "j-1"}})
	open := heap()
	for _, s := range subs {
		s.Close()
	}
	subs = nil
	gone := heap()
	per := (open - base) / n
	t.Logf("%d subscribers: %d bytes each; after they closed the heap is %+d bytes from before", n, per, gone-base)
	if per > 12<<10 {
		t.Errorf("a subscriber costs %d bytes, want at most 12 KiB", per)
	}
	if gone-base > 256<<10 {
		t.Errorf("after every subscriber closed the heap is %d bytes above where it was", gone-base)
	}
	if h.Subscribers() != 0 || len(h.perUID) != 0 {
		t.Errorf("hub still counts %d subscribers, %d uids", h.Subscribers(), len(h.perUID))
	}
}

func code(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// TestEnd: End closes every subscription after what it holds, refuses new
// ones with a 503, and Publish after it neither panics nor delivers.
func TestEnd(t *testing.T) {
	h := NewHub(Limits{})
	a, b := sub(t, h, 4), sub(t, h, 4)
	h.Publish(api.Event{Type: "last"})
	h.End()
	h.Publish(api.Event{Type: "after"})
	for _, s := range []*Sub{a, b} {
		if e, ok := <-s.C; !ok || e.Type != "last" {
			t.Errorf("first receive after End = %v %v, want the event published before it", e, ok)
		}
		if e, ok := <-s.C; ok {
			t.Errorf("C open after End: %v", e)
		}
		s.Close() // still safe
	}
	var se *api.StatusError
	if _, err := h.Subscribe(0, 1); !errors.As(err, &se) || se.Code != 503 {
		t.Errorf("Subscribe after End = %v, want 503", err)
	}
	if n := h.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after End", n)
	}
}
