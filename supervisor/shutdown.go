//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
)

// finalWait bounds the wait after the last SIGKILL: a process stuck in D
// state may never go, and tend must still exit (DESIGN.md §1.6).
const finalWait = 3 * time.Second

// shutdown is the one stop, the same in both modes: jobs and the last level
// of services (the main process) first, together; then each level of
// services in reverse start order, those of a level in parallel; then the
// sweep of whatever is left; all within the budget (Config.Grace), after
// which everything is killed. Owned by the loop.
type shutdown struct {
	active bool
	reason string
	byMain bool // the main service's exit decides the code
	// [jobs] stop: waitJobs: the services wait until every job has
	// ended (first); jobsAfter: the jobs wait until the first level
	// stopped (the main service) has exited (after_main).
	waitJobs, jobsAfter bool
	deadline            time.Time // end of the budget; zero: none
	level               int       // levels[level-1] is being stopped; 0: services done
	sweeping            bool      // the sweep has begun
	killed              bool      // the final SIGKILL went out
	started             time.Time
	units               []*stopRecord // what was running at the start, in stop order; see summary.go
}

// left is what remains of the budget, or -1 without a budget.
func (sd *shutdown) left() time.Duration {
	if sd.deadline.IsZero() {
		return -1
	}
	return max(time.Until(sd.deadline), 0)
}

// capped is d, or what is left of the budget if that is less; d < 0 means
// "until the budget ends" (-1 when there is none: no limit).
func (sd *shutdown) capped(d time.Duration) time.Duration {
	left := sd.left()
	switch {
	case d < 0:
		return left
	case left >= 0 && left < d:
		return left
	}
	return d
}

// shutdown starts the stop. code is tend's exit code unless byMain, in which
// case the main service's exit decides it. Called again, it only logs.
func (l *loop) shutdown(reason string, code int, byMain bool) {
	if l.sd.active {
		l.log.Debug("already stopping", "reason", reason)
		return
	}
	l.sd = shutdown{active: true, reason: reason, byMain: byMain && l.main != nil}
	l.code = code
	if l.sd.byMain && l.main.unit == nil && l.main.ended {
		l.code = l.main.lastCode // it has exited already
	}
	if g := l.cfg.Grace; g > 0 {
		l.sd.deadline = time.Now().Add(g)
		l.tm.after(g, l.graceOver)
	}
	l.log.Info("shutting down", "reason", reason, "grace", l.cfg.Grace)
	l.recordRunning()
	for _, s := range l.svcs {
		if s.state == statePending || s.state == stateBackoff || (s.state == stateStarting && s.unit == nil) {
			s.gen++ // a pending start, backoff or lookup does nothing now
			l.setState(s, stateStopped)
		}
	}
	l.sd.level = len(l.levels)
	switch l.jobsConfig().Stop {
	case config.JobsStopAfterMain:
		l.sd.jobsAfter = true
	case config.JobsStopFirst:
		l.stopJobs()
		if l.jobs.Running() > 0 {
			l.sd.waitJobs = true // jobsEnded goes on
			return
		}
	default:
		l.stopJobs()
	}
	l.stopNextLevel()
}

// jobsEnded is the last running job's exit during the shutdown: with
// [jobs] stop = "first" the services' stop begins now.
func (l *loop) jobsEnded() {
	if l.sd.waitJobs && l.jobs.Running() == 0 {
		l.sd.waitJobs = false
		l.stopNextLevel()
	}
}

// stopNextLevel stops every service of the current level that runs; with
// none running it moves on, down to the sweep.
func (l *loop) stopNextLevel() {
	for l.sd.level > 0 {
		running := false
		for _, s := range l.levels[l.sd.level-1] {
			if l.stopService(s) {
				running = true
			}
		}
		if running {
			return // advanceShutdown continues when they have exited
		}
		l.sd.level--
		l.jobsAfterMain()
	}
	l.jobsAfterMain() // no level at all
	l.sweep()
}

// jobsAfterMain stops the jobs, with [jobs] stop = "after_main", once the
// first level stopped has exited.
func (l *loop) jobsAfterMain() {
	if l.sd.jobsAfter {
		l.sd.jobsAfter = false
		l.stopJobs()
	}
}

// advanceShutdown is called after each service exit during the shutdown.
func (l *loop) advanceShutdown() {
	if l.sd.level == 0 || l.sd.sweeping {
		return
	}
	for _, s := range l.levels[l.sd.level-1] {
		if s.unit != nil || s.probesRunning() {
			return
		}
	}
	l.sd.level--
	l.jobsAfterMain()
	l.stopNextLevel()
}

// stopService sends s its stop signal and arms the SIGKILL of its group at
// its stop_timeout, capped by what is left of the budget. It reports
// whether a process of s is still running.
func (l *loop) stopService(s *service) bool {
	s.killProbes()
	if s.unit == nil {
		if s.state != stateFailed {
			l.setState(s, stateStopped)
		}
		return s.probesRunning()
	}
	if s.state == stateStopping {
		return true
	}
	l.signalStop(s, l.sd.capped(s.cfg.StopTimeout))
	return true
}

// signalStop sends s its stop signal (unless init mode forwarded it
// already) and SIGKILLs its group if it is still there after timeout; a
// timeout < 0 is none.
func (l *loop) signalStop(s *service, timeout time.Duration) {
	args := []any{"sig", signals.Name(s.cfg.StopSignal)}
	if timeout >= 0 {
		args = append(args, "timeout", timeout.Round(time.Millisecond))
	}
	l.setState(s, stateStopping, args...)
	s.gen++
	switch {
	case timeout == 0:
		l.killService(s) // stop_timeout = 0: SIGKILL at once
		return
	case s.stopSent:
	case s.unit.track == config.TrackGroup && s.cfg.KillMode != config.KillMainOnly && !l.cfg.Init:
		// A group's members can be reached only while its leader is
		// unreaped: they get the stop signal with it, not after.
		if err := l.signalUnit(s.unit, s.cfg.StopSignal); err != nil && !errors.Is(err, reaper.ErrNotRunning) {
			l.appendErr(fmt.Errorf("stop %s (%s): %w", s.cfg.Name, signals.Name(s.cfg.StopSignal), err))
		}
	default:
		sig := s.cfg.StopSignal
		if s.stopWith != 0 {
			sig = s.stopWith // init mode: what tend got, held back
		}
		l.signalService(s, sig, "stop")
	}
	if timeout < 0 {
		return
	}
	u := s.unit
	l.tm.after(timeout, func() {
		if s.unit == u {
			l.log.Warn("service did not stop in time: killing its unit", "service", s.cfg.Name, "timeout", timeout.Round(time.Millisecond))
			l.killService(s)
		}
	})
}

// signalService sends sig to s's process (its group with -g for main);
// what for names the act in an error.
func (l *loop) signalService(s *service, sig unix.Signal, what string) {
	if s.unit == nil {
		return
	}
	err := l.signalMain(s.unit, sig, s == l.main && l.cfg.Group)
	if err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.appendErr(fmt.Errorf("%s %s (%s): %w", what, s.cfg.Name, signals.Name(sig), err))
	}
}

// killService SIGKILLs the current run of s: its process group through
// its leader's handle, only while the leader is unreaped (when the group's
// number cannot be anyone else's), or all of its unit through its helper.
func (l *loop) killService(s *service) {
	if s.unit == nil {
		return
	}
	l.sd.markKilled("service " + s.cfg.Name)
	if err := l.killUnit(s.unit); err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.appendErr(fmt.Errorf("kill %s: %w", s.cfg.Name, err))
	}
}

// sweep ends whatever outlived the services: SIGTERM to everything left,
// SIGKILL after the cleanup grace (or at the end of the budget), then a
// bounded wait for the last exits.
func (l *loop) sweep() {
	l.sd.sweeping = true
	if l.gone() {
		l.finish()
		return
	}
	wait := l.sd.capped(l.cfg.CleanupGrace)
	l.log.Info("sweeping what is left", "sigterm_then_sigkill_after", wait.Round(time.Millisecond))
	if wait == 0 {
		l.killAll()
		return
	}
	l.appendErr(l.signalAll(unix.SIGTERM))
	l.tm.after(wait, l.killAll)
}

// graceOver is the end of the budget: SIGKILL to everything.
func (l *loop) graceOver() {
	if l.finished || l.sd.killed {
		return
	}
	l.log.Warn("shutdown grace over: killing every process", "grace", l.cfg.Grace)
	l.sd.sweeping = true
	l.killAll()
}

// killAll sends the final SIGKILL and gives the kernel finalWait to deliver
// the exits; then tend leaves, whatever is stuck in D state.
func (l *loop) killAll() {
	if l.finished || l.sd.killed {
		return
	}
	l.sd.killed = true
	if l.onlyLeftovers() {
		l.sd.sweepKilled()
	}
	for _, s := range l.svcs {
		l.killService(s)
	}
	for _, j := range l.jobs.RunningJobs() {
		l.killJob(j)
	}
	l.appendErr(l.signalAll(unix.SIGKILL))
	if l.gone() {
		l.finish()
		return
	}
	l.tm.after(finalWait, func() {
		if !l.finished {
			l.appendErr(errors.New("processes still there after SIGKILL (D state?): exiting anyway"))
			l.finish()
		}
	})
}

// onlyLeftovers reports whether what is still there belongs to no
// service or job: the final SIGKILL then kills leftovers, not a unit.
func (l *loop) onlyLeftovers() bool {
	for _, s := range l.svcs {
		if s.unit != nil {
			return false
		}
	}
	return l.jobs.Running() == 0 && !l.r.Idle()
}

// gone reports whether nothing is left: every service's and job's exit has
// reached the loop, and tend has no child at all.
func (l *loop) gone() bool {
	for _, s := range l.svcs {
		if s.unit != nil || s.probesRunning() {
			return false
		}
	}
	return l.jobs.Running() == 0 && l.r.Idle()
}

// finish ends the loop.
func (l *loop) finish() {
	l.summarize()
	l.log.Info("stopped", "code", l.code, "reason", l.sd.reason, "orphans_reaped", l.r.Orphans())
	l.finished = true
}

// health is GET /v1/health at level (api.HealthAlive, api.HealthReady)
// over the services [health] include counts: critical ones, or all.
func (l *loop) health(level string) api.Health {
	h := api.Health{Healthy: !l.sd.active, Level: level, Include: "critical"}
	if l.cfg.File.Health.IncludeAll {
		h.Include = "all"
	}
	if l.sd.active {
		h.NotReady = append(h.NotReady, "(stopping: "+l.sd.reason+")")
		h.Down = append(h.Down, api.Down{Reason: "tend is stopping: " + l.sd.reason})
	}
	if zd := l.zombiesDown(); len(zd) > 0 {
		h.Healthy = false
		h.Down = append(h.Down, zd...)
	}
	for _, s := range l.svcs {
		if s.state == stateFailed {
			h.Failed = append(h.Failed, s.cfg.Name)
		}
		if !s.cfg.Critical && !l.cfg.File.Health.IncludeAll {
			continue
		}
		if why := l.down(s, level); why != "" {
			h.Healthy = false
			h.Down = append(h.Down, api.Down{Service: s.cfg.Name, Reason: why})
			if level == api.HealthReady {
				h.NotReady = append(h.NotReady, s.cfg.Name)
			}
		}
	}
	return h
}

// down says why s makes the health at level fail, or "".
func (l *loop) down(s *service, level string) string {
	if level == api.HealthAlive {
		if s.state == stateFailed {
			return "failed"
		}
		for _, c := range s.checks {
			if c.state == api.CheckFailing && c.cfg.OnFailure == config.OnFailureIgnore {
				return "check " + c.cfg.Name + " failing: " + c.lastErr
			}
		}
		return ""
	}
	switch {
	case s.oneshotDone():
		return ""
	case s.state != stateRunning:
		return string(s.state)
	case s.notifyStopping:
		return "stopping (STOPPING=1)"
	}
	for _, c := range s.checks {
		if c.state == api.CheckFailing {
			return "check " + c.cfg.Name + " failing: " + c.lastErr
		}
	}
	return ""
}
