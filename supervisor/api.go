//go:build linux

package supervisor

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/blocking"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
)

// askTimeout bounds how long an API request waits for the loop, which
// answers between two events and never blocks for long.
const askTimeout = 5 * time.Second

// backend is the control API's view of the loop (control.Jobs and
// control.Services). Its methods run on the server's goroutines: the
// blocking parts of a request (user database, path lookups as the caller)
// on the pool, then one closure on the loop, which owns all state.
type backend struct {
	l      *loop
	env    []string // tend's environment with TEND_SOCKET: root's default for jobs
	socket string
	euid   int
}

func newBackend(l *loop, socket string) backend {
	return backend{l: l, env: spawn.SetEnv(l.cfg.Env, "TEND_SOCKET", socket), socket: socket, euid: os.Geteuid()}
}

// do runs f on the loop with askTimeout, or answers 503.
func (b backend) do(f func()) error {
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	if err := b.l.ask(ctx, f); err != nil {
		return api.Errorf(http.StatusServiceUnavailable, "tend is not answering: %v", err)
	}
	return nil
}

// Submit resolves who the job runs as, its environment and its command
// (off the loop, on the pool, as the job's identity), then admits it.
func (b backend) Submit(ctx context.Context, sub control.Submit) (api.Job, error) {
	j, err := b.prepareJob(ctx, sub)
	if err != nil {
		b.l.closer.Close(sub.Files...)
		return api.Job{}, err
	}
	var rec api.Job
	var serr error
	var started <-chan jobs.StartResult
	ran := false
	if err := b.do(func() { ran = true; rec, started, serr = b.l.submitJob(j, sub) }); err != nil {
		serr = err
	}
	if !ran { // the loop never took it: what it would have owned is ours
		b.l.closer.Close(j.Files...)
		j.Prep.Release()
	}
	if started == nil {
		return rec, serr
	}
	// Its helper is exec'ing the command: answer once it says how that went
	// (an exec failure leaves no record, as without a helper).
	select {
	case r := <-started:
		return r.Rec, r.Err
	case <-ctx.Done():
		return api.Job{}, api.Errorf(http.StatusServiceUnavailable, "the request ended before the job's command started")
	}
}

// prepareJob turns a request into a queued job with its command resolved.
func (b backend) prepareJob(ctx context.Context, sub control.Submit) (*jobs.Job, error) {
	track, err := b.l.resolveTrack(config.Track(sub.Track))
	if err != nil {
		return nil, api.Errorf(http.StatusUnprocessableEntity, "%v", err)
	}
	if _, err := b.l.planLimits(track, sub.MemoryMax, sub.PidsMax); err != nil {
		return nil, api.Errorf(http.StatusUnprocessableEntity, "%v", err)
	}
	cred, uid, home, err := b.identity(ctx, sub)
	if err != nil {
		return nil, err
	}
	dir := sub.Dir
	if dir == "" {
		dir = config.DefaultJobDir
	}
	env, err := b.environ(ctx, sub, uid, home)
	if err != nil {
		return nil, err
	}
	spec := spawn.Spec{Argv: sub.Argv, Env: env, Dir: dir, Cred: cred, Setsid: true}
	pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	defer cancel()
	prep, err := b.l.prepare(pctx, spec)
	if err != nil {
		return nil, b.l.refused(startError(err))
	}
	timeout := b.l.jobsConfig().Timeout
	if sub.TimeoutSet {
		timeout = sub.Timeout
	}
	j := jobs.NewJob(sub.Argv, uid, sub.Labels, time.Now())
	j.Prep, j.Files, j.Stdio, j.Timeout, j.Bound = prep, sub.Files, sub.Stdio, timeout, sub.Bind
	j.Rec.Track = string(track) // how its processes are tracked (config.Track)
	j.Rec.MemoryMax, j.Rec.PidsMax = sub.MemoryMax, sub.PidsMax
	if !sub.Caller.Root() && b.euid == 0 {
		// Every signal tend sends to this job, asked for or its own
		// policy (timeout, kill, bind), reaches only what the caller
		// could signal itself (DESIGN.md §1.7).
		j.SignalAs = sub.Caller.UID
	}
	return j, nil
}

// identity decides who the job runs as (DESIGN.md §1.7: never more than
// the caller has): the credential (nil: tend's own), the uid of the record
// and, for a named user, its home.
func (b backend) identity(ctx context.Context, sub control.Submit) (*syscall.Credential, int, string, error) {
	c := sub.Caller
	if sub.User != "" {
		if !c.Root() {
			return nil, 0, "", api.Errorf(http.StatusForbidden, "only root may run a job as another user (\"user\": %q)", sub.User)
		}
		id, err := onPool(ctx, b.l.pool, func() (*spawn.Identity, error) { return spawn.LookupUser(sub.User) })
		if err != nil {
			return nil, 0, "", api.Errorf(http.StatusBadRequest, "body: user: %v", err)
		}
		return id.Cred, int(id.Cred.Uid), id.Home, nil
	}
	if b.euid != 0 && (c.UID == b.euid || c.Root()) {
		// A non-root tend cannot setgroups, let alone setuid: run as
		// itself, which for a root caller is less than it has.
		return nil, b.euid, "", nil
	}
	return c.Credential(), c.UID, "", nil
}

// environ is the job's environment: the request's own if it sent one; else
// tend's for root, but only PATH and HOME for anyone else, because tend's
// environment holds the container's secrets. TEND_SOCKET always points at
// this tend.
func (b backend) environ(ctx context.Context, sub control.Submit, uid int, home string) ([]string, error) {
	var env []string
	switch {
	case sub.Env != nil:
		env = slices.Clone(sub.Env)
	case sub.Caller.Root():
		env = slices.Clone(b.env)
		if sub.User != "" && home != "" {
			env = spawn.SetEnv(env, "HOME", home)
		}
	default:
		h, err := onPool(ctx, b.l.pool, func() (string, error) { return homeOf(uid), nil })
		if err != nil {
			return nil, api.Errorf(http.StatusServiceUnavailable, "looking up uid %d's home: %v", uid, err)
		}
		env = []string{"PATH=" + spawn.DefaultPath, "HOME=" + h}
	}
	return spawn.SetEnv(env, "TEND_SOCKET", b.socket), nil
}

// homeOf is uid's home directory from its passwd entry, else "/".
func homeOf(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.HomeDir != "" {
		return u.HomeDir
	}
	return "/"
}

// onPool runs fn on a pool worker as tend and returns its result, or the
// pool's error when ctx ends first (fn's late result is then dropped).
func onPool[T any](ctx context.Context, p *blocking.Pool, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	res := make(chan result, 1)
	var zero T
	if err := p.Do(ctx, nil, func() { v, err := fn(); res <- result{v, err} }); err != nil {
		return zero, err
	}
	r := <-res
	return r.v, r.err
}

func (b backend) Get(c control.Caller, id string) (rec api.Job, err error) {
	var root unitRoot
	if e := b.do(func() {
		if j := b.l.jobs.Visible(c, id); j != nil {
			rec, root = j.Rec, jobRoot(j)
		} else {
			err = jobs.NotFound(id)
		}
	}); e != nil {
		return api.Job{}, e
	}
	rec.Processes = countUnits([]unitRoot{root})[0] // off the loop: it reads /proc
	return rec, err
}

func (b backend) List(c control.Caller, q control.ListQuery) (page []api.Job, next string, err error) {
	if e := b.do(func() { page, next, err = b.l.jobs.List(c, q.Labels, q.PID, q.After, q.Limit) }); e != nil {
		return nil, "", e
	}
	return page, next, err
}

func (b backend) Counters() (c api.Counters) {
	b.do(func() { c = b.l.jobs.Counters() })
	return c
}

// Wait returns j's record once it has exited. For a bound job, conn (when
// not 0) becomes one of its bound connections meanwhile: the job is then
// stopped only when every one of them has closed.
func (b backend) Wait(ctx context.Context, c control.Caller, id string, conn uint64) (api.Job, error) {
	if v, ok := b.l.waits.Load(id); ok {
		// A running unbound job: wait on its Outcome without asking the
		// loop; only a wait that times out needs the loop, for the record.
		if w := v.(*waitEntry); c.Root() || w.uid == c.UID {
			select {
			case <-w.out.Done():
				return w.out.Record(), nil
			case <-ctx.Done():
				rec, err := b.Get(c, id)
				if err != nil {
					return api.Job{}, err
				}
				return rec, ctx.Err()
			}
		}
	}
	var out *jobs.Outcome
	var rec api.Job
	var added bool
	var err error
	if e := b.do(func() {
		j := b.l.jobs.Visible(c, id)
		if j == nil {
			err = jobs.NotFound(id)
			return
		}
		rec = j.Rec
		if j.Rec.State == api.StateExited {
			return
		}
		if _, had := j.Conns[conn]; j.Bound && conn != 0 && !had {
			b.l.jobs.Bind(j, conn)
			added = true
		}
		out = j.Outcome()
	}); e != nil {
		return api.Job{}, e
	}
	if err != nil || out == nil {
		return rec, err
	}
	select {
	case <-out.Done():
		return out.Record(), nil
	case <-ctx.Done():
	}
	// The wait ended first: it no longer holds the job.
	b.do(func() {
		j := b.l.jobs.Visible(c, id)
		if j == nil {
			return
		}
		rec = j.Rec
		if added && b.l.jobs.Release(j, conn) {
			b.l.disconnected(j)
		}
	})
	select {
	case <-out.Done(): // both ready: the exit wins
		return out.Record(), nil
	default:
	}
	return rec, ctx.Err()
}

// Signal is POST /v1/jobs/{id}/signal. A queued job has no process: a
// signal that would end it (or kill) drops it from the queue, reason
// killed; any other is 409, as is any signal to an exited job.
func (b backend) Signal(c control.Caller, id string, req control.JobSignal) (err error) {
	if e := b.do(func() { err = b.l.signalRequest(c, id, req) }); e != nil {
		return e
	}
	return err
}

// PidFD is a new pidfd of running job id's process: opened by tend where
// that process is tend's own child (group, cgroup, the trampoline that
// became the command); for a subreaper unit, whose command is its
// helper's child that tend cannot name safely, a copy of the one its
// helper opened before it could reap it (asked for by the request:
// control.Submit.PidFD). That one is released here: the answer this is
// for is its only taker.
func (b backend) PidFD(c control.Caller, id string) (fd int, err error) {
	fd = -1
	if e := b.do(func() {
		j := b.l.jobs.Visible(c, id)
		u, _ := jobUnit(j)
		switch {
		case j == nil || j.Rec.State != api.StateRunning || u == nil || u.proc == nil:
			err = api.Errorf(http.StatusConflict, "job %s is not running", id)
		case u.track == config.TrackSubreaper && u.pidfd < 0:
			err = api.Errorf(http.StatusConflict, "job %s: its unit helper passed no pidfd of it (pidfd_open refused there, or it was taken already)", id)
		case u.track == config.TrackSubreaper:
			fd, err = unix.FcntlInt(uintptr(u.pidfd), unix.F_DUPFD_CLOEXEC, 3)
			closePidFD(&u.pidfd)
		case !u.started || u.main != u.proc.Pid():
			err = api.Errorf(http.StatusConflict, "job %s: its exec trampoline has not become the command yet: no pidfd", id)
		default:
			fd, err = u.proc.OpenPidFD()
		}
	}); e != nil {
		return -1, e
	}
	return fd, err
}

// jobUnit is j's running unit, if any.
func jobUnit(j *jobs.Job) (*unit, bool) {
	if j == nil {
		return nil, false
	}
	u, ok := j.Run.(*unit)
	return u, ok && u != nil
}

// ConnClosed stops every bound job whose last bound connection this was.
func (b backend) ConnClosed(conn uint64) {
	b.do(func() {
		for _, j := range b.l.jobs.ConnClosed(conn) {
			b.l.disconnected(j)
		}
	})
}

func (b backend) Services() (out []api.Service) {
	var roots []unitRoot
	b.do(func() {
		out = b.l.services()
		for _, s := range b.l.svcs {
			roots = append(roots, s.unit.root())
		}
	})
	counts := countUnits(roots) // off the loop: it reads /proc
	for i := range out {
		if i < len(counts) {
			out[i].Processes = counts[i]
		}
	}
	return out
}

func (b backend) ServiceOp(name, op string, sig unix.Signal) (err error) {
	if e := b.do(func() { err = b.l.serviceOp(name, op, sig) }); e != nil {
		return e
	}
	return err
}

func (b backend) Health(level string) api.Health {
	h := api.Health{Level: level, NotReady: []string{"(tend is not answering)"}, Down: []api.Down{{Reason: "tend is not answering"}}}
	b.do(func() { h = b.l.health(level) })
	return h
}

func (b backend) Metrics() (m control.Metrics) {
	var ms []namedMember
	b.do(func() {
		m.Reaped, m.Orphans = b.l.r.Reaped(), b.l.r.Orphans()
		m.Jobs, m.JobsEnded = b.l.jobs.Counters(), b.l.jobs.Ended()
		m.Services, m.Stopping = b.l.services(), b.l.sd.active
		ms = b.l.members()
	})
	for _, p := range scanZombies(b.l.zscan, ms) { // most first
		m.ZombieParents++
		m.Zombies += p.Zombies
		if len(m.ZombieTop) < control.MaxZombieSeries {
			m.ZombieTop = append(m.ZombieTop, p)
		}
	}
	return m
}

func (b backend) Stopping() bool {
	stopping := true
	b.do(func() { stopping = b.l.sd.active })
	return stopping
}

func (b backend) Reaped() (total, orphans uint64) { return b.l.r.Reaped(), b.l.r.Orphans() }

// PidsReserve reads what setUnitsPids fixed at start: no loop round trip.
func (b backend) PidsReserve() *api.PidsReserve { return b.l.pidsReserve() }

var _ control.Jobs = backend{}
var _ control.Services = backend{}

// signalRequest runs a job signal request on the loop.
func (l *loop) signalRequest(c control.Caller, id string, req control.JobSignal) error {
	j := l.jobs.Visible(c, id)
	if j == nil {
		return jobs.NotFound(id)
	}
	switch j.Rec.State {
	case api.StateQueued:
		// A signal that would end the job ends it before it starts (^C
		// forwarded by tend spawn must not be swallowed); one that would
		// not (WINCH, CONT, a stop) has nothing to act on yet.
		if !terminates(req.Sig) && !req.Kill {
			return api.Errorf(http.StatusConflict, "job %s is queued: %s would not end it, so there is nothing to signal yet", id, signals.Name(req.Sig))
		}
		l.dropFiles(j)
		l.jobs.Dropped(j, req.Sig, api.ReasonKilled)
		l.publishJob(api.EventJobExited, j)
		return nil
	case api.StateExited:
		return api.Errorf(http.StatusConflict, "job %s has exited", id)
	}
	if err := l.signalJob(j, req.Sig, req.Tree); err != nil {
		if errors.Is(err, reaper.ErrNotRunning) {
			// Reaped, its exit not yet taken: it has exited.
			return api.Errorf(http.StatusConflict, "job %s has exited", id)
		}
		if errors.Is(err, unix.EPERM) {
			// Signals carry the caller's rights: what is left of the job
			// is no longer the caller's to signal (a setuid program).
			return api.Errorf(http.StatusForbidden, "signal %s to job %s: %v: its processes left are not uid %d's to signal", signals.Name(req.Sig), id, err, c.UID)
		}
		return api.Errorf(http.StatusInternalServerError, "signal %s to job %s: %v", signals.Name(req.Sig), id, err)
	}
	if req.Kill {
		if j.Reason == "" {
			j.Reason = api.ReasonKilled
		}
		l.killJobAfter(j, l.jobsConfig().StopGrace)
	}
	return nil
}

// terminates reports whether sig's default action ends a process (signal(7)):
// all but those ignored (CHLD, CONT, URG, WINCH) and those that stop.
func terminates(sig unix.Signal) bool {
	switch sig {
	case unix.SIGCHLD, unix.SIGCONT, unix.SIGURG, unix.SIGWINCH,
		unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return false
	}
	return true
}
