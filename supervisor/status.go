//go:build linux

package supervisor

import (
	"net/http"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/signals"
)

// serviceStatus is the API view of one service.
func serviceStatus(s *service) api.Service {
	out := api.Service{Name: s.cfg.Name, State: string(s.state), Runs: s.runs,
		Critical: s.cfg.Critical, Ready: s.state == stateRunning || s.oneshotDone(), Since: s.since}
	out.PID = unitPid(s.unit)
	out.LeftoversKilled = s.leftovers
	out.LastReason = s.lastReason
	out.MemoryMax, out.PidsMax = s.cfg.MemoryMax, s.cfg.PidsMax
	if s.unit != nil {
		out.Track = string(s.unit.track)
	}
	out.StatusText, out.NotifyStopping = s.statusText, s.notifyStopping
	for _, c := range s.checks {
		out.Checks = append(out.Checks, checkStatus(c))
	}
	if s.ended { // of the last run that ended, also while the next one runs
		code := s.lastCode
		out.LastCode = &code
	}
	return out
}

func (l *loop) services() []api.Service {
	out := make([]api.Service, 0, len(l.svcs))
	for _, s := range l.svcs {
		out = append(out, serviceStatus(s))
	}
	return out
}

// serviceOp is POST /v1/services/{name}/{op}. Init mode's main process can
// only be signalled: it is never restarted.
func (l *loop) serviceOp(name, op string, sig unix.Signal) error {
	s := l.byName(name)
	if s == nil {
		if l.cfg.Init {
			return api.Errorf(http.StatusNotFound, "no service %q (init mode runs only %q)", name, config.MainName)
		}
		return api.Errorf(http.StatusNotFound, "no service %q", name)
	}
	if l.sd.active {
		return api.Errorf(http.StatusConflict, "tend is shutting down")
	}
	if l.cfg.Init && op != "signal" {
		return api.Errorf(http.StatusConflict, "init mode cannot %s the main process: only signal", op)
	}
	switch op {
	case "signal":
		if s.unit == nil {
			return api.Errorf(http.StatusConflict, "service %q is %s, not running", name, s.state)
		}
		l.log.Info("signal from the API", "service", name, "sig", signals.Name(sig))
		l.signalService(s, sig, "signal")
		return nil
	case "stop":
		return l.apiStop(s)
	case "start":
		return l.apiStart(s)
	case "restart":
		if s.unit == nil {
			return l.apiStart(s)
		}
		s.restartAfterStop = true
		return l.apiStop(s)
	}
	return api.Errorf(http.StatusNotFound, "unknown operation %q: want signal, restart, stop or start", op)
}

// apiStop is POST /v1/services/{name}/stop: the stop signal, SIGKILL after
// its stop_timeout (or [shutdown] grace), and no restart after.
func (l *loop) apiStop(s *service) error {
	if s.unit == nil {
		if s.state == stateStopped || s.state == stateFailed {
			return api.Errorf(http.StatusConflict, "service %q is already %s", s.cfg.Name, s.state)
		}
		s.gen++ // a pending backoff, start or lookup does nothing now
		l.setState(s, stateStopped, "reason", "stopped from the API")
		l.ended(s)
		return nil
	}
	s.apiStopped = true
	if s.state != stateStopping {
		l.signalStop(s, l.stopTimeout(s))
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
