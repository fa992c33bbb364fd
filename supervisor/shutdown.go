//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
)

// onSignal routes a signal sent to tend. Each service's `signals` map comes
// first (a 0 value: not forwarded); otherwise INT and TERM start the
// shutdown and every other forwardable signal goes to every service.
func (l *loop) onSignal(sig unix.Signal) {
	if !signals.Forwardable(sig) {
		return
	}
	for _, s := range l.svcs {
		out, mapped := s.cfg.Signals[sig]
		if !mapped {
			if sig == unix.SIGINT || sig == unix.SIGTERM {
				continue
			}
			out = sig
		}
		if out == 0 || s.pid == 0 {
			continue
		}
		group := s == l.main && l.cfg.Group
		l.log.Debug("forwarding signal", "sig", signals.Name(out), "service", s.cfg.Name, "pid", s.pid)
		if err := l.r.Signal(s.pid, out, group); err != nil && !errors.Is(err, reaper.ErrNotRunning) {
			l.appendErr(fmt.Errorf("forward %s to %s: %w", signals.Name(out), s.cfg.Name, err))
		}
	}
	if sig == unix.SIGINT || sig == unix.SIGTERM {
		code := exitSignalOffset + int(sig)
		l.shutdown("received "+signals.Name(sig), code, l.main != nil)
	}
}

const exitSignalOffset = 128

// shutdown stops everything: services in reverse start order, those of one
// level in parallel, then the sweep of what is left, all within
// [shutdown] grace. code is tend's exit code unless byMain, in which case the
// main service's exit decides it.
func (l *loop) shutdown(reason string, code int, byMain bool) {
	if l.stopping {
		l.log.Debug("already stopping", "reason", reason)
		return
	}
	grace := l.cfg.File.Shutdown.Grace
	l.stopping, l.reason, l.code, l.byMain = true, reason, code, byMain
	if byMain && l.main.pid == 0 && l.main.runs > 0 {
		l.code = l.main.lastCode // it has exited already
	}
	l.deadline = time.Now().Add(grace)
	l.log.Info("shutting down", "reason", reason, "grace", grace)
	l.after(grace, l.graceOver)
	l.stopLevel = len(l.levels)
	for _, s := range l.svcs {
		if s.state == statePending || s.state == stateBackoff {
			s.gen++
			l.setState(s, stateStopped)
		}
	}
	if l.cfg.Jobs != nil {
		// Jobs first: they are the services' work, and a gateway drains
		// better without workers dying under it... but jobs are killed by
		// their own stop_grace, within the same budget.
		l.jobsDone = l.cfg.Jobs.Shutdown(l.deadline)
		return // the loop calls stopNextLevel once jobsDone closes
	}
	l.stopNextLevel()
}

// stopNextLevel sends the stop signal to every service of the current level
// that runs; with none running it moves on, down to the sweep.
func (l *loop) stopNextLevel() {
	for l.stopLevel > 0 {
		running := false
		for _, s := range l.levels[l.stopLevel-1] {
			if l.stopService(s) {
				running = true
			}
		}
		if running {
			return // advanceShutdown continues when they have exited
		}
		l.stopLevel--
	}
	l.sweep()
}

// advanceShutdown is called after each exit during the shutdown.
func (l *loop) advanceShutdown() {
	if l.stopLevel == 0 || l.sweeping {
		return
	}
	for _, s := range l.levels[l.stopLevel-1] {
		if s.pid != 0 || s.probePid != 0 {
			return
		}
	}
	l.stopLevel--
	l.stopNextLevel()
}

// stopService sends s its stop signal and arms the SIGKILL of its group at
// its stop_timeout, capped by what is left of the grace. It reports whether
// a process of s is still running.
func (l *loop) stopService(s *service) bool {
	if s.probePid != 0 {
		_ = l.r.Signal(s.probePid, unix.SIGKILL, false)
	}
	if s.pid == 0 {
		if s.state != stateFailed {
			l.setState(s, stateStopped)
		}
		return s.probePid != 0
	}
	if s.state == stateStopping {
		return true
	}
	left := time.Until(l.deadline)
	timeout := left
	if s.cfg.StopTimeout > 0 && s.cfg.StopTimeout < left {
		timeout = s.cfg.StopTimeout
	}
	l.signalStop(s, timeout)
	return true
}

// signalStop sends s its stop signal and SIGKILLs its group if it is still
// there after timeout.
func (l *loop) signalStop(s *service, timeout time.Duration) {
	l.setState(s, stateStopping, "sig", signals.Name(s.cfg.StopSignal), "timeout", timeout.Round(time.Millisecond))
	s.gen++
	if err := l.r.Signal(s.pid, s.cfg.StopSignal, false); err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.appendErr(fmt.Errorf("stop %s: %w", s.cfg.Name, err))
	}
	pid := s.pid
	l.after(timeout, func() {
		if s.pid == pid {
			l.log.Warn("service did not stop in time: killing its group", "service", s.cfg.Name, "timeout", timeout.Round(time.Millisecond))
			l.killService(s)
		}
	})
}

// apiStop is POST /v1/services/{name}/stop: the stop signal, SIGKILL after
// its stop_timeout (or [shutdown] grace), and no restart after.
func (l *loop) apiStop(s *service) error {
	if s.pid == 0 {
		if s.state == stateStopped || s.state == stateFailed {
			return api.Errorf(http.StatusConflict, "service %q is already %s", s.cfg.Name, s.state)
		}
		s.gen++ // a pending backoff or start does nothing now
		l.setState(s, stateStopped, "reason", "stopped from the API")
		l.ended(s)
		return nil
	}
	s.apiStopped = true
	if s.state != stateStopping {
		timeout := s.cfg.StopTimeout
		if timeout <= 0 {
			timeout = l.cfg.File.Shutdown.Grace
		}
		l.signalStop(s, timeout)
	}
	return nil
}

// apiStart is POST /v1/services/{name}/start: a stopped or failed service
// runs again with a fresh restart budget.
func (l *loop) apiStart(s *service) error {
	switch s.state {
	case stateStopped, stateFailed, stateBackoff:
	default:
		return api.Errorf(http.StatusConflict, "service %q is %s", s.cfg.Name, s.state)
	}
	s.tracker.Reset()
	l.start(s)
	return nil
}

// killService SIGKILLs the process group of s (the group exists at least as
// long as its unreaped leader, so the number cannot have been recycled).
func (l *loop) killService(s *service) {
	if s.pid == 0 {
		return
	}
	if err := l.r.Signal(s.pid, unix.SIGKILL, true); err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.appendErr(fmt.Errorf("kill %s: %w", s.cfg.Name, err))
	}
}

// sweep ends whatever outlived the services: SIGTERM to everything left,
// SIGKILL after the cleanup grace (or at the end of the budget), then a
// bounded wait for the last exits.
func (l *loop) sweep() {
	l.sweeping = true
	if l.gone() {
		l.finish()
		return
	}
	wait := min(l.cfg.CleanupGrace, time.Until(l.deadline))
	l.log.Info("sweeping what is left", "sigterm_then_sigkill_after", wait.Round(time.Millisecond))
	l.appendErr(signalAll(unix.SIGTERM, l.pid1))
	l.after(max(wait, 0), l.killAll)
}

// graceOver is the end of the shutdown budget: SIGKILL to everything.
func (l *loop) graceOver() {
	if l.finished || l.killed {
		return
	}
	l.log.Warn("shutdown grace over: killing every process", "grace", l.cfg.File.Shutdown.Grace)
	l.sweeping = true
	l.killAll()
}

// killAll sends the final SIGKILL and gives the kernel finalWait to deliver
// the exits; then tend leaves, whatever is stuck in D state.
func (l *loop) killAll() {
	if l.finished || l.killed {
		return
	}
	l.killed = true
	for _, s := range l.svcs {
		l.killService(s)
	}
	l.appendErr(signalAll(unix.SIGKILL, l.pid1))
	if l.gone() {
		l.finish()
		return
	}
	l.after(finalWait, func() {
		if !l.finished {
			l.appendErr(errors.New("processes still there after SIGKILL (D state?): exiting anyway"))
			l.finish()
		}
	})
}

// gone reports whether nothing is left: every service's exit (and probe's)
// has reached the loop, and tend has no child at all. Exits may still sit in
// l.exits when the reaper already reports the tree empty, and the main
// service's code must not be lost with them.
func (l *loop) gone() bool {
	for _, s := range l.svcs {
		if s.pid != 0 || s.probePid != 0 {
			return false
		}
	}
	return l.r.NoChildren()
}
