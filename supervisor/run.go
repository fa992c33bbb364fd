//go:build linux

// Package supervisor is tend's one loop (DESIGN.md §1.9): the only
// goroutine that starts, signals or forgets a child, for the main process,
// services, ready probes and jobs alike, in init mode and supervisor mode.
// Exits (from the reaper), signals, timers, API requests and the results of
// blocking work done elsewhere are events into it. It never waits for a
// child and never blocks: path lookups run on a blocking.Pool, passed fds
// are closed by a blocking.Closer, and under the reaper's lock only the fork
// and exec happen.
//
// Run owns the lifetime of every goroutine tend starts (the reaper, the
// control server, the loop) and the one bounded teardown after the loop.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/blocking"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/events"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
)

// Config is everything the loop runs from: the file's settings (defaults
// in init mode), the main command and init mode's flags.
type Config struct {
	// File is the supervisor file, or in init mode a file of defaults
	// with no service. Its [control] socket is the one to serve ("" none).
	File           *config.Config
	SocketExplicit bool // the socket was asked for: failing to bind it is fatal

	// Init is init mode: no config file, tini's rules for the main
	// process (every forwardable signal forwarded to it).
	Init bool
	Main []string // the command after --; nil: none
	Env  []string // tend's environment less its own settings
	Log  *slog.Logger

	Group      bool                        // -g: signals go to the main process's group
	Rewrite    map[unix.Signal]unix.Signal // -r, in both modes; a 0 value drops the signal
	ExpectZero []int                       // -e: tend's exit codes reported as 0
	WarnReap   bool                        // -w: tini's warning for each orphan reaped

	// Grace is the whole stop budget from the start of a shutdown, after
	// which everything left is killed; 0: no budget (init mode's default:
	// the container runtime's stop timeout decides).
	Grace time.Duration
	// CleanupGrace is the SIGTERM -> SIGKILL step of the final sweep of
	// what outlived the services (within what is left of Grace).
	CleanupGrace time.Duration

	// Reload reads the config file again (POST /v1/reload, [control]
	// reload_on); nil: there is none (init mode).
	Reload func() (*config.Config, error)
	// GraceSet: --grace (or TEND_GRACE) gave Grace, which a reloaded
	// [shutdown] grace does not change.
	GraceSet bool

	PidFDs  bool   // signal children through pidfds where the kernel has them
	Version string // for GET /v1/status

	Signals        <-chan unix.Signal // every caught signal but SIGCHLD
	SIGCHLD        <-chan os.Signal
	Stdout, Stderr io.Writer // tend's own (outlets): log_prefix lines go there
}

// Sizes of the blocking pools: path lookups of jobs, probes and services,
// and closes of passed fds. Each worker is one OS thread made at start.
// README "Pids and threads" states what they add up to (GOMAXPROCS + 21),
// and test/threads_test.go holds every flood test to it: change both.
const (
	lookupWorkers = 4
	closeWorkers  = 2
	// spareThreads are idle OS threads made at start for the runtime to
	// use when a caller's flood puts goroutines in system calls
	// (blocking.Spare): more than the most seen added in any flood here,
	// and one more for the reaper's, which its waitid keeps for good.
	spareThreads = 9
)

// teardownBound is how long everything after the loop may take, all of it
// against this one deadline: the control server's close, the last log
// lines, tend's own stdout and stderr (DESIGN.md §1.6; README and
// docs/GUARANTEES.md state the same figure).
const teardownBound = time.Second

// Run supervises until a shutdown completes and returns tend's exit code.
// An error with code -1 means nothing was started (a bad user, a socket
// that was asked for and cannot be bound); other errors are the failures
// tend tolerated on the way.
func Run(cfg Config) (int, error) {
	log := cfg.Log
	pid1 := AdoptOrphans(log)
	hub := events.NewHub(events.Limits{Max: cfg.File.Control.MaxSubscribers, PerUID: cfg.File.Control.MaxSubscribersPerUID})
	// The thread that signals with a caller's rights exists only where
	// there can be callers, and only a root tend can take their uids.
	r := reaper.New(reaper.Options{Orphan: OrphanHandler(log, cfg.WarnReap, hub.Publish), PidFDs: cfg.PidFDs,
		SignalAs: cfg.File.Control.Socket != "" && os.Geteuid() == 0})
	pool := blocking.New("path lookups", lookupWorkers)
	var closer *blocking.Closer // fds reach tend only through the control socket
	if cfg.File.Control.Socket != "" {
		// Threads for whatever a caller can make block, made before the
		// socket serves (DESIGN.md §1.10).
		pool.Start()
		closer = blocking.NewCloser(closeWorkers)
		blocking.Spare(spareThreads)
	}
	l, err := newLoop(cfg, r, pool, closer, hub.Publish, pid1)
	if err != nil {
		return -1, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	reaped := make(chan struct{}) // closed when Run has returned
	go func() { defer close(reaped); r.Run(ctx, cfg.SIGCHLD) }()

	// Run owns every goroutine it starts: each part below has its stop,
	// and teardown calls them all against one deadline.
	parts := []part{{"reaper", func(d time.Time) { cancel(); endReaper(log, reaped, d) }}}
	srv, err := l.serve(hub, closer)
	if err != nil {
		teardownParts(parts, time.Now().Add(teardownBound))
		l.release()
		return -1, err
	}
	code := l.run()

	parts = append(parts, part{"service logs", l.closeLogs})
	if srv != nil {
		// The pool and the closer stop once no request can reach them:
		// a handler still running past the deadline keeps them.
		parts = append(parts, part{"control server", func(d time.Time) {
			if err := srv.Close(d); err != nil {
				log.Warn("closing the control socket", "err", err)
				return
			}
			pool.Close()
			closer.Stop()
		}})
	}
	teardown(cfg, log, time.Now().Add(teardownBound), parts, l)
	l.release()
	for _, c := range cfg.ExpectZero {
		if c == code {
			code = 0
		}
	}
	return code, l.errs.ErrorOrNil()
}

// flusher is tend's own stdout or stderr (an outlet.Outlet): CloseBy
// stops it and waits until the deadline for what it has queued.
type flusher interface{ CloseBy(time.Time) }

// part is something Run started, with what ends it by a deadline (the
// shape of oklog/run's actors: each with its interrupt; here all of them
// are interrupted together, once the loop has returned).
type part struct {
	name string
	stop func(deadline time.Time)
}

// teardownParts stops every part side by side and returns when all have
// stopped (each stop ends by the deadline itself).
func teardownParts(parts []part, deadline time.Time) {
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(deadline) }()
	}
	wg.Wait()
}

// teardown ends everything after the loop by one deadline: the parts (the
// reaper, the control server, the service logs: pipes drained, sinks
// flushed) stop side by side; tend's own stdout and stderr keep taking
// their lines meanwhile and are flushed side by side by the same deadline,
// so a stalled terminal or a pipe nobody reads costs teardownBound once,
// not once per step.
func teardown(cfg Config, log *slog.Logger, deadline time.Time, parts []part, l *loop) {
	teardownParts(parts, deadline)
	if err := l.errs.ErrorOrNil(); err != nil { // tend's last words, before its outlets close
		log.Warn("errors while running", "err", err)
	}
	var wg sync.WaitGroup
	for _, w := range []io.Writer{cfg.Stdout, cfg.Stderr} {
		if f, ok := w.(flusher); ok {
			wg.Add(1)
			go func() { defer wg.Done(); f.CloseBy(deadline) }()
		}
	}
	wg.Wait()
}

// endReaper waits for the reaper's Run to return (closing reaped), until
// deadline. Run returns at the next exit, or at once when tend has no
// child; a child that never ends (D state, or one tend inherited and
// does not stop) must not hold tend's exit.
func endReaper(log *slog.Logger, reaped <-chan struct{}, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-reaped:
	case <-t.C:
		log.Warn("a child of tend has not ended: exiting without waiting for it")
	}
}

// serve opens the control socket when one is configured and points every
// child's TEND_SOCKET at it. Failing to bind a socket that was asked for is
// fatal; failing to bind supervisor mode's default is a warning.
func (l *loop) serve(hub *events.Hub, closer *blocking.Closer) (*control.Server, error) {
	ctl := l.cfg.File.Control
	if ctl.Socket == "" {
		return nil, nil
	}
	be := newBackend(l, ctl.Socket)
	srv, err := control.Serve(control.Config{
		Path: ctl.Socket, Mode: ctl.Mode, Group: ctl.Group, Version: l.cfg.Version, Log: l.log,
		IdleTimeout: ctl.IdleTimeout, ReadHeaderTimeout: ctl.ReadHeaderTimeout,
		MaxConnections: ctl.MaxConnections, MaxConnectionsPerUID: ctl.MaxConnectionsPerUID,
		Jobs: be, Services: be, CloseFDs: closer.Close, Limits: control.LimitsOf(ctl, l.cfg.File.Jobs),
		Events: hub.Attach, EndEvents: hub.End,
	})
	if err != nil {
		if !l.cfg.SocketExplicit {
			l.log.Warn("no control API: cannot open the default socket; running without it "+
				"(set [control] socket or --socket to a path tend can create, or socket = \"\" for none)",
				"socket", ctl.Socket, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.log.Info("control API listening", "socket", ctl.Socket)
	l.setSocket(ctl.Socket)
	return srv, nil
}

// AdoptOrphans makes tend the reaper of every orphan below it: as PID 1 it
// is by nature; otherwise it registers as child subreaper, with no warning
// (tini warns; tend needs no -s). It reports whether tend is PID 1.
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

// OrphanHandler logs each orphan reaped (a debug line, or tini's warning
// with -w) and publishes orphan.reaped. It runs on the reaping goroutine and
// must not block: the logger writes to an outlet, Publish never blocks.
func OrphanHandler(log *slog.Logger, warnReap bool, publish func(api.Event)) func(int, unix.WaitStatus) {
	return func(pid int, ws unix.WaitStatus) {
		if warnReap {
			log.Warn(fmt.Sprintf("Reaped zombie process with pid=%d", pid))
		} else if log.Enabled(context.Background(), slog.LevelDebug) { // no allocation per orphan otherwise
			log.Debug("reaped orphan", "pid", pid, "code", reaper.Code(ws))
		}
		if publish != nil {
			code := reaper.Code(ws)
			publish(api.Event{Type: api.EventOrphanReaped, PID: pid, Code: &code})
		}
	}
}

// signalAll sends sig to every process tend can reach below itself: as PID
// 1 that is kill(-1), which spares only PID 1 (kill(2)) and is one atomic
// step in the kernel; otherwise every descendant, each reached without a
// bare number that may have been recycled (reaper.SignalDescendants). This
// is the sweep of what no unit owns any more.
func signalAll(r *reaper.Reaper, sig unix.Signal, pid1 bool) error {
	if pid1 {
		if err := unix.Kill(-1, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill(-1, %s): %w", signals.Name(sig), err)
		}
		return nil
	}
	if _, err := r.SignalDescendants(sig); err != nil {
		return fmt.Errorf("%s to every descendant: %w", signals.Name(sig), err)
	}
	return nil
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
