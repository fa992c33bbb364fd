//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/logline"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/restart"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
)

// state is where a service is in its life.
type state string

const (
	statePending  state = "pending"  // waiting for the services in its `after`
	stateStarting state = "starting" // running, not ready yet
	stateRunning  state = "running"  // running and ready
	stateBackoff  state = "backoff"  // exited, waiting to restart
	stateStopping state = "stopping" // stop signal sent
	stateStopped  state = "stopped"  // exited for good, by itself or by a stop
	stateFailed   state = "failed"   // gave up: max_restarts, readiness, or a failed dependency
)

// Probe delays: the first poll of a ready command comes at once, then after
// probeFirst, doubling up to probeMax.
const (
	probeFirst = 50 * time.Millisecond
	probeMax   = time.Second
)

// service is one supervised service; only the loop goroutine touches it.
type service struct {
	cfg      config.Service
	spec     spawn.Spec // argv, env, dir, credentials; files are set per start
	state    state
	level    int
	pid      int       // 0 when no process runs
	probePid int       // the running ready probe, or 0
	gen      int       // bumped at every start and stop: older timers do nothing
	started  time.Time // of the current run
	runs     int
	everUp   bool // has been ready once: its dependents may start
	failing  bool // readiness timed out: the exit that follows is a failure for good
	lastCode int  // exit code of the last run, 128+N for signal N
	ended    bool // a run has ended: lastCode means something
	tracker  *restart.Tracker
	probeGap time.Duration
	since    time.Time // of the current state

	// Set by the control API: the exit that follows a stop request ends
	// the service (or, with restartAfterStop, starts it afresh) whatever
	// its restart policy says.
	apiStopped       bool
	restartAfterStop bool
}

// logStream is one log_prefix reader and the pipe it reads. It outlives the
// run that opened it while a descendant of the service holds the pipe.
type logStream struct {
	st   *logline.Stream
	pipe *os.File
}

// build turns the config into services, resolving users and environments
// before anything starts, so a bad `user` is refused with nothing running.
func (l *loop) build() error {
	svcs := slices.Clone(l.cfg.File.Services)
	if l.cfg.Main != nil {
		svcs = append(svcs, config.MainService(l.cfg.Main))
	}
	var errs []error
	byName := map[string]*service{}
	for _, c := range svcs {
		s := &service{cfg: c, state: statePending, tracker: restart.New(policy(c))}
		s.spec = spawn.Spec{Argv: c.Command, Dir: c.Dir, Setpgid: true, InheritFDs: true}
		env := l.cfg.Env
		if c.User != "" {
			id, err := spawn.LookupUser(c.User)
			if err != nil {
				errs = append(errs, fmt.Errorf("service %q: %w", c.Name, err))
				continue
			}
			s.spec.Cred = id.Cred
			if id.Name != "" {
				env = spawn.SetEnv(env, "HOME", id.Home)
				env = spawn.SetEnv(env, "USER", id.Name)
				env = spawn.SetEnv(env, "LOGNAME", id.Name)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(c.Env)) {
			env = spawn.SetEnv(env, k, c.Env[k])
		}
		s.spec.Env = env
		l.svcs = append(l.svcs, s)
		byName[c.Name] = s
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for i, names := range l.cfg.File.StartLevels() {
		var level []*service
		for _, n := range names {
			byName[n].level = i
			level = append(level, byName[n])
		}
		l.levels = append(l.levels, level)
	}
	if l.cfg.Main != nil {
		// The main command starts once every service is ready and stops
		// first: it is what the helpers are there for.
		l.main = byName[config.MainName]
		l.main.level = len(l.levels)
		l.main.spec.Foreground = spawn.ForegroundTTY()
		l.levels = append(l.levels, []*service{l.main})
	}
	return nil
}

// policy is the restart package's view of a service's keys.
func policy(c config.Service) restart.Policy {
	return restart.Policy{Mode: string(c.Restart), RestartNow: c.RestartNow, NeverRestart: c.NeverRestart,
		Backoff: c.Backoff, BackoffMax: c.BackoffMax, MaxRestarts: c.MaxRestarts, Window: c.RestartWindow}
}

func (l *loop) setState(s *service, st state, args ...any) {
	if s.state == st {
		return
	}
	l.log.Info("service "+string(st), append([]any{"service", s.cfg.Name, "from", string(s.state)}, args...)...)
	s.state = st
	s.since = time.Now()
	if l.cfg.Publish != nil {
		svc := serviceStatus(s)
		l.cfg.Publish(api.Event{Type: api.EventServicePrefix + string(st), Service: &svc})
	}
}

// byName finds a service.
func (l *loop) byName(name string) *service {
	for _, s := range l.svcs {
		if s.cfg.Name == name {
			return s
		}
	}
	return nil
}

// startEligible starts every pending service whose dependencies have all
// been ready, and fails those whose dependency failed for good.
func (l *loop) startEligible() {
	if l.stopping {
		return
	}
	for _, s := range l.svcs {
		if s.state != statePending {
			continue
		}
		ready := true
		for _, dep := range l.deps(s) {
			if dep.state == stateFailed || (dep.state == stateStopped && !dep.everUp) {
				l.setState(s, stateFailed, "reason", "dependency "+dep.cfg.Name+" failed")
				s.lastCode, s.ended = 1, true
				l.ended(s)
				return // ended may start the shutdown; the next pass sees the rest
			}
			ready = ready && dep.everUp
		}
		if ready {
			l.start(s)
		}
	}
}

// deps lists the services s starts after.
func (l *loop) deps(s *service) []*service {
	var out []*service
	if s == l.main {
		for _, o := range l.svcs {
			if o != s {
				out = append(out, o)
			}
		}
		return out
	}
	for _, o := range l.svcs {
		if slices.Contains(s.cfg.After, o.cfg.Name) {
			out = append(out, o)
		}
	}
	return out
}

// start runs the service once.
func (l *loop) start(s *service) {
	s.gen++
	s.runs++
	s.failing = false
	spec := s.spec
	files, closeAfter, err := l.stdio(s)
	if err == nil {
		spec.Files = files
		var pid int
		pid, err = l.r.Start(func() (int, error) { return spawn.Start(spec) }, l.owner(s))
		s.pid = pid
	}
	for _, f := range closeAfter {
		f.Close() // the child has its copies; ours would keep the pipes open
	}
	if err != nil {
		code := 1
		var ee *spawn.ExecError
		if errors.As(err, &ee) {
			code = ee.Code()
		}
		l.log.Error("service cannot start", "service", s.cfg.Name, "err", err, "code", code)
		s.started = time.Now()
		// Through the loop, not directly: an immediate restart of a
		// command that cannot start would otherwise recurse without end
		// and keep signals and the API waiting.
		gen := s.gen
		l.after(0, func() {
			if s.gen == gen {
				l.exited(s, reaper.Exit{Status: unix.WaitStatus(code << 8)})
			}
		})
		return
	}
	s.started = time.Now()
	l.setState(s, stateStarting, "pid", s.pid, "run", s.runs)
	if s.cfg.Ready.Exec == nil {
		l.ready(s)
		return
	}
	gen := s.gen
	s.probeGap = probeFirst
	l.after(s.cfg.ReadyTimeout, func() {
		if s.gen == gen && s.state == stateStarting {
			l.log.Error("service not ready in time: stopping it", "service", s.cfg.Name, "ready_timeout", s.cfg.ReadyTimeout)
			s.failing = true
			l.killService(s)
		}
	})
	l.probe(s)
}

// owner is the reaper's callback for a process of s: it hands the exit to
// the loop, or drops it once the loop has ended.
func (l *loop) owner(s *service) func(reaper.Exit) {
	return func(e reaper.Exit) {
		select {
		case l.exits <- exitEvent{svc: s, exit: e}:
		case <-l.done:
		}
	}
}

// stdio gives a service /dev/null as stdin (the main service gets tend's),
// and tend's stdout and stderr, or pipes into the log sinks with log_prefix.
func (l *loop) stdio(s *service) (files []uintptr, closeAfter []*os.File, err error) {
	files = []uintptr{0, 1, 2}
	if s != l.main {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, nil, err
		}
		closeAfter = append(closeAfter, null)
		files[0] = null.Fd()
	}
	if !s.cfg.LogPrefix {
		return files, closeAfter, nil
	}
	l.pruneStreams()
	for i, sink := range []*logline.Sink{l.stdout, l.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, closeAfter, err
		}
		closeAfter = append(closeAfter, w)
		files[i+1] = w.Fd()
		l.streams = append(l.streams, logStream{sink.Copy(s.cfg.Name, r), r})
	}
	return files, closeAfter, nil
}

// pruneStreams closes the pipes of streams that reached EOF, so a
// crash-looping service does not pile up fds.
func (l *loop) pruneStreams() {
	l.streams = slices.DeleteFunc(l.streams, func(ls logStream) bool {
		select {
		case <-ls.st.Done():
			ls.pipe.Close()
			return true
		default:
			return false
		}
	})
}

// probe runs the ready command once; its exit comes back through onExit.
func (l *loop) probe(s *service) {
	spec := s.spec
	spec.Argv = s.cfg.Ready.Exec
	spec.Setpgid, spec.Foreground, spec.InheritFDs = false, false, false
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err == nil {
		spec.Files = []uintptr{null.Fd(), null.Fd(), null.Fd()}
		s.probePid, err = l.r.Start(func() (int, error) { return spawn.Start(spec) }, l.owner(s))
		null.Close()
	}
	if err != nil {
		l.log.Warn("ready probe cannot start", "service", s.cfg.Name, "err", err)
		l.probeAgain(s)
	}
}

// probeAgain schedules the next ready probe, backing off.
func (l *loop) probeAgain(s *service) {
	gen := s.gen
	gap := s.probeGap
	s.probeGap = min(2*s.probeGap, probeMax)
	l.after(gap, func() {
		if s.gen == gen && s.state == stateStarting && s.probePid == 0 {
			l.probe(s)
		}
	})
}

// ready marks s ready and starts what waited for it.
func (l *loop) ready(s *service) {
	s.everUp = true
	l.setState(s, stateRunning, "pid", s.pid)
	l.startEligible()
}

func (l *loop) onExit(ev exitEvent) {
	s := ev.svc
	switch ev.exit.Pid {
	case s.probePid:
		s.probePid = 0
		if l.stopping {
			l.advanceShutdown() // the level may have waited for this probe
			return
		}
		if s.state != stateStarting {
			return
		}
		if ev.exit.Code() == 0 {
			l.ready(s)
		} else {
			l.probeAgain(s)
		}
	case s.pid:
		s.pid = 0
		if s.probePid != 0 {
			_ = l.r.Signal(s.probePid, unix.SIGKILL, false)
		}
		l.exited(s, ev.exit)
	}
}

// exited decides what follows the end of a run: a restart, a backoff, or the
// end of the service.
func (l *loop) exited(s *service, e reaper.Exit) {
	s.lastCode, s.ended = e.Code(), true
	s.gen++ // timers of the run (readiness) are void now
	args := []any{"service", s.cfg.Name, "code", s.lastCode, "run", s.runs}
	if e.Status.Signaled() {
		args = append(args, "sig", signals.Name(e.Status.Signal()))
	}
	l.log.Info("service exited", args...)
	if s == l.main && l.byMain {
		l.code = s.lastCode
	}
	if l.stopping {
		l.setState(s, stateStopped)
		l.advanceShutdown()
		return
	}
	if s.apiStopped {
		s.apiStopped = false
		if s.restartAfterStop {
			s.restartAfterStop = false
			s.tracker.Reset()
			l.start(s)
			return
		}
		l.setState(s, stateStopped, "reason", "stopped from the API")
		l.ended(s)
		return
	}
	if s.failing {
		l.setState(s, stateFailed, "reason", "not ready within ready_timeout")
		s.lastCode = max(s.lastCode, 1)
		l.ended(s)
		return
	}
	code, sig := e.Status.ExitStatus(), e.Status.Signaled()
	if sig {
		code = int(e.Status.Signal())
	}
	d := s.tracker.Exited(s.started, time.Now(), code, sig)
	switch {
	case d.GaveUp:
		l.setState(s, stateFailed, "reason", d.Reason)
		l.ended(s)
	case !d.Restart:
		l.setState(s, stateStopped, "reason", d.Reason)
		l.ended(s)
	case d.Delay == 0:
		l.log.Info("service restarting", "service", s.cfg.Name, "reason", d.Reason)
		l.start(s)
	default:
		l.setState(s, stateBackoff, "delay", d.Delay, "reason", d.Reason)
		gen := s.gen
		l.after(d.Delay, func() {
			if s.gen == gen && s.state == stateBackoff && !l.stopping {
				l.start(s)
			}
		})
	}
}

// ended handles a service that will not run again: a critical one stops the
// container with its code; dependents that never started fail with it.
func (l *loop) ended(s *service) {
	if s.cfg.Critical {
		l.shutdown(fmt.Sprintf("critical service %s %s", s.cfg.Name, s.state), s.lastCode, false)
		return
	}
	l.startEligible()
	l.checkAllDone()
}

// checkAllDone stops tend once no service is left to run: 0 when each one's
// last run exited 0, 1 when one failed for good or last exited otherwise.
func (l *loop) checkAllDone() {
	if l.stopping {
		return
	}
	code := 0
	for _, s := range l.svcs {
		switch s.state {
		case stateStopped:
			if s.lastCode != 0 {
				code = 1
			}
		case stateFailed:
			code = 1
		default:
			return
		}
	}
	l.shutdown("every service has ended", code, false)
}
