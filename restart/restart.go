//go:build linux

// Package restart decides, for one supervised service, whether and when it is
// started again after it exits: the restart policy, restart_now and
// never_restart codes, the doubling backoff and the max_restarts budget of
// DESIGN.md §4.
//
// It is pure logic: it keeps no timers, reads no clock and starts nothing, so
// an idle service costs no wake-ups (DESIGN.md §1.8). The supervisor loop owns
// each Tracker, calls Exited with the times it observed, and arms its own
// timer for Decision.Delay. A Tracker is not safe for concurrent use.
package restart

import (
	"fmt"
	"slices"
	"time"
)

// The values of Policy.Mode, spelled as in the restart key of the config.
const (
	ModeAlways    = "always"
	ModeOnFailure = "on-failure"
	ModeNever     = "never"
)

// maxPrealloc bounds the history allocated up front, so that a config with
// max_restarts = 1e9 does not cost memory before the restarts happen.
const maxPrealloc = 64

// Policy is the restart configuration of one service, already decoded.
type Policy struct {
	// Mode is "always", "on-failure" or "never"; "" means "on-failure", the
	// documented default. Unknown values also act as "on-failure": Validate
	// refuses them, and the config is checked before anything starts.
	Mode string
	// RestartNow lists exit codes that restart at once (no delay) whatever
	// the Mode; such restarts still count toward MaxRestarts.
	RestartNow []int
	// NeverRestart lists exit codes that never restart. It wins over
	// RestartNow when a code is in both. A signal matches neither list.
	NeverRestart []int
	// Backoff is the first delay; each further delayed restart doubles it.
	Backoff time.Duration
	// BackoffMax caps the delay; a run that lasted longer than BackoffMax
	// resets it to Backoff. A BackoffMax below Backoff acts as Backoff.
	BackoffMax time.Duration
	// MaxRestarts is how many restarts are allowed within Window; the one
	// that would exceed it gives up instead. 0 allows none; a negative value
	// means no limit.
	MaxRestarts int
	// Window is the sliding window of MaxRestarts. Zero or negative means
	// restarts are never forgotten (until Reset).
	Window time.Duration
}

// Decision is what the supervisor does after one exit.
type Decision struct {
	// Restart is true when the service is to be started again after Delay.
	Restart bool
	// Delay is how long to wait before starting it again.
	Delay time.Duration
	// GaveUp is true when the service has failed for good because
	// MaxRestarts was reached. A service that stopped because of its policy
	// or a never_restart code has not given up: it simply stopped.
	GaveUp bool
	// Reason is a short explanation for the log, e.g. "backoff" or
	// "exit code 78 in never_restart".
	Reason string
}

// Tracker is the restart state of one service: the next backoff delay and
// the times of its recent restarts. It is owned by the supervisor loop.
type Tracker struct {
	p        Policy
	next     time.Duration // delay of the next delayed restart
	history  []time.Time   // restart times still inside Window, oldest first; len <= MaxRestarts
	restarts int           // restarts decided since New or Reset
}

// New returns a Tracker for p, normalising out-of-range durations: negative
// backoffs act as 0 and BackoffMax is raised to Backoff if it is below it.
func New(p Policy) *Tracker {
	p.Backoff = max(p.Backoff, 0)
	p.BackoffMax = max(p.BackoffMax, p.Backoff)
	// Copy the code lists so a caller editing its config cannot change a
	// running service's policy behind the loop's back.
	p.RestartNow = slices.Clone(p.RestartNow)
	p.NeverRestart = slices.Clone(p.NeverRestart)
	t := &Tracker{p: p, next: p.Backoff}
	if p.MaxRestarts > 0 {
		t.history = make([]time.Time, 0, min(p.MaxRestarts, maxPrealloc))
	}
	return t
}

// Reset forgets the backoff and the restart history, as after a manual start
// or restart from the control API: the service gets its full budget again.
func (t *Tracker) Reset() {
	t.next = t.p.Backoff
	t.history = t.history[:0]
	t.restarts = 0
}

// Restarts returns how many restarts were decided since New or the last Reset.
func (t *Tracker) Restarts() int { return t.restarts }

// Exited records that the run started at started ended at now, with exit
// code code (0-255), or killed by signal number code when signaled is true,
// and returns what to do next. Both times should come from time.Now, so that
// the monotonic clock measures the run.
func (t *Tracker) Exited(started, now time.Time, code int, signaled bool) Decision {
	// A run that outlived the longest delay was healthy for a while: the
	// next failure starts the doubling over instead of waiting the cap.
	if now.Sub(started) > t.p.BackoffMax {
		t.next = t.p.Backoff
	}
	if !signaled && slices.Contains(t.p.NeverRestart, code) {
		return Decision{Reason: fmt.Sprintf("exit code %d in never_restart", code)}
	}
	immediate := !signaled && slices.Contains(t.p.RestartNow, code)
	if !immediate {
		if reason, ok := t.wanted(code, signaled); !ok {
			return Decision{Reason: reason}
		}
	}
	if immediate {
		if !t.spend(now) {
			return Decision{GaveUp: true, Reason: t.limitReason()}
		}
		// restart_now is a planned restart (e.g. a reload): it leaves the
		// backoff where it was.
		return Decision{Restart: true, Reason: fmt.Sprintf("exit code %d in restart_now", code)}
	}
	return t.backoff(now, "backoff")
}

// Failed records a run that tend ended because it failed while it ran (its
// watchdog expired, a check failed): a restart whatever the Mode and the
// exit code, after the backoff, within MaxRestarts like any other.
func (t *Tracker) Failed(started, now time.Time, reason string) Decision {
	if now.Sub(started) > t.p.BackoffMax {
		t.next = t.p.Backoff
	}
	return t.backoff(now, reason)
}

// backoff spends a restart and takes the next delay, or gives up.
func (t *Tracker) backoff(now time.Time, reason string) Decision {
	if !t.spend(now) {
		return Decision{GaveUp: true, Reason: t.limitReason()}
	}
	delay := t.next
	t.next = doubled(t.next, t.p.BackoffMax)
	return Decision{Restart: true, Delay: delay, Reason: reason}
}

// wanted applies Mode to an exit that matched neither code list. It returns
// false and the reason when the policy does not restart.
func (t *Tracker) wanted(code int, signaled bool) (string, bool) {
	switch t.p.Mode {
	case ModeNever:
		return "policy never", false
	case ModeAlways:
		return "", true
	default: // ModeOnFailure and "": a signal death is a failure
		if !signaled && code == 0 {
			return "policy on-failure, exit code 0", false
		}
		return "", true
	}
}

// spend takes one restart from the budget at now, or returns false when
// MaxRestarts restarts already happened within Window.
func (t *Tracker) spend(now time.Time) bool {
	if t.p.MaxRestarts < 0 {
		t.restarts++
		return true
	}
	if t.p.Window > 0 {
		// Drop restarts that left the window: one that happened exactly
		// Window ago no longer counts.
		i := 0
		for i < len(t.history) && now.Sub(t.history[i]) >= t.p.Window {
			i++
		}
		// Shift down instead of reslicing forward, so the backing array
		// is reused and the history never grows past MaxRestarts.
		t.history = t.history[:copy(t.history, t.history[i:])]
	}
	if len(t.history) >= t.p.MaxRestarts {
		return false
	}
	t.history = append(t.history, now)
	t.restarts++
	return true
}

// limitReason says which limit was reached, for Decision.Reason.
func (t *Tracker) limitReason() string {
	if t.p.Window > 0 {
		return fmt.Sprintf("max_restarts %d within %v reached", t.p.MaxRestarts, t.p.Window)
	}
	return fmt.Sprintf("max_restarts %d reached", t.p.MaxRestarts)
}

// doubled returns d*2 capped at limit, without overflowing.
func doubled(d, limit time.Duration) time.Duration {
	if d > limit/2 {
		return limit
	}
	return d * 2
}
