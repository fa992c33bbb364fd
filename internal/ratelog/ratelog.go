// Package ratelog says a recurring condition (a limit hit in a flood) at
// most once per interval, so that a caller who keeps hitting a limit cannot
// fill tend's log: the first time at once, then the first time after each
// interval, with how many times it was not said meanwhile.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// Interval is the interval of a zero Limiter.
const Interval = 10 * time.Second

// Limiter is one recurring condition; its zero value is ready and uses
// Interval. It is safe for concurrent use.
type Limiter struct {
	Interval time.Duration    // 0: Interval
	Now      func() time.Time // nil: time.Now

	mu    sync.Mutex
	last  time.Time // guarded by mu: when it was last said
	quiet int       // guarded by mu: not said since
}

// Say logs msg at warning level unless it was said less than an interval
// ago; the line then carries the count of those not said.
func (s *Limiter) Say(log *slog.Logger, msg string, args ...any) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	interval := s.Interval
	if interval <= 0 {
		interval = Interval
	}
	s.mu.Lock()
	t := now()
	if !s.last.IsZero() && t.Sub(s.last) < interval {
		s.quiet++
		s.mu.Unlock()
		return
	}
	quiet := s.quiet
	s.last, s.quiet = t, 0
	s.mu.Unlock()
	if quiet > 0 {
		args = append(args, "suppressed", quiet, "interval", interval)
	}
	log.Warn(msg, args...)
}
