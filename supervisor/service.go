//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
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
	stateStarting state = "starting" // started (or being started), not ready yet
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

// service is one supervised service (or init mode's main process); only the
// loop touches it. Its current run and probe are reaper handles: an exit is
// this service's only if it comes from one of them.
type service struct {
	cfg   config.Service
	spec  spawn.Spec // argv, env, dir, credentials; files are set per start
	state state
	level int

	unit  *unit         // the current run, nil when none runs
	probe *reaper.Child // the running ready probe, or nil
	// netProbing: a tcp or http ready probe of this run is in flight.
	netProbing bool
	notifyR    *os.File // ready = "fd:N": the read end of this run's pipe, read off the loop
	notified   bool     // ready was said before the run's command was known to run
	// ready = "notify": the service's socket, and what its run said.
	notifier       *notifier
	statusText     string    // STATUS=
	notifyStopping bool      // STOPPING=1
	watchdogAt     time.Time // WATCHDOG=1 is due by then
	notifyWarned   bool      // a refused datagram was logged (once per run, then debug)
	mainPIDWarned  bool
	checks         []*check
	// failedBy says why tend is stopping the run as a failure (watchdog,
	// a check); failForGood: no restart after (on_failure = "stop").
	failedBy    string
	failForGood bool
	leftovers   int       // killed when the last run's main process ended
	gen         int       // bumped at every start and stop: older timers and lookups do nothing
	started     time.Time // of the current run
	runs        int
	everUp      bool // has been ready once: its dependents may start
	failing     bool // readiness timed out: the exit that follows is a failure for good
	lastCode    int  // exit code of the last run, 128+N for signal N
	// lastReason is how the last run ended: exited, signaled, oom,
	// exec_failed.
	lastReason string
	ended      bool // a run has ended: lastCode means something
	tracker    *restart.Tracker
	probeGap   time.Duration
	since      time.Time   // of the current state
	stopSent   bool        // init mode: the signal that stops it was forwarded already
	stopWith   unix.Signal // init mode: the signal to stop it with, held back for the jobs; 0: stop_signal

	// Set by the control API: the exit that follows a stop request ends
	// the service (or, with restartAfterStop, starts it afresh) whatever
	// its restart policy says.
	apiStopped       bool
	restartAfterStop bool
	// A reload: next is the configuration this service takes once its
	// run has stopped (then it starts again); removed: it is gone from
	// the file, stopping, and forgotten once nothing of it runs.
	next    *service
	removed bool
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
		svcs = append(svcs, config.MainService(l.cfg.Main, l.cfg.File.Main))
	} else if l.cfg.File.Main != nil {
		return errors.New("[main] sets up the command after --, and none was given")
	}
	var errs []error
	byName := map[string]*service{}
	for _, c := range svcs {
		s, err := l.newService(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", c.Name, err))
			continue
		}
		l.svcs = append(l.svcs, s)
		byName[c.Name] = s
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, s := range l.svcs {
		if err := l.makeNotifier(s); err != nil {
			return err
		}
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

// newService makes the service of c, not started: its command's spec
// with the user and environment resolved, its checks. It reads the user
// database and c's env_file, and only settings fixed at tend's start: it
// may run off the loop (a reload prepares there).
func (l *loop) newService(c config.Service) (*service, error) {
	s := &service{cfg: c, state: statePending, tracker: restart.New(policy(c)), since: time.Now()}
	if _, err := l.resolveTrack(c.Track); err != nil && !l.cfg.Init {
		return nil, err
	}
	if _, err := l.planLimits(c.Track, c.MemoryMax, c.PidsMax); err != nil {
		return nil, err
	}
	s.spec = spawn.Spec{Argv: c.Command, Dir: c.Dir, Setpgid: true, InheritFDs: true}
	env := l.cfg.Env
	if c.User != "" {
		id, err := spawn.LookupUser(c.User)
		if err != nil {
			return nil, err
		}
		s.spec.Cred = id.Cred
		if id.Name != "" {
			env = spawn.SetEnv(env, "HOME", id.Home)
			env = spawn.SetEnv(env, "USER", id.Name)
			env = spawn.SetEnv(env, "LOGNAME", id.Name)
		}
	}
	fileEnv, err := readEnvFile(c.EnvFile, c.EnvFileOptional)
	if err != nil {
		return nil, fmt.Errorf("env_file: %w", err)
	}
	for _, kv := range fileEnv {
		k, v, _ := strings.Cut(kv, "=")
		env = spawn.SetEnv(env, k, v)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		env = spawn.SetEnv(env, k, c.Env[k])
	}
	s.spec.Env = env
	if err := l.checkProcess(c, s.spec.Cred != nil); err != nil {
		return nil, err
	}
	for _, cc := range c.Checks {
		s.checks = append(s.checks, &check{cfg: cc, s: s, state: api.CheckPending})
	}
	return s, nil
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
	svc := serviceStatus(s)
	l.publish(api.Event{Type: api.EventServicePrefix + string(st), Service: &svc})
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
	if l.sd.active {
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

// start runs the service once: its command is looked up off the loop, then
// launch forks it. The state is starting from now on, so nothing starts it
// twice meanwhile.
func (l *loop) start(s *service) {
	s.gen++
	s.runs++
	s.failing, s.stopSent = false, false
	s.failedBy, s.failForGood = "", false
	s.statusText, s.notifyStopping, s.notifyWarned, s.mainPIDWarned, s.notified = "", false, false, false, false
	s.started = time.Now()
	l.setState(s, stateStarting, "run", s.runs)
	gen := s.gen
	l.prepareAsync(s.spec, func(p *spawn.Prepared, err error) {
		if s.gen != gen { // stopped meanwhile
			if p != nil {
				p.Release()
			}
			return
		}
		l.launch(s, p, err)
	})
}

// launch forks the prepared command of s as a unit.
func (l *loop) launch(s *service, p *spawn.Prepared, err error) {
	var files []uintptr
	var closeAfter []*os.File
	if err == nil {
		files, closeAfter, err = l.stdio(s)
	}
	l.closeNotify(s) // a previous run's, if still read
	if err == nil && s.cfg.Ready.FD > 0 {
		var w *os.File
		if files, w, err = l.notifyFD(s, files); w != nil {
			closeAfter = append(closeAfter, w)
		}
	}
	if err == nil {
		s.unit, err = l.startUnit(p, l.serviceUnitSpec(s, files), s)
	}
	if err == nil {
		s.setMember(s.unit)
	}
	if err != nil {
		l.closeNotify(s)
	}
	for _, f := range closeAfter {
		f.Close() // the child has its copies; ours would keep the pipes open
	}
	if p != nil {
		p.Release()
	}
	if err != nil {
		l.startFailed(s, err)
		return
	}
	if s.unit.started {
		l.afterStart(s)
	} // else the unit's helper says when the command runs (serviceStarted)
}

// serviceUnitSpec is how a run of s is tracked and ends.
func (l *loop) serviceUnitSpec(s *service, files []uintptr) unitSpec {
	track, _ := l.resolveTrack(s.cfg.Track) // checked by build
	if l.cfg.Init {
		// Init mode's main is tini's child: as PID 1 the container is
		// its unit.
		track = config.TrackGroup
	}

	timeout := s.cfg.StopTimeout
	if timeout < 0 {
		timeout = l.cfg.Grace
		if timeout == 0 {
			timeout = config.DefaultGrace
		}
	}
	limits, _ := l.planLimits(track, s.cfg.MemoryMax, s.cfg.PidsMax) // checked by build
	uid := 0
	if s.spec.Cred != nil {
		uid = int(s.spec.Cred.Uid)
	}
	return unitSpec{name: "service-" + s.cfg.Name, track: track, files: files, stopSignal: s.cfg.StopSignal, stopTimeout: timeout,
		killMode: s.cfg.KillMode, limits: limits, uid: uid, proc: processOf(s.cfg)}
}

// startFailed ends a run whose command could not be started.
func (l *loop) startFailed(s *service, err error) {
	code := spawn.ExitNotExecutable
	var ee *spawn.ExecError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	l.log.Error("service cannot start", "service", s.cfg.Name, "err", err, "code", code)
	s.lastReason = api.ReasonExecFailed
	l.exited(s, unix.WaitStatus(code<<8))
}

// serviceStarted is the news that the command of s's current run runs.
func (l *loop) serviceStarted(s *service, u *unit) {
	if s.unit == u {
		l.afterStart(s)
	}
}

// afterStart begins the readiness of a run whose command runs.
func (l *loop) afterStart(s *service) {
	s.started = time.Now()
	l.log.Info("service started", "service", s.cfg.Name, "pid", s.unit.main, "run", s.runs, "track", string(s.unit.track))
	if s.cfg.Oneshot {
		l.armReadyTimeout(s) // ready when it exits 0 (exited)
		return
	}
	if !s.cfg.Ready.Polled() || s.notified {
		l.ready(s)
		return
	}
	s.probeGap, s.netProbing = probeFirst, false
	l.armReadyTimeout(s)
	l.runProbe(s)
}

// armReadyTimeout fails the run of s that is not ready within ready_timeout
// (a oneshot: that has not exited 0 by then).
func (l *loop) armReadyTimeout(s *service) {
	gen := s.gen
	l.tm.after(s.cfg.ReadyTimeout, func() {
		if s.gen == gen && s.state == stateStarting {
			l.log.Error("service not ready in time: stopping it", "service", s.cfg.Name, "ready_timeout", s.cfg.ReadyTimeout)
			s.failing = true
			l.killService(s)
		}
	})
}

// stdio gives a service /dev/null as stdin (the main service gets tend's),
// and tend's stdout and stderr, or pipes into the log sinks with log_prefix.
func (l *loop) stdio(s *service) (files []uintptr, closeAfter []*os.File, err error) {
	files = []uintptr{0, 1, 2}
	if s != l.main {
		files[0] = uintptr(l.null)
	}
	if !s.cfg.LogPrefix {
		return files, nil, nil
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

// runProbe runs the ready probe once: a command, whose exit comes back to
// serviceExit, or a tcp or http probe (ready.go).
func (l *loop) runProbe(s *service) {
	if s.cfg.Ready.FD > 0 || s.cfg.Ready.Notify {
		return // the notification fd or socket is read since the start (ready.go, notify.go)
	}
	if s.cfg.Ready.Exec == nil {
		l.runNetProbe(s)
		return
	}
	spec := l.probeSpec(s, s.cfg.Ready.Exec)
	gen := s.gen
	l.prepareAsync(spec, func(p *spawn.Prepared, err error) {
		if s.gen != gen || s.state != stateStarting {
			if p != nil {
				p.Release()
			}
			return
		}
		if err == nil {
			s.probe, err = l.r.Start(func(pidfd *int) (int, error) { return l.fork(p, pidfd) }, s)
			p.Release()
		}
		if err != nil {
			l.log.Warn("ready probe cannot start", "service", s.cfg.Name, "err", err)
			l.probeAgain(s)
			return
		}
		// A probe that hangs is killed and tried again: the next try
		// may succeed within ready_timeout.
		child := s.probe
		l.tm.after(config.ReadyProbeTimeout, func() {
			if s.probe == child {
				l.log.Warn("ready probe timed out: killed", "service", s.cfg.Name, "timeout", config.ReadyProbeTimeout)
				_ = child.SignalGroup(unix.SIGKILL)
			}
		})
	})
}

// probeAgain schedules the next ready probe, backing off.
func (l *loop) probeAgain(s *service) {
	gen := s.gen
	gap := s.probeGap
	s.probeGap = min(2*s.probeGap, probeMax)
	l.tm.after(gap, func() {
		if s.gen == gen && s.state == stateStarting && s.probe == nil && !s.netProbing {
			l.runProbe(s)
		}
	})
}

// ready marks s ready and starts what waited for it.
func (l *loop) ready(s *service) {
	s.everUp = true
	l.setState(s, stateRunning, "pid", s.unit.main)
	l.armWatchdog(s)
	l.startChecks(s)
	l.startEligible()
}

// serviceExit is the exit of s's ready probe. Any other handle's exit (a
// probe replaced) is stale.
func (l *loop) serviceExit(s *service, e reaper.Exit) {
	if e.Child != s.probe {
		l.log.Debug("exit of a replaced registration", "service", s.cfg.Name, "pid", e.Pid)
		return
	}
	s.probe = nil
	if l.sd.active {
		l.advanceShutdown() // the level may have waited for this probe
		return
	}
	if s.state != stateStarting {
		return
	}
	if e.Code() == 0 {
		l.ready(s)
	} else {
		l.probeAgain(s)
	}
}

// serviceUnitEnded is the end of a run of s: nothing of it is left.
func (l *loop) serviceUnitEnded(s *service, u *unit) {
	if s.unit != u {
		l.log.Debug("end of a replaced run", "service", s.cfg.Name)
		return
	}
	s.unit = nil
	s.setMember(nil)
	l.closeNotify(s)
	s.killProbes()
	if !u.started {
		err := u.startErr
		if err == nil {
			err = errors.New("the unit helper ended before starting the command")
		}
		l.startFailed(s, err)
		return
	}
	s.leftovers = u.left
	if u.left > 0 {
		noun := "leftovers"
		if u.left == 1 {
			noun = "leftover"
		}
		l.log.Warn(fmt.Sprintf("service %s: %d %s killed", s.cfg.Name, u.left, noun), "service", s.cfg.Name, "leftovers", u.left)
	}
	l.sayOOM(u, "service "+s.cfg.Name)
	switch {
	case u.oomKilledMain():
		s.lastReason = api.ReasonOOM
	case u.mainWS.Signaled():
		s.lastReason = api.ReasonSignaled
	default:
		s.lastReason = api.ReasonExited
	}
	l.exited(s, u.mainWS)
}

// exited decides what follows the end of a run: a restart, a backoff, or the
// end of the service.
func (l *loop) exited(s *service, ws unix.WaitStatus) {
	s.lastCode, s.ended = reaper.Code(ws), true
	s.gen++ // timers of the run (readiness) are void now
	args := []any{"service", s.cfg.Name, "code", s.lastCode, "run", s.runs}
	if ws.Signaled() {
		args = append(args, "sig", signals.Name(ws.Signal()))
		if ws.CoreDump() {
			args = append(args, "core_dumped", true)
		}
	}
	l.log.Info("service exited", args...)
	l.sd.ended("service " + s.cfg.Name)
	if s == l.main && l.sd.byMain {
		l.code = s.lastCode
	}
	if l.sd.active {
		l.setState(s, stateStopped)
		l.advanceShutdown()
		return
	}
	if s.apiStopped {
		s.apiStopped = false
		if s.removed {
			l.setState(s, stateStopped, "reason", "removed from the file")
			l.forget(s)
			l.startEligible()
			l.checkAllDone()
			return
		}
		if s.restartAfterStop {
			s.restartAfterStop = false
			s.tracker.Reset()
			if s.next != nil {
				// A reload changed it: it waits for its new after.
				l.adopt(s, s.next)
				l.setState(s, statePending, "reason", "changed by a reload")
				l.startEligible()
				return
			}
			l.start(s)
			return
		}
		l.setState(s, stateStopped, "reason", "stopped from the API")
		l.ended(s)
		return
	}
	if s.failing || (s.failedBy != "" && s.failForGood) {
		reason := s.failedBy
		if s.failing {
			reason = "not ready within ready_timeout"
		}
		l.setState(s, stateFailed, "reason", reason)
		s.lastCode = max(s.lastCode, 1)
		l.ended(s)
		return
	}
	if s.cfg.Oneshot && !ws.Signaled() && ws.ExitStatus() == 0 {
		// Done: ready for good, its dependents may start.
		s.everUp = true
		l.setState(s, stateStopped, "reason", "oneshot done")
		l.ended(s)
		return
	}
	var d restart.Decision
	if s.failedBy != "" {
		d = s.tracker.Failed(s.started, time.Now(), s.failedBy)
	} else {
		code, sig := ws.ExitStatus(), ws.Signaled()
		if sig {
			code = int(ws.Signal())
		}
		d = s.tracker.Exited(s.started, time.Now(), code, sig)
	}
	switch {
	case d.GaveUp:
		l.setState(s, stateFailed, "reason", d.Reason)
		l.ended(s)
	case !d.Restart && s.cfg.Oneshot:
		// It exited otherwise than 0 (that was handled above) and will
		// not run again: it has failed, and so have its dependents.
		l.setState(s, stateFailed, "reason", "oneshot exited "+strconv.Itoa(s.lastCode)+": "+d.Reason)
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
		l.tm.after(d.Delay, func() {
			if s.gen == gen && s.state == stateBackoff && !l.sd.active {
				l.start(s)
			}
		})
	}
}

// ended handles a service that will not run again: a critical one stops the
// container with its code; dependents that never started fail with it.
func (l *loop) ended(s *service) {
	if s.cfg.Critical && !s.oneshotDone() {
		l.shutdown(fmt.Sprintf("critical service %s %s", s.cfg.Name, s.state), s.lastCode, s == l.main)
		return
	}
	l.startEligible()
	l.checkAllDone()
}

// oneshotDone reports whether s is a oneshot whose last run exited 0.
func (s *service) oneshotDone() bool {
	return s.cfg.Oneshot && s.state == stateStopped && s.ended && s.lastCode == 0 && s.everUp
}

// checkAllDone stops tend once no service is left to run: 0 when each one's
// last run exited 0, 1 when one failed for good or last exited otherwise.
func (l *loop) checkAllDone() {
	if l.sd.active {
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

// closeLogs ends every log stream, partial last lines included, and flushes
// the sinks and tend's own outputs, reporting what backpressure dropped, all
// by deadline. What a service wrote just before it exited is still in its
// pipe and is read until then; a pipe some leftover still holds would never
// end by itself.
func (l *loop) closeLogs(deadline time.Time) {
	drain := min(time.Until(deadline)/4, logDrain)
	end := time.Now().Add(drain)
	for _, ls := range l.streams {
		_ = ls.pipe.SetReadDeadline(end)
	}
	for _, ls := range l.streams {
		<-ls.st.Done()
		ls.pipe.Close()
	}
	l.stdout.CloseBy(deadline)
	l.stderr.CloseBy(deadline)
	n := l.stdout.Dropped() + l.stderr.Dropped()
	for _, w := range []any{l.cfg.Stdout, l.cfg.Stderr} {
		if d, ok := w.(interface{ Dropped() uint64 }); ok { // an outlet drops too
			n += d.Dropped()
		}
	}
	if n > 0 {
		l.log.Warn("service output lines dropped: tend's stdout or stderr was too slow", "lines", n)
	}
}

// logDrain is the most closeLogs reads the service pipes after the loop.
const logDrain = 200 * time.Millisecond
