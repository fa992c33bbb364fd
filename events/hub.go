//go:build linux

// Package events fans tend's events (job.started, job.exited, service.*,
// orphan.reaped) out to the subscribers of GET /v1/events. It owns the
// sequence numbers and the subscriber set.
//
// Publish must never block: it is called with other packages' locks held
// (the job manager publishes under its own mutex so that one job's events
// are always in order). A subscriber that falls behind is therefore cut off
// (its channel closed, Overflowed true) instead of slowing tend down; the
// client sees the gap in Seq when it reconnects.
package events

import (
	"sync"
	"time"

	"github.com/tendinit/tend/api"
)

// DefaultBuffer is the channel capacity Subscribe uses for a buffer < 1.
const DefaultBuffer = 256

// Hub is the set of subscribers. The zero value is not usable; call NewHub.
type Hub struct {
	mu   sync.Mutex
	seq  uint64            // guarded by mu; the last Seq given out
	subs map[*Sub]struct{} // guarded by mu; open subscriptions only
	now  func() time.Time  // time.Now; tests replace it
}

// Sub is one subscription. Receive from C until it is closed: by Close, or
// by the hub when the subscriber fell a whole buffer behind (Overflowed).
type Sub struct {
	C <-chan api.Event

	hub        *Hub
	ch         chan api.Event // closed (under hub.mu) exactly once
	closed     bool           // guarded by hub.mu
	overflowed bool           // guarded by hub.mu
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{subs: make(map[*Sub]struct{}), now: time.Now}
}

// Publish gives ev the next sequence number (from 1) and, when ev.Time is
// zero, the current time, then offers it to every subscriber without
// blocking. Events that carry pointers (Job, Service, Code) are shared by
// all subscribers: nobody may modify them after Publish.
func (h *Hub) Publish(ev api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	ev.Seq = h.seq
	if ev.Time.IsZero() {
		ev.Time = h.now()
	}
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			// Full: waiting would stall the publisher (and the lock it
			// holds), and dropping silently would hide the gap.
			s.overflowed = true
			h.remove(s)
		}
	}
}

// Subscribe returns a subscription that receives every event published
// from now on, buffered up to buffer events (DefaultBuffer when < 1).
func (h *Hub) Subscribe(buffer int) *Sub {
	if buffer < 1 {
		buffer = DefaultBuffer
	}
	ch := make(chan api.Event, buffer)
	s := &Sub{C: ch, hub: h, ch: ch}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
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
