//go:build linux

package supervisor

import (
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/signals"
)

// controlTimeout bounds how long an API request waits for the loop, which
// answers between two events and never blocks for long.
const controlTimeout = 5 * time.Second

// Controller is how the control API reaches the running loop (init or
// supervisor mode): each call is a closure run on the loop goroutine, the
// only one that touches service state. It answers for a loop that has not
// started yet or has ended, too.
type Controller struct {
	reqs chan func(provider)
	done chan struct{} // closed when the loop has ended
}

// provider is what a loop answers the Controller with; it runs on the loop.
type provider interface {
	services() []api.Service
	serviceOp(name, op string, sig unix.Signal) error
	health() api.Health
	isStopping() bool
}

// NewController returns a Controller to give to the control server and to
// Run or RunInit.
func NewController() *Controller {
	return &Controller{reqs: make(chan func(provider)), done: make(chan struct{})}
}

// ask runs f on the loop and waits for it, with a deadline.
func (c *Controller) ask(f func(provider)) bool {
	if c == nil {
		return false
	}
	ran := make(chan struct{})
	select {
	case c.reqs <- func(p provider) { f(p); close(ran) }:
		<-ran
		return true
	case <-c.done:
	case <-time.After(controlTimeout):
	}
	return false
}

// Services lists every service, whatever its state.
func (c *Controller) Services() []api.Service {
	var out []api.Service
	c.ask(func(p provider) { out = p.services() })
	return out
}

// ServiceOp signals, restarts, stops or starts a service.
func (c *Controller) ServiceOp(name, op string, sig unix.Signal) error {
	var err error
	if !c.ask(func(p provider) { err = p.serviceOp(name, op, sig) }) {
		return api.Errorf(http.StatusServiceUnavailable, "tend is not supervising (starting or stopped)")
	}
	return err
}

// Health reports whether every critical service is ready.
func (c *Controller) Health() api.Health {
	h := api.Health{Healthy: false, NotReady: []string{"(tend is not running its services)"}}
	c.ask(func(p provider) { h = p.health() })
	return h
}

// Stopping reports whether the shutdown has started (or the loop ended).
func (c *Controller) Stopping() bool {
	stopping := true
	c.ask(func(p provider) { stopping = p.isStopping() })
	return stopping
}

// end marks the loop as gone: later calls answer at once.
func (c *Controller) end() {
	if c != nil {
		close(c.done)
	}
}

// requests is the loop's end of the Controller (nil when there is none: a
// nil channel never delivers).
func (c *Controller) requests() <-chan func(provider) {
	if c == nil {
		return nil
	}
	return c.reqs
}

// serviceStatus is the API view of one service.
func serviceStatus(s *service) api.Service {
	out := api.Service{Name: s.cfg.Name, State: string(s.state), Runs: s.runs,
		Critical: s.cfg.Critical, Ready: s.state == stateRunning, Since: s.since}
	if s.pid != 0 {
		pid := s.pid
		out.PID = &pid
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

func (l *loop) health() api.Health {
	h := api.Health{Healthy: !l.stopping}
	for _, s := range l.svcs {
		if s.cfg.Critical && s.state != stateRunning {
			h.Healthy = false
			h.NotReady = append(h.NotReady, s.cfg.Name)
		}
	}
	return h
}

func (l *loop) isStopping() bool { return l.stopping }

// serviceOp is POST /v1/services/{name}/{op}.
func (l *loop) serviceOp(name, op string, sig unix.Signal) error {
	s := l.byName(name)
	if s == nil {
		return api.Errorf(http.StatusNotFound, "no service %q", name)
	}
	if l.stopping {
		return api.Errorf(http.StatusConflict, "tend is shutting down")
	}
	switch op {
	case "signal":
		if s.pid == 0 {
			return api.Errorf(http.StatusConflict, "service %q is %s, not running", name, s.state)
		}
		l.log.Info("signal from the API", "service", name, "sig", signals.Name(sig))
		return l.r.Signal(s.pid, sig, false)
	case "stop":
		return l.apiStop(s)
	case "start":
		return l.apiStart(s)
	case "restart":
		if s.pid == 0 {
			return l.apiStart(s)
		}
		s.restartAfterStop = true
		return l.apiStop(s)
	}
	return api.Errorf(http.StatusNotFound, "unknown operation %q: want signal, restart, stop or start", op)
}
