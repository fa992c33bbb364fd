//go:build linux

package supervisor

import (
	"context"
	"fmt"
	"github.com/tendinit/tend/internal/ratelog"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/blocking"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/logline"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
	"github.com/tendinit/tend/zombies"
)

// prepareTimeout bounds a path lookup (of a service's command, a probe's,
// a job's) on the pool: past it the start fails, and a worker stuck on a
// hung filesystem stays stuck alone.
const prepareTimeout = 10 * time.Second

// loop is owned by the goroutine running run; no other goroutine touches
// its fields. Other goroutines reach it through reqs (API requests, closures
// run on the loop) and posts (results of blocking work), the reaper through
// its Ready channel, signals through cfg.Signals, timers through tm.
type loop struct {
	cfg Config
	log *slog.Logger
	// limitLog says job starts refused at tend's limits, once per
	// interval (refused); safe from any goroutine.
	limitLog ratelog.Limiter
	r        *reaper.Reaper
	pid1     bool
	publish  func(api.Event) // never blocks
	pool     *blocking.Pool
	closer   *blocking.Closer
	null     int // /dev/null, open for the loop's life: the stdio of jobs and probes

	svcs   []*service
	levels [][]*service // start order; stopped in reverse
	main   *service     // the service "main", or nil
	jobs   *jobs.Table
	socket string // the control socket, once served: every child's TEND_SOCKET
	// file is cfg.File for readers off the loop (a job's lookups, a
	// reload's preparation): a reload replaces both, on the loop.
	file atomic.Pointer[config.Config]
	// zscan finds live processes holding zombies; zlast is the last
	// [zombies] scan, zwarned the parents warned of since they crossed
	// warn_at (loop only).
	zscan   *zombies.Scanner
	zlast   []api.ZombieParent
	zwarned map[int]bool
	// notifyDir holds the NOTIFY_SOCKETs of services with ready =
	// "notify" (notify.go); "" when none has.
	notifyDir string
	notifySeq int // names the sockets in it
	// helperExe is the program started as a unit helper (helper.Locate:
	// the standalone binary beside tend's, else tend's own); "" when
	// neither can be executed.
	helperExe string
	cg        cgroups   // cgroup v2 tracking, where tend found a hierarchy
	v1        v1Limits  // cgroup v1 hierarchies for unit limits
	units     unitsPids // the one pids cgroup of every unit, where made
	// nproc is the RLIMIT_NPROC of jobs that run as a non-root uid
	// ([jobs] nproc, "auto" resolved at start by setNProc); 0: none.
	nproc int

	// waits publishes the Outcome of each running unbound job by id, so
	// that a wait request needs no round trip through the loop: written
	// only by the loop (at start and exit), read by the API's goroutines.
	waits sync.Map // id -> *waitEntry

	tm    *timers
	reqs  chan func()   // API requests
	posts chan func()   // results of work done off the loop
	done  chan struct{} // closed when run returns: pending sends give up
	buf   []reaper.Exit
	errs  *multierror.Error

	stdout, stderr *logline.Sink
	streams        []logStream // log_prefix readers not yet at EOF

	sd       shutdown
	finished bool
	code     int // tend's exit code, decided so far

	// Injected for tests; the real ones are set by newLoop.
	prepare   func(ctx context.Context, s spawn.Spec) (*spawn.Prepared, error)
	fork      func(p *spawn.Prepared, pidfd *int) (int, error)
	signalAll func(sig unix.Signal) error
}

func newLoop(cfg Config, r *reaper.Reaper, pool *blocking.Pool, closer *blocking.Closer, publish func(api.Event), pid1 bool) (*loop, error) {
	null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	l := &loop{
		cfg: cfg, log: cfg.Log, r: r, pid1: pid1, publish: publish, pool: pool, closer: closer, null: null,
		tm:    newTimers(),
		zscan: zombies.New(), zwarned: map[int]bool{},
		reqs:  make(chan func()),
		posts: make(chan func()),
		done:  make(chan struct{}),
	}
	l.file.Store(cfg.File)
	l.prepare = l.prepareOnPool
	l.locateHelper()
	l.findCgroups()
	l.findV1()
	l.setUnitsPids()
	l.setNProc() // below the units' share, if any
	l.fork = func(p *spawn.Prepared, pidfd *int) (int, error) { return p.Start(pidfd) }
	l.signalAll = func(sig unix.Signal) error { return signalAll(r, sig, pid1) }
	j := cfg.File.Jobs
	l.jobs = jobs.New(jobs.Limits{MaxRunning: j.MaxRunning, MaxQueued: j.MaxQueued, Keep: j.Keep, MaxRecords: j.MaxRecords,
		MaxRecordBytes: int64(j.MaxRecordBytes), RecordArgvBytes: j.RecordArgvBytes}, time.Now)
	if err := l.build(); err != nil {
		l.closeNotifiers()
		l.closeCgroups()
		unix.Close(null)
		return nil, &ConfigError{err}
	}
	l.stdout = logline.NewSink(cfg.Stdout, logQueueLines)
	l.stderr = logline.NewSink(cfg.Stderr, logQueueLines)
	return l, nil
}

// waitEntry is a running job's Outcome and whose job it is.
type waitEntry struct {
	out *jobs.Outcome
	uid int
}

// ConfigError is a config that cannot be run although it parsed: a user
// that does not exist. Nothing has started.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// logQueueLines bounds each prefixed-output queue: beyond it lines are
// dropped and counted, never waited for.
const logQueueLines = 1024

// release gives back what the loop held for its whole life.
func (l *loop) release() {
	l.closeNotifiers()
	if l.null >= 0 {
		unix.Close(l.null)
		l.null = -1
	}
}

func (l *loop) run() int {
	defer close(l.done)
	defer l.closeCgroups()
	l.log.Info("supervising", "services", len(l.svcs), "main", l.cfg.Main, "grace", l.cfg.Grace)
	l.startEligible()
	l.checkAllDone()
	if d := l.cfg.File.Zombies.Scan; d > 0 {
		l.tm.after(d, l.zombieTick)
	}
	for !l.finished {
		select {
		case <-l.r.Ready():
			l.takeExits()
		case <-l.tm.C():
			l.tm.fire()
		case sig := <-l.cfg.Signals:
			l.onSignal(sig)
		case f := <-l.reqs:
			f()
		case f := <-l.posts:
			f()
		}
		if l.sd.sweeping && !l.finished && l.gone() {
			l.finish()
		}
	}
	return l.code
}

// takeExits hands every queued exit to its owner. Whose exit it is comes
// from the handle's registration, never from the pid.
func (l *loop) takeExits() {
	l.buf = l.r.TakeExits(l.buf[:0])
	for i, e := range l.buf {
		switch o := e.Child.Owner().(type) {
		case *service:
			l.serviceExit(o, e) // a ready probe
		case *check:
			l.checkExit(o, e)
		case *unit:
			l.unitExit(o, e) // a run or a job: its command or its helper
		}
		e.Child.Release() // its pidfd, if any: records kept for long hold no fd
		l.buf[i] = reaper.Exit{}
	}
}

// ask runs f on the loop and waits for it, or gives up when the loop has
// ended or ctx has. The loop answers between two events and never blocks,
// so the wait is short.
func (l *loop) ask(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case l.reqs <- func() { f(); close(ran) }:
	case <-l.done:
		return errEnded
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ran
	return nil
}

// errEnded is the answer of a request that came after the loop ended.
var errEnded = api.Errorf(503, "tend is stopping: the supervisor has ended")

// post runs f on the loop from another goroutine, unless the loop has
// ended; orElse then runs instead, on the caller, to release what f owned.
func (l *loop) post(f, orElse func()) {
	select {
	case l.posts <- f:
	case <-l.done:
		if orElse != nil {
			orElse()
		}
	}
}

// prepareAsync resolves s on the pool, off the loop, and calls then on the
// loop with the result. A late result for a start that is void by then is
// then's to release.
func (l *loop) prepareAsync(s spawn.Spec, then func(*spawn.Prepared, error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
		defer cancel()
		p, err := l.prepare(ctx, s)
		l.post(func() { then(p, err) }, func() {
			if p != nil {
				p.Release()
			}
		})
	}()
}

// prepareOnPool runs spawn.Prepare on a pool worker, as s.Cred for the
// filesystem. A lookup that outlives ctx releases its own result: whoever
// claims first, the worker (to deliver) or the abandoning caller, decides.
func (l *loop) prepareOnPool(ctx context.Context, s spawn.Spec) (_ *spawn.Prepared, err error) {
	type result struct {
		p   *spawn.Prepared
		err error
	}
	if s.Cred == nil || (s.Cred.Uid == 0 && os.Geteuid() == 0) {
		// As root, or as tend: no identity to switch (root's rights do not
		// depend on its groups), so the lookup runs here, within the pool's
		// bound of blocked callers, without a hand-off to a worker thread.
		var p *spawn.Prepared
		perr := l.pool.Here(ctx, func() { p, err = spawn.Prepare(s) })
		if perr != nil {
			return nil, fmt.Errorf("looking up %s: %w", s.Argv[0], perr)
		}
		return p, err
	}
	res := make(chan result, 1)
	var claimed atomic.Bool
	err = l.pool.Do(ctx, s.Cred, func() {
		p, err := spawn.Prepare(s)
		if claimed.CompareAndSwap(false, true) {
			res <- result{p, err}
		} else if p != nil {
			p.Release() // the caller gave up on us
		}
	})
	if err != nil {
		if !claimed.CompareAndSwap(false, true) {
			// The worker finished just now: its result is on its way.
			if r := <-res; r.p != nil {
				r.p.Release()
			}
		}
		return nil, fmt.Errorf("looking up %s: %w", s.Argv[0], err)
	}
	r := <-res
	return r.p, r.err
}

func (l *loop) appendErr(err error) {
	if err != nil {
		l.errs = multierror.Append(l.errs, err)
		l.errs.ErrorFormat = oneLine
	}
}

// setSocket makes every child started from now on find this tend.
func (l *loop) setSocket(path string) {
	l.socket = path
	l.cfg.Env = spawn.SetEnv(l.cfg.Env, "TEND_SOCKET", path)
	for _, s := range l.svcs {
		s.spec.Env = spawn.SetEnv(s.spec.Env, "TEND_SOCKET", path)
	}
}

// jobsConfig is the [jobs] section.
func (l *loop) jobsConfig() config.Jobs { return l.file.Load().Jobs }
