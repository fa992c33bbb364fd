//go:build linux

package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/logline"
	"github.com/tendinit/tend/reaper"
)

// Config is supervisor mode: the services of a config file, and the main
// command after `--` as the critical service "main".
type Config struct {
	File       *config.Config
	Main       []string // nil: no main service
	Env        []string // tend's environment less its own settings
	Log        *slog.Logger
	ExpectZero []int // -e, applied to tend's exit code
	WarnReap   bool
	Group      bool // -g: the main service's signals go to its group

	// CleanupGrace bounds the SIGTERM -> SIGKILL step of the final sweep
	// (within what is left of [shutdown] grace).
	CleanupGrace time.Duration

	Signals        <-chan unix.Signal
	SIGCHLD        <-chan os.Signal
	Stdout, Stderr io.Writer // where log_prefix lines go

	Runtime
}

// Runtime is what main shares between the loop and the control API; every
// field is optional. With a control socket, main runs the reaper itself (the
// jobs share it) and passes it here with the jobs, the Controller the API
// asks, and where events go.
type Runtime struct {
	Reaper  *reaper.Reaper
	Jobs    JobStopper
	Control *Controller
	Publish func(api.Event)
}

// JobStopper is the part of the jobs manager the shutdown needs: stop every
// job within the budget, and say when their leaders have exited.
type JobStopper interface {
	Shutdown(deadline time.Time) <-chan struct{}
}

// logQueueLines bounds each prefixed-output queue: beyond it lines are
// dropped and counted, never waited for.
const logQueueLines = 1024

// Run supervises the services until a shutdown completes, and returns tend's
// exit code: the code of the critical service that stopped, or of the main
// service, or 128+N after signal N without one; 0 when every service ended
// well by itself, 1 when one failed for good. Errors before anything starts
// (a user that does not exist) are returned with code -1.
func Run(ctx context.Context, cfg Config) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := cfg.Log
	pid1 := AdoptOrphans(log)
	l := &loop{
		cfg:    cfg,
		log:    log,
		exits:  make(chan exitEvent, 64),
		timers: make(chan func(), 16),
		done:   make(chan struct{}),
		pid1:   pid1,
	}
	if err := l.build(); err != nil {
		return -1, err
	}
	l.r = cfg.Reaper
	if l.r == nil {
		l.r = NewReaper(log, cfg.WarnReap, cfg.Publish)
		go l.r.Run(ctx, cfg.SIGCHLD)
	}
	defer cfg.Control.end()
	l.stdout = logline.NewSink(cfg.Stdout, logQueueLines)
	l.stderr = logline.NewSink(cfg.Stderr, logQueueLines)
	code := l.run()
	close(l.done)
	l.closeLogs()
	for _, c := range cfg.ExpectZero {
		if c == code {
			code = 0
		}
	}
	return code, l.errs.ErrorOrNil()
}

// exitEvent is a reaped child of a service: its process or its ready probe.
type exitEvent struct {
	svc  *service
	exit reaper.Exit
}

// loop is owned by the goroutine running run; no other goroutine touches its
// fields. Other goroutines reach it through exits (from the reaper) and
// timers (closures run on the loop).
type loop struct {
	cfg    Config
	log    *slog.Logger
	r      *reaper.Reaper
	pid1   bool
	svcs   []*service
	levels [][]*service // start order; stopped in reverse
	main   *service     // the service "main", or nil
	exits  chan exitEvent
	timers chan func()
	done   chan struct{} // closed when run returns: pending sends give up
	errs   *multierror.Error

	stdout, stderr *logline.Sink
	streams        []logStream // log_prefix readers not yet at EOF

	stopping  bool            // shutdown started
	stopLevel int             // levels[stopLevel-1] is being stopped; 0: sweeping
	deadline  time.Time       // end of the shutdown budget
	sweeping  bool            // the final sweep is under way
	finished  bool            // run returns
	code      int             // exit code decided so far
	byMain    bool            // take the code from the main service when it exits
	reason    string          // why the shutdown started
	killed    bool            // the final SIGKILL went out
	jobsDone  <-chan struct{} // during shutdown: closed once every job has exited
}

// NewReaper returns the reaper with tend's orphan handling: a debug line, or
// tini's warning with -w, and an orphan.reaped event.
func NewReaper(log *slog.Logger, warnReap bool, publish func(api.Event)) *reaper.Reaper {
	return reaper.New(func(e reaper.Exit) {
		if warnReap {
			log.Warn(fmt.Sprintf("Reaped zombie process with pid=%d", e.Pid))
		} else if log.Enabled(context.Background(), slog.LevelDebug) { // no allocation per orphan otherwise
			log.Debug("reaped orphan", "pid", e.Pid, "code", e.Code())
		}
		if publish != nil {
			code := e.Code()
			publish(api.Event{Type: api.EventOrphanReaped, PID: e.Pid, Code: &code})
		}
	})
}

// after runs f on the loop goroutine once d has passed, unless the loop has
// ended. It is the only way timers touch loop state.
func (l *loop) after(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() {
		select {
		case l.timers <- f:
		case <-l.done:
		}
	})
}

func (l *loop) run() int {
	l.log.Info("supervisor started", "services", len(l.svcs), "grace", l.cfg.File.Shutdown.Grace)
	l.startEligible()
	l.checkAllDone()
	empty := l.r.Empty()
	for !l.finished {
		select {
		case ev := <-l.exits:
			l.onExit(ev)
			if l.sweeping && !l.finished && l.gone() {
				l.finish()
			}
		case f := <-l.timers:
			f()
		case sig := <-l.cfg.Signals:
			l.onSignal(sig)
		case f := <-l.cfg.Control.requests():
			f(l)
		case <-l.jobsDone:
			l.jobsDone = nil
			l.log.Info("every job has exited")
			l.stopNextLevel()
		case <-empty:
			if l.sweeping && l.gone() {
				l.finish()
			}
		}
	}
	return l.code
}

// finish ends the loop.
func (l *loop) finish() {
	l.log.Info("supervisor stopped", "code", l.code, "reason", l.reason, "orphans_reaped", l.r.Orphans())
	l.finished = true
}

func (l *loop) appendErr(err error) {
	if err != nil {
		l.errs = multierror.Append(l.errs, err)
		l.errs.ErrorFormat = oneLine
	}
}

// logDrain is how long tend reads the service pipes after the last exit:
// what a service wrote just before it exited is still in its pipe, while a
// pipe some leftover still holds would never end by itself.
const logDrain = 200 * time.Millisecond

// closeLogs ends every log stream, partial last lines included, and flushes
// the sinks, reporting what backpressure dropped.
func (l *loop) closeLogs() {
	end := time.Now().Add(logDrain)
	for _, ls := range l.streams {
		_ = ls.pipe.SetReadDeadline(end)
	}
	for _, ls := range l.streams {
		<-ls.st.Done()
		ls.pipe.Close()
	}
	l.stdout.Close()
	l.stderr.Close()
	n := l.stdout.Dropped() + l.stderr.Dropped()
	for _, w := range []io.Writer{l.cfg.Stdout, l.cfg.Stderr} {
		if d, ok := w.(interface{ Dropped() uint64 }); ok { // an outlet drops too
			n += d.Dropped()
		}
	}
	if n > 0 {
		l.log.Warn("service output lines dropped: tend's stdout or stderr was too slow", "lines", n)
	}
}
