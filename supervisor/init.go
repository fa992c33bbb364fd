//go:build linux

// Package supervisor is tend's policy: the main process, services, restarts
// and shutdown. It consumes exits from the reaper and never waits itself;
// every signal it sends to a child goes through the reaper's table, so it can
// never reach a recycled pid.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
)

// finalWait bounds the wait after the last SIGKILL: a process stuck in D
// state may never go, and tend must still exit (DESIGN.md §1.6).
const finalWait = 3 * time.Second

// InitConfig is init mode: one main process, tini's behaviour.
type InitConfig struct {
	Argv []string
	Env  []string
	Log  *slog.Logger

	Group        bool                        // -g: signal the main process's group
	Rewrite      map[unix.Signal]unix.Signal // -r: a 0 value drops the signal
	ExpectZero   []int                       // -e: codes reported as 0
	Grace        time.Duration               // --grace: SIGKILL the tree this long after SIGTERM/SIGINT; 0 = never
	CleanupGrace time.Duration               // SIGTERM -> SIGKILL for leftovers after the main exits
	WarnReap     bool                        // -w: log each orphan reaped

	Signals <-chan unix.Signal // every caught signal but SIGCHLD
	SIGCHLD <-chan os.Signal

	Runtime
}

// AdoptOrphans makes tend the reaper of every orphan below it: as PID 1 it
// is by nature; otherwise it registers as child subreaper, with no warning
// (tini warns; tend needs no -s). It reports whether tend is PID 1. Calling
// it again is harmless; call it before the first child starts.
func AdoptOrphans(log *slog.Logger) (pid1 bool) {
	if os.Getpid() == 1 {
		return true
	}
	if err := reaper.SetSubreaper(); err != nil {
		log.Warn("cannot become a subreaper: orphans will not be reaped", "err", err)
	} else {
		log.Debug("not PID 1: registered as child subreaper")
	}
	return false
}

// RunInit starts the main process, forwards signals to it, reaps everything,
// and once the main process has exited stops what is left. It returns the
// main process's exit code (after -e remapping) and the errors it tolerated
// on the way.
func RunInit(ctx context.Context, cfg InitConfig) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := cfg.Log
	pid1 := AdoptOrphans(log)
	r := cfg.Reaper
	if r == nil {
		r = NewReaper(log, cfg.WarnReap, cfg.Publish)
		go r.Run(ctx, cfg.SIGCHLD)
	}
	defer cfg.Control.end()
	l := newInitLoop(cfg, r, pid1)
	return l.run()
}

// initLoop is owned by the goroutine running run; no other goroutine touches
// its fields. The main process's exit arrives on mainExit from the reaper.
type initLoop struct {
	cfg      InitConfig
	log      *slog.Logger
	mainPID  int
	mainExit chan reaper.Exit
	errs     *multierror.Error
	exited   bool // the main process has exited
	stopping bool // SIGTERM/SIGINT received, or the main process exited

	// Injected for tests; the real ones are set by newInitLoop.
	start      func() (int, error)                              // start and register the main process
	signal     func(pid int, sig unix.Signal, group bool) error // reaper.Signal
	signalAll  func(sig unix.Signal) error                      // every process but tend
	noChildren func() bool
	empty      <-chan struct{}
	after      func(time.Duration) <-chan time.Time
}

func newInitLoop(cfg InitConfig, r *reaper.Reaper, pid1 bool) *initLoop {
	l := &initLoop{cfg: cfg, log: cfg.Log, mainExit: make(chan reaper.Exit, 1)}
	spec := spawn.Spec{Argv: cfg.Argv, Env: cfg.Env, Setpgid: true, Foreground: spawn.ForegroundTTY(), InheritFDs: true}
	l.start = func() (int, error) {
		return r.Start(func() (int, error) { return spawn.Start(spec) }, func(e reaper.Exit) { l.mainExit <- e })
	}
	l.signal = r.Signal
	l.signalAll = func(sig unix.Signal) error { return signalAll(sig, pid1) }
	l.noChildren = r.NoChildren
	l.empty = r.Empty()
	l.after = time.After
	return l
}

func (l *initLoop) run() (int, error) {
	pid, err := l.start()
	if err != nil {
		var ee *spawn.ExecError
		if errors.As(err, &ee) {
			l.log.Error("cannot start main process", "err", err)
			return ee.Code(), nil
		}
		return 1, fmt.Errorf("start main process: %w", err)
	}
	l.mainPID = pid
	l.log.Info("main process started", "pid", pid, "argv", l.cfg.Argv)

	var killAt <-chan time.Time // set once SIGTERM/SIGINT arrives with --grace
	var exit reaper.Exit
	for running := true; running; {
		select {
		case exit = <-l.mainExit:
			running = false
		case sig := <-l.cfg.Signals:
			l.handle(sig)
			if sig == unix.SIGTERM || sig == unix.SIGINT {
				l.stopping = true
			}
			if (sig == unix.SIGTERM || sig == unix.SIGINT) && l.cfg.Grace > 0 && killAt == nil {
				l.log.Info("stopping: the tree is killed if still there after the grace", "grace", l.cfg.Grace)
				killAt = l.after(l.cfg.Grace)
			}
		case <-killAt:
			l.log.Warn("grace over: killing every process", "grace", l.cfg.Grace)
			l.appendErr(l.signalAll(unix.SIGKILL))
			killAt = nil
		case f := <-l.cfg.Control.requests():
			f(l)
		}
	}
	l.exited, l.stopping = true, true
	code := l.exitCode(exit)
	l.log.Info("main process exited", "pid", exit.Pid, "code", exit.Code(), "status", exit.String())
	l.cleanup()
	return code, l.errs.ErrorOrNil()
}

// handle forwards one caught signal to the main process (or its group),
// after dumb-init style rewriting.
func (l *initLoop) handle(sig unix.Signal) {
	if !signals.Forwardable(sig) {
		return
	}
	out := sig
	if to, ok := l.cfg.Rewrite[sig]; ok {
		out = to
	}
	if out == 0 {
		l.log.Debug("signal dropped by rewrite", "sig", signals.Name(sig))
		return
	}
	l.log.Debug("forwarding signal", "sig", signals.Name(out), "pid", l.mainPID)
	err := l.signal(l.mainPID, out, l.cfg.Group)
	if err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.appendErr(fmt.Errorf("forward %s to %d: %w", signals.Name(out), l.mainPID, err))
	}
}

// exitCode is the main process's status as tend reports it: its code, or
// 128+N for signal N, and 0 for a code given to -e.
func (l *initLoop) exitCode(e reaper.Exit) int {
	code := e.Code()
	for _, c := range l.cfg.ExpectZero {
		if c == code {
			return 0
		}
	}
	return code
}

// cleanup stops whatever outlived the main process: SIGTERM, SIGKILL after
// the cleanup grace, then a bounded wait for the last exits.
func (l *initLoop) cleanup() {
	if l.cfg.Jobs != nil {
		// Queued jobs are dropped and running ones recorded as stopped by
		// the shutdown; the sweep below reaches them anyway.
		l.cfg.Jobs.Shutdown(time.Now().Add(l.cfg.CleanupGrace))
	}
	if l.noChildren() {
		return
	}
	l.log.Info("main process gone: terminating what is left", "grace", l.cfg.CleanupGrace)
	l.appendErr(l.signalAll(unix.SIGTERM))
	if l.waitEmpty(l.cfg.CleanupGrace) {
		return
	}
	l.log.Warn("processes left after the cleanup grace: killing them", "grace", l.cfg.CleanupGrace)
	l.appendErr(l.signalAll(unix.SIGKILL))
	if !l.waitEmpty(finalWait) {
		l.appendErr(errors.New("processes still there after SIGKILL (D state?): exiting anyway"))
	}
}

// waitEmpty waits until tend has no child left, or d passes. Signals that
// arrive meanwhile have nowhere to go and are dropped.
func (l *initLoop) waitEmpty(d time.Duration) bool {
	deadline := l.after(d)
	for {
		if l.noChildren() {
			return true
		}
		select {
		case <-l.empty:
		case sig := <-l.cfg.Signals:
			l.log.Debug("signal during cleanup dropped", "sig", signals.Name(sig))
		case f := <-l.cfg.Control.requests():
			f(l)
		case <-deadline:
			return l.noChildren()
		}
	}
}

func (l *initLoop) appendErr(err error) {
	if err != nil {
		l.errs = multierror.Append(l.errs, err)
		l.errs.ErrorFormat = oneLine
	}
}

// services shows the main process as the service "main".
func (l *initLoop) services() []api.Service {
	svc := api.Service{Name: config.MainName, State: string(stateRunning), Runs: 1, Critical: true, Ready: true}
	if l.exited {
		svc.State, svc.Ready = string(stateStopped), false
	} else {
		pid := l.mainPID
		svc.PID = &pid
	}
	return []api.Service{svc}
}

// serviceOp lets the API signal the main process; init mode has nothing to
// restart, stop or start.
func (l *initLoop) serviceOp(name, op string, sig unix.Signal) error {
	if name != config.MainName {
		return api.Errorf(http.StatusNotFound, "no service %q (init mode runs only %q)", name, config.MainName)
	}
	if op != "signal" {
		return api.Errorf(http.StatusConflict, "init mode cannot %s the main process: only signal", op)
	}
	if l.exited {
		return api.Errorf(http.StatusConflict, "the main process has exited")
	}
	return l.signal(l.mainPID, sig, l.cfg.Group)
}

func (l *initLoop) health() api.Health {
	if l.exited || l.stopping {
		return api.Health{NotReady: []string{config.MainName}}
	}
	return api.Health{Healthy: true}
}

func (l *initLoop) isStopping() bool { return l.stopping }

// signalAll sends sig to every process tend can reach below itself: as PID 1
// that is kill(-1), which spares only PID 1 (kill(2)); otherwise each
// descendant found under /proc.
func signalAll(sig unix.Signal, pid1 bool) error {
	if pid1 {
		if err := unix.Kill(-1, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill(-1, %s): %w", signals.Name(sig), err)
		}
		return nil
	}
	pids, err := reaper.Descendants()
	if err != nil {
		return err
	}
	var errs *multierror.Error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = multierror.Append(errs, fmt.Errorf("%s to %d: %w", signals.Name(sig), pid, err))
		}
	}
	return errs.ErrorOrNil()
}

// oneLine formats collected errors on one line, so they fit one log record.
func oneLine(errs []error) string {
	s := ""
	for i, err := range errs {
		if i > 0 {
			s += "; "
		}
		s += err.Error()
	}
	return s
}
