//go:build linux

// Package events fans tend's events (job.started, job.exited, service.*,
// orphan.reaped) out to the subscribers of GET /v1/events. It owns the
// sequence numbers and the subscriber set, and bounds it: at most
// Limits.Max subscribers, Limits.PerUID of them one uid's.
//
// Publish must never block: it is called with other packages' locks held
// (the job manager publishes under its own mutex so that one job's events
// are always in order). A subscriber that falls behind is therefore cut off
// (its channel closed, Overflowed true) instead of slowing tend down; the
// client sees the gap in Seq when it reconnects.
//
// Memory: an event is published once, as one *api.Event that every
// subscriber's channel shares, so a subscriber costs its channel's slots (a
// pointer each) and no more; the events buffered anywhere are at most the
// last buffer published, since a subscriber a whole buffer behind is cut.
// A closed subscription holds nothing: its channel is dropped with it.
package events

import (
	"net/http"
	"sync"
	"time"

	"github.com/tendinit/tend/api"
)

// DefaultBuffer is the channel capacity Subscribe uses for a buffer < 1.
const DefaultBuffer = 256

// Limits bound the subscribers; 0 = no bound.
type Limits struct {
	Max    int // subscriptions open at once ([control] max_subscribers)
	PerUID int // of those, one uid's ([control] max_subscribers_per_uid)
}

// Hub is the set of subscribers. The zero value is not usable; call NewHub.
type Hub struct {
	mu     sync.Mutex
	seq    uint64            // guarded by mu; the last Seq given out
	subs   map[*Sub]struct{} // guarded by mu; open subscriptions only
	perUID map[int]int       // guarded by mu; open subscriptions by uid, > 0
	ended  bool              // guarded by mu; End was called
	lim    Limits
	now    func() time.Time // time.Now; tests replace it
}

// Sub is one subscription. Receive from C until it is closed: by Close, or
// by the hub when the subscriber fell a whole buffer behind (Overflowed).
// The events received are shared: nobody may modify them.
type Sub struct {
	C <-chan *api.Event

	hub        *Hub
	uid        int
	ch         chan *api.Event // closed (under hub.mu) exactly once
	closed     bool            // guarded by hub.mu
	overflowed bool            // guarded by hub.mu
}

// NewHub returns an empty hub with lim.
func NewHub(lim Limits) *Hub {
	return &Hub{subs: make(map[*Sub]struct{}), perUID: make(map[int]int), lim: lim, now: time.Now}
}

// Publish gives ev the next sequence number (from 1) and, when ev.Time is
// zero, the current time, then offers it to every subscriber without
// blocking. Events that carry pointers (Job, Service, Code) are shared by
// all subscribers: nobody may modify them after Publish.
func (h *Hub) Publish(ev api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		h.seq++ // nobody listens: nothing to allocate
		return
	}
	h.seq++
	ev.Seq = h.seq
	if ev.Time.IsZero() {
		ev.Time = h.now()
	}
	e := &ev
	for s := range h.subs {
		select {
		case s.ch <- e:
		default:
			// Full: waiting would stall the publisher (and the lock it
			// holds), and dropping silently would hide the gap.
			s.overflowed = true
			h.remove(s)
		}
	}
}

// Subscribe returns a subscription of uid that receives every event
// published from now on, buffered up to buffer events (DefaultBuffer when
// < 1), or refuses it: a 503 when the hub has Limits.Max subscribers, a 429
// when uid has Limits.PerUID, each naming its setting.
func (h *Hub) Subscribe(uid, buffer int) (*Sub, error) {
	if buffer < 1 {
		buffer = DefaultBuffer
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return nil, api.Errorf(http.StatusServiceUnavailable, "tend is stopping: no new event streams")
	}
	if h.lim.Max > 0 && len(h.subs) >= h.lim.Max {
		return nil, api.Errorf(http.StatusServiceUnavailable,
			"%d event streams are open, the limit ([control] max_subscribers): try again later", len(h.subs))
	}
	if n := h.perUID[uid]; h.lim.PerUID > 0 && n >= h.lim.PerUID {
		return nil, api.Errorf(http.StatusTooManyRequests,
			"uid %d has %d event streams open, the limit ([control] max_subscribers_per_uid)", uid, n)
	}
	ch := make(chan *api.Event, buffer)
	s := &Sub{C: ch, hub: h, uid: uid, ch: ch}
	h.subs[s] = struct{}{}
	h.perUID[uid]++
	return s, nil
}

// Attach is Subscribe in the shape the control server takes (its
// control.Subscribe): the channel, Overflowed and Close of the new
// subscription.
func (h *Hub) Attach(uid, buffer int) (<-chan *api.Event, func() bool, func(), error) {
	s, err := h.Subscribe(uid, buffer)
	if err != nil {
		return nil, nil, nil, err
	}
	return s.C, s.Overflowed, s.Close, nil
}

// End closes every subscription, as Close would, and refuses new ones:
// tend's last events (shutdown.forced) are published before it, so a
// subscriber receives everything buffered and then the end of its channel
// instead of a connection cut under it. Publish after End is a no-op.
func (h *Hub) End() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	for s := range h.subs {
		h.remove(s)
	}
}

// Subscribers is the number of open subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// remove closes s's channel and forgets it; h.mu must be held, which is what
// makes a send on a closed channel impossible.
func (h *Hub) remove(s *Sub) {
	if s.closed {
		return
	}
	s.closed = true
	delete(h.subs, s)
	if h.perUID[s.uid]--; h.perUID[s.uid] <= 0 {
		delete(h.perUID, s.uid)
	}
	close(s.ch)
}

// Close ends the subscription and closes C. It may be called more than
// once, and concurrently with Publish.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.remove(s)
}

// Overflowed reports whether the hub cut this subscriber off because its
// buffer was full. Events after the last one received were lost.
func (s *Sub) Overflowed() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.overflowed
}
