//go:build linux

package jobs

import (
	"errors"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
)

// Signal sends a signal to job id: to its leader, or with Tree to its whole
// process group (while the leader is unreaped: the group's number cannot be
// reused before). With Kill, the group also gets SIGKILL after StopGrace if
// the leader is still there, and the job's reason becomes killed.
//
// A queued job has no process: SIGTERM or SIGKILL (or Kill) drops it from
// the queue, reason killed, its passed fds closed; any other signal is 409,
// as is any signal to an exited job. Errors: 404 as Get, 400 bad signal.
func (m *Manager) Signal(c Caller, id string, req api.SignalRequest) error {
	sig := unix.SIGTERM
	if req.Signal != "" {
		var err error
		if sig, err = signals.Parse(req.Signal); err != nil {
			return badRequest("%v", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.visible(c, id)
	if j == nil {
		return notFound(id)
	}
	switch j.rec.State {
	case api.StateQueued:
		// A signal that would end the job ends it before it starts (^C
		// forwarded by tend spawn must not be swallowed); one that would
		// not (WINCH, CONT, a stop) has nothing to act on yet.
		if !terminates(sig) && !req.Kill {
			return api.Errorf(http.StatusConflict, "job %s is queued: %s would not end it, so there is nothing to signal yet", id, signals.Name(sig))
		}
		m.dequeue(j)
		m.dropped(j, sig)
		m.finish(j, api.ReasonKilled)
		return nil
	case api.StateExited:
		return api.Errorf(http.StatusConflict, "job %s has exited", id)
	}
	if err := m.r.Signal(*j.rec.PID, sig, req.Tree); err != nil {
		if errors.Is(err, reaper.ErrNotRunning) {
			// Reaped, its exit not yet recorded: it has exited.
			return api.Errorf(http.StatusConflict, "job %s has exited", id)
		}
		return api.Errorf(http.StatusInternalServerError, "signal %s to job %s: %v", signals.Name(sig), id, err)
	}
	if req.Kill {
		m.setReason(j, api.ReasonKilled)
		m.killAfter(j, m.cfg.StopGrace)
	}
	return nil
}

// ConnClosed tells the manager that connection conn has closed. Every bound
// job left without an open bound connection is stopped (SIGTERM to its
// group, SIGKILL after StopGrace), reason disconnected; a queued one is
// dropped.
func (m *Manager) ConnClosed(conn uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.conns[conn]
	delete(m.conns, conn)
	for j := range set {
		delete(j.conns, conn)
		if len(j.conns) == 0 {
			m.disconnected(j)
		}
	}
}

// Shutdown stops the manager: Submit answers 503 from now on, queued jobs
// are dropped (reason shutdown, fds closed) and each running job's group
// gets SIGTERM, then SIGKILL after StopGrace or at deadline, whichever is
// first (a zero deadline means StopGrace). The channel is closed once every running job's leader has exited
// (at once when none runs). Calling it again only shortens the deadline.
func (m *Manager) Shutdown(deadline time.Time) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopping = true
	for _, j := range m.queue {
		m.dropped(j, unix.SIGTERM)
		m.finish(j, api.ReasonShutdown)
	}
	clear(m.queue)
	m.queue = m.queue[:0]
	grace := m.cfg.StopGrace
	if !deadline.IsZero() {
		grace = min(grace, deadline.Sub(m.now()))
	}
	for _, j := range m.jobs {
		if j.rec.State == api.StateRunning {
			m.stop(j, api.ReasonShutdown, grace)
		}
	}
	if m.running == 0 && !m.closed {
		m.closed = true
		close(m.drained)
	}
	return m.drained
}

// stop sends SIGTERM to j's group and makes sure SIGKILL follows within
// grace (at once when grace <= 0). m.mu must be held and j running.
func (m *Manager) stop(j *job, reason string, grace time.Duration) {
	m.setReason(j, reason)
	if grace <= 0 {
		m.signalGroup(j, unix.SIGKILL)
		return
	}
	m.signalGroup(j, unix.SIGTERM)
	m.killAfter(j, grace)
}

// setReason records why tend stops j; the first reason stays.
func (m *Manager) setReason(j *job, reason string) {
	if j.reason == "" {
		j.reason = reason
	}
}

// killAfter schedules SIGKILL of j's group after grace, unless one is
// already due sooner. It replaces a pending timeout: the job is being
// stopped anyway. m.mu must be held.
func (m *Manager) killAfter(j *job, grace time.Duration) {
	due := m.now().Add(grace)
	if !j.killAt.IsZero() && !due.Before(j.killAt) {
		return
	}
	m.arm(j, grace, func(j *job) { m.signalGroup(j, unix.SIGKILL) })
	j.killAt = due
}

// signalGroup signals j's process group through the reaper, which refuses
// once the leader is reaped: the group's number may be reused after that.
func (m *Manager) signalGroup(j *job, sig unix.Signal) {
	err := m.r.Signal(*j.rec.PID, sig, true)
	if err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		m.log.Warn("signal job group", "job", j.rec.ID, "pid", *j.rec.PID, "sig", signals.Name(sig), "err", err)
	}
}

// arm replaces j's timer with one that calls fire(j), with m.mu held, after
// d, if j still runs and the timer was not replaced meanwhile. A timer
// exists only while a running job has a timeout or a pending kill, so an
// idle tend has none (invariant 8). m.mu must be held.
func (m *Manager) arm(j *job, d time.Duration, fire func(*job)) {
	m.disarm(j)
	gen := j.timerGen
	j.timer = time.AfterFunc(d, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		// Stop cannot recall a firing that already waits for mu.
		if j.timerGen != gen || j.rec.State != api.StateRunning {
			return
		}
		j.timer, j.killAt = nil, time.Time{}
		j.timerGen++
		fire(j)
	})
}

// disarm stops j's timer, if any; m.mu must be held.
func (m *Manager) disarm(j *job) {
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
	j.killAt = time.Time{}
	j.timerGen++
}

// dropped records that queued job j ends, never started, as if sig had
// killed it: a client waiting on it (tend spawn, tend wait) then exits as
// a program killed by sig would, instead of finding neither code nor
// signal. m.mu must be held.
func (m *Manager) dropped(j *job, sig unix.Signal) {
	name := signals.Name(sig)
	j.rec.Signal = &name
}

// terminates reports whether sig's default action ends a process (signal(7)):
// all but those ignored (CHLD, CONT, URG, WINCH) and those that stop.
func terminates(sig unix.Signal) bool {
	switch sig {
	case unix.SIGCHLD, unix.SIGCONT, unix.SIGURG, unix.SIGWINCH,
		unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return false
	}
	return true
}
