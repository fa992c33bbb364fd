//go:build linux

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
)

// check is one [[service.check]] of a service: probed while the service is
// ready, one probe in flight at most, the next one period after the last
// ended. Only the loop touches it.
type check struct {
	cfg config.Check
	s   *service

	u        *unit // the run it checks; nil: not checking
	state    string
	failures int // in a row
	lastErr  string
	lastAt   time.Time
	running  bool          // a probe is in flight
	probe    *reaper.Child // an exec probe's process
	timedOut bool          // the exec probe was killed at its timeout
}

// probeSpec is how a probe command of s runs: as the service (user, env,
// dir), stdio on /dev/null, in a process group of its own so that a probe
// killed at its timeout takes its children with it.
func (l *loop) probeSpec(s *service, argv []string) spawn.Spec {
	spec := s.spec
	spec.Argv = argv
	spec.Setpgid, spec.Foreground, spec.InheritFDs = true, false, false
	spec.Files = []uintptr{uintptr(l.null), uintptr(l.null), uintptr(l.null)}
	return spec
}

// startChecks begins the checks of s's run, now ready.
func (l *loop) startChecks(s *service) {
	for _, c := range s.checks {
		c.u, c.state, c.failures, c.lastErr, c.running = s.unit, api.CheckPending, 0, "", false
		l.nextCheck(c)
	}
}

// checking reports whether c still checks the run it was started for.
func (l *loop) checking(c *check, u *unit) bool {
	return c.u == u && c.s.unit == u && c.s.state == stateRunning && !l.sd.active
}

// nextCheck runs c again after its period.
func (l *loop) nextCheck(c *check) {
	u := c.u
	l.tm.after(c.cfg.Period, func() {
		if l.checking(c, u) && !c.running {
			l.runCheck(c)
		}
	})
}

// runCheck probes once: a command, whose exit comes back to checkExit and
// which is killed at the timeout, or a tcp or http probe bounded by it.
func (l *loop) runCheck(c *check) {
	u, s := c.u, c.s
	c.running = true
	p := c.cfg.Probe
	if p.Exec == nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
			defer cancel()
			err := netProbe(ctx, p)
			if ctx.Err() != nil {
				err = fmt.Errorf("timed out after %v", c.cfg.Timeout)
			}
			l.post(func() { l.checkDone(c, u, err) }, nil)
		}()
		return
	}
	l.prepareAsync(l.probeSpec(s, p.Exec), func(pp *spawn.Prepared, err error) {
		if !l.checking(c, u) {
			if pp != nil {
				pp.Release()
			}
			c.running = false
			return
		}
		if err == nil {
			c.probe, err = l.r.Start(func(pidfd *int) (int, error) { return l.fork(pp, pidfd) }, c)
			pp.Release()
		}
		if err != nil {
			l.checkDone(c, u, fmt.Errorf("cannot start: %w", err))
			return
		}
		c.timedOut = false
		child := c.probe
		l.tm.after(c.cfg.Timeout, func() {
			if c.probe == child {
				c.timedOut = true
				_ = child.SignalGroup(unix.SIGKILL)
			}
		})
	})
}

// checkExit is the exit of c's probe command.
func (l *loop) checkExit(c *check, e reaper.Exit) {
	if e.Child != c.probe {
		return
	}
	c.probe = nil
	var err error
	switch {
	case c.timedOut:
		err = fmt.Errorf("timed out after %v: killed", c.cfg.Timeout)
	case e.Code() != 0:
		err = fmt.Errorf("%s", reaper.Describe(e.Status))
	}
	if l.sd.active {
		c.running = false
		l.advanceShutdown() // the level may have waited for this probe
		return
	}
	l.checkDone(c, c.u, err)
}

// checkDone takes the result of one probe of c: passing, one more failure,
// or, at the threshold, failing and what on_failure says.
func (l *loop) checkDone(c *check, u *unit, err error) {
	c.running = false
	if !l.checking(c, u) {
		return
	}
	s := c.s
	c.lastAt = time.Now()
	if err == nil {
		c.failures, c.lastErr = 0, ""
		if c.state != api.CheckPassing {
			if c.state == api.CheckFailing {
				l.log.Info("service check passing again", "service", s.cfg.Name, "check", c.cfg.Name)
			}
			l.setCheck(c, api.CheckPassing)
		}
		l.nextCheck(c)
		return
	}
	c.failures++
	c.lastErr = err.Error()
	l.log.Debug("service check failed", "service", s.cfg.Name, "check", c.cfg.Name, "failures", c.failures, "err", err)
	if c.failures < c.cfg.Threshold || c.state == api.CheckFailing {
		l.nextCheck(c)
		return
	}
	l.log.Error("service check failing", "service", s.cfg.Name, "check", c.cfg.Name, "probe", c.cfg.Probe.String(),
		"failures", c.failures, "err", err, "on_failure", string(c.cfg.OnFailure))
	l.setCheck(c, api.CheckFailing)
	reason := fmt.Sprintf("check %s failed %d times: %s", c.cfg.Name, c.failures, c.lastErr)
	switch c.cfg.OnFailure {
	case config.OnFailureRestart:
		l.failRun(s, reason, false)
	case config.OnFailureStop:
		l.failRun(s, reason, true)
	default:
		l.nextCheck(c) // ignore: keep probing, to see it pass again
	}
}

// setCheck changes c's state and says so on the event stream.
func (l *loop) setCheck(c *check, st string) {
	c.state = st
	svc := serviceStatus(c.s)
	l.publish(api.Event{Type: api.EventServiceCheck, Service: &svc, Check: c.cfg.Name})
}

// checkStatus is the API view of c.
func checkStatus(c *check) api.Check {
	out := api.Check{Name: c.cfg.Name, Probe: c.cfg.Probe.String(), OnFailure: string(c.cfg.OnFailure),
		State: c.state, Failures: c.failures, LastError: c.lastErr}
	if out.State == "" {
		out.State = api.CheckPending
	}
	if !c.lastAt.IsZero() {
		at := c.lastAt
		out.LastAt = &at
	}
	return out
}

// failRun ends s's run because it failed while running (its watchdog, a
// check): the stop signal, SIGKILL after stop_timeout, and then a restart
// as a failure (backoff, max_restarts) whatever the restart policy, or,
// with forGood, the service has failed.
func (l *loop) failRun(s *service, reason string, forGood bool) {
	if s.unit == nil || l.sd.active || s.state == stateStopping || s.apiStopped {
		return
	}
	then := "restarting it"
	if forGood {
		then = "stopping it for good"
	}
	l.log.Error("service failed while running: "+then, "service", s.cfg.Name, "reason", reason)
	s.failedBy, s.failForGood = reason, forGood
	l.signalStop(s, l.stopTimeout(s))
}

// stopTimeout is s's stop_timeout, or [shutdown] grace; -1: no SIGKILL.
func (l *loop) stopTimeout(s *service) time.Duration {
	if s.cfg.StopTimeout >= 0 {
		return s.cfg.StopTimeout
	}
	if l.cfg.Grace == 0 {
		return -1
	}
	return l.cfg.Grace
}

// probesRunning reports whether a probe process of s (ready or check) runs.
func (s *service) probesRunning() bool {
	if s.probe != nil {
		return true
	}
	for _, c := range s.checks {
		if c.probe != nil {
			return true
		}
	}
	return false
}

// killProbes kills every probe process of s: its run ended, or tend stops.
func (s *service) killProbes() {
	if s.probe != nil {
		_ = s.probe.SignalGroup(unix.SIGKILL)
	}
	for _, c := range s.checks {
		if c.probe != nil {
			_ = c.probe.SignalGroup(unix.SIGKILL)
		}
	}
}

// netProbe runs a tcp or http probe.
func netProbe(ctx context.Context, p config.Probe) error {
	if p.TCP != "" {
		return probeTCP(ctx, p.TCP)
	}
	if p.HTTP != "" {
		return probeHTTP(ctx, p.HTTP)
	}
	return errors.New("no probe")
}
