//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
)

// submitJob admits a prepared job on the loop: it starts now, waits in the
// queue, or is refused. j.Prep and j.Files are the loop's from here on. A
// job whose command a unit helper execs is not known to have started yet:
// the request then waits on the returned channel for its record (or the
// exec failure, with no record left).
func (l *loop) submitJob(j *jobs.Job, sub control.Submit) (api.Job, <-chan jobs.StartResult, error) {
	if l.sd.active {
		l.dropFiles(j)
		return api.Job{}, nil, api.Errorf(http.StatusServiceUnavailable, "tend is shutting down")
	}
	now, err := l.jobs.Admit(j)
	if err != nil {
		l.dropFiles(j)
		return api.Job{}, nil, err
	}
	if sub.Bind && sub.Conn != 0 {
		l.jobs.Bind(j, sub.Conn)
	}
	if !now {
		return j.Rec, nil, nil
	}
	j.StartWait = make(chan jobs.StartResult, 1)
	if err := l.startJob(j, sub.PidFD); err != nil {
		j.StartWait = nil
		l.jobs.Forget(j) // an exec failure leaves no record: the request gets the error
		return api.Job{}, nil, l.refused(startError(err))
	}
	if j.StartWait == nil { // started already
		return j.Rec, nil, nil
	}
	return api.Job{}, j.StartWait, nil
}

// startJob forks j with its passed files on their stdio fds and /dev/null
// on the others; tend's copies of the files and the prepared command are
// released either way (the closing off the loop: a passed socket's close
// can block). pidfd: the request waits to pass a pidfd of the job's
// process (a subreaper helper must then open one).
func (l *loop) startJob(j *jobs.Job, pidfd bool) error {
	fds := []uintptr{uintptr(l.null), uintptr(l.null), uintptr(l.null)}
	var err error
	for i, fd := range j.Files {
		// A child's stdio must block: programs do not expect EAGAIN on
		// fd 0-2. The flag belongs to the open file description, shared
		// with the sender, which may have set it.
		if err = unix.SetNonblock(fd, false); err != nil {
			err = fmt.Errorf("passed fd for %d: %w", j.Stdio[i], err)
			break
		}
		fds[j.Stdio[i]] = uintptr(fd)
	}
	var u *unit
	var limits limitPlan
	if err == nil {
		// Checked when the request came (prepareJob); the settings it
		// reads are fixed at start.
		limits, err = l.planLimits(config.Track(j.Rec.Track), j.Rec.MemoryMax, j.Rec.PidsMax)
	}
	if err == nil {
		us := unitSpec{name: "job-" + j.Rec.ID, track: config.Track(j.Rec.Track), files: fds, stopSignal: unix.SIGTERM,
			stopTimeout: l.jobsConfig().StopGrace, killMode: config.KillUnit, signalAs: j.SignalAs, limits: limits}
		// tend's own child it can open a pidfd of itself (PidFD); a
		// subreaper helper's command only its helper can, before it
		// may reap it.
		us.pidfd = pidfd && us.track == config.TrackSubreaper
		if c := j.Prep.Cred(); c != nil {
			us.uid = int(c.Uid)
		}
		if j.Rec.UID != 0 {
			// Root is exempt from RLIMIT_NPROC anyway (the kernel's
			// check skips it); only a non-root job can spend the pids
			// that tend and root's units need (DESIGN.md §1.10).
			us.nproc = l.nproc
		}
		u, err = l.startUnit(j.Prep, us, j)
	}
	l.dropFiles(j)
	if err != nil {
		return err
	}
	j.Run = u
	l.jobs.Started(j, u.main)
	if u.started {
		l.jobRunning(j)
	}
	return nil
}

// jobStarted is the news that a job's helper has exec'd its command.
func (l *loop) jobStarted(j *jobs.Job, u *unit) {
	if j.Run != u || j.Rec.State != api.StateRunning {
		return
	}
	l.jobs.SetPid(j, u.main)
	l.jobRunning(j)
}

// jobRunning starts what a job whose command runs has: its wait index, its
// timeout, its job.started, the answer to its request.
func (l *loop) jobRunning(j *jobs.Job) {
	if !j.Bound {
		l.waits.Store(j.Rec.ID, &waitEntry{out: j.Outcome(), uid: j.Rec.UID})
	}
	if j.Timeout > 0 {
		l.armJob(j, j.Timeout, func() { l.stopJob(j, api.ReasonTimeout) })
	}
	l.publishJob(api.EventJobStarted, j)
	if j.StartWait != nil {
		j.StartWait <- jobs.StartResult{Rec: j.Rec}
		j.StartWait = nil
	}
}

// dropFiles hands j's passed fds to the closer and releases its command.
func (l *loop) dropFiles(j *jobs.Job) {
	l.closer.Close(j.Files...)
	j.Files = nil
	if j.Prep != nil {
		j.Prep.Release()
		j.Prep = nil
	}
}

// startError says which HTTP status a failed start gets. EMFILE and ENFILE
// come first, wherever in the start they arose (a pipe or the directory fd
// in tend, execve in the child: all reported as an ExecError): they are
// tend's resources running out, a 503, never a 422 blaming the command.
func startError(err error) error {
	var ee *spawn.ExecError
	switch {
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return api.Errorf(http.StatusServiceUnavailable, "%v: tend is out of file descriptors (%s), not the command's fault: try again later",
			err, fdLimit(err))
	case errors.As(err, &ee):
		return api.Errorf(http.StatusUnprocessableEntity, "%s", ee.Error())
	case errors.Is(err, unix.EAGAIN):
		// pids.max or RLIMIT_NPROC: tend's limit, not the command's fault.
		return api.Errorf(http.StatusServiceUnavailable, "%v (EAGAIN)", err)
	case errors.Is(err, errHelperEnded):
		return api.Errorf(http.StatusServiceUnavailable, "%v: tend could not set up the unit (the likely cause, EAGAIN: at pids.max or RLIMIT_NPROC the helper cannot make its threads): try again later", err)
	}
	return api.Errorf(http.StatusInternalServerError, "start job: %v", err)
}

// refused passes err on, and says once per ratelog.Interval when a job
// start is refused because tend is at a limit (a 503: pids.max or
// RLIMIT_NPROC, fds): once per request would let a flood fill the log.
func (l *loop) refused(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusServiceUnavailable {
		l.limitLog.Say(l.log, "job start refused: tend is at a limit", "err", se.Msg)
	}
	return err
}

// fdLimit names the limit an EMFILE or ENFILE met: tend's RLIMIT_NOFILE, or
// the system's file table.
func fdLimit(err error) string {
	if errors.Is(err, unix.ENFILE) {
		return "ENFILE: the system's file table, fs.file-max"
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil {
		return "EMFILE: tend's RLIMIT_NOFILE"
	}
	return fmt.Sprintf("EMFILE: tend's RLIMIT_NOFILE is %d", rl.Cur)
}

// jobUnitEnded records a job's end (nothing of it is left), publishes it
// and fills the freed slot from the queue: on the loop, never on the
// reaper's goroutine. A command its helper could not exec is a 422 to a
// request still waiting (no record), else a record with reason exec_failed.
func (l *loop) jobUnitEnded(j *jobs.Job, u *unit) {
	if j.Rec.State == api.StateExited && j.Run == nil {
		// Its command's exit was recorded when it came (jobExited);
		// now the leftovers are gone too.
		j.Rec.LeftoversKilled = u.left
		j.Rec.OOMKills = int(u.oomKills)
		return
	}
	if j.Run != u {
		return
	}
	l.disarmJob(j)
	switch {
	case !u.started && j.StartWait != nil:
		l.jobs.Abort(j)
		j.StartWait <- jobs.StartResult{Err: l.refused(startError(u.startErr))}
		j.StartWait = nil
	case !u.started:
		code := spawn.ExitNotExecutable
		var ee *spawn.ExecError
		if errors.As(u.startErr, &ee) {
			code = ee.Code()
		}
		l.jobs.FailedRunning(j, code, u.startErr)
		l.publishJob(api.EventJobExited, j)
	default:
		j.Rec.LeftoversKilled = u.left
		l.jobExited(j, u)
		return
	}
	l.startQueued()
}

// jobExited records the exit of j's command, publishes it and fills the
// freed slot from the queue.
func (l *loop) jobExited(j *jobs.Job, u *unit) {
	l.sd.ended("job " + j.Rec.ID)
	l.disarmJob(j)
	l.sayOOM(u, "job "+j.Rec.ID)
	j.Rec.OOMKills = int(u.oomKills)
	if u.oomKilledMain() {
		j.Reason = api.ReasonOOM // the kernel's SIGKILL, whatever tend sent
	}
	l.jobs.Exited(j, u.mainWS) // completes the Outcome first: a waiter holding it is woken
	l.waits.Delete(j.Rec.ID)
	l.publishJob(api.EventJobExited, j)
	l.startQueued()
	if l.sd.active {
		l.jobsEnded()
	}
}

// startQueued starts queued jobs, oldest first, while slots are free. One
// that cannot start ends at once with reason exec_failed and the code a
// shell would give (127 not found, 126 otherwise, fork's EAGAIN included:
// retrying later could wait forever when nothing else runs).
func (l *loop) startQueued() {
	for !l.sd.active {
		j := l.jobs.NextQueued()
		if j == nil {
			return
		}
		err := l.startJob(j, false) // its request was answered (queued): nobody takes a pidfd
		if err == nil {
			continue
		}
		code := spawn.ExitNotExecutable
		var ee *spawn.ExecError
		if errors.As(err, &ee) {
			code = ee.Code()
		}
		l.jobs.Failed(j, code, err)
		l.publishJob(api.EventJobExited, j)
	}
}

// signalJob signals a running job: its main process, or with tree all of
// its unit, through its handle (refused once its main process or its
// helper is reaped: the number may be someone else's after that).
func (l *loop) signalJob(j *jobs.Job, sig unix.Signal, tree bool) error {
	u, _ := j.Run.(*unit)
	var err error
	if tree {
		err = l.signalUnit(u, sig)
	} else {
		err = l.signalMain(u, sig, false)
	}
	if err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.log.Warn("signal job", "job", j.Rec.ID, "sig", signals.Name(sig), "err", err)
	}
	return err
}

// killJob SIGKILLs all of a running job's unit.
func (l *loop) killJob(j *jobs.Job) {
	l.sd.markKilled("job " + j.Rec.ID)
	u, _ := j.Run.(*unit)
	if err := l.killUnit(u); err != nil && !errors.Is(err, reaper.ErrNotRunning) {
		l.log.Warn("kill job", "job", j.Rec.ID, "err", err)
	}
}

// stopJob ends a running job for reason: SIGTERM to its group, SIGKILL
// after [jobs] stop_grace (0: at once), capped by the shutdown's budget.
// The reason is recorded only if the signal reached the job: one whose exit
// is reaped but not yet taken has ended by itself.
func (l *loop) stopJob(j *jobs.Job, reason string) {
	grace := l.jobsConfig().StopGrace
	if l.sd.active {
		grace = l.sd.capped(grace)
	}
	u, _ := j.Run.(*unit)
	var err error
	if grace == 0 {
		err = l.killUnit(u)
	} else {
		err = l.stopUnit(u, unix.SIGTERM, grace)
	}
	if errors.Is(err, reaper.ErrNotRunning) {
		return
	}
	if j.Reason == "" {
		j.Reason = reason
	}
	if grace > 0 {
		l.killJobAfter(j, grace)
	}
}

// killJobAfter schedules SIGKILL of j's group after d unless one is due
// sooner; it replaces a pending timeout: the job is being stopped anyway.
func (l *loop) killJobAfter(j *jobs.Job, d time.Duration) {
	due := monoNow() + int64(d)
	if j.KillAt != 0 && due >= j.KillAt {
		return
	}
	l.armJob(j, d, func() { l.killJob(j) })
	j.KillAt = due
}

// monoBase is the origin of monoNow.
var monoBase = time.Now()

// monoNow is the time on the monotonic clock in ns since monoBase, from 1:
// a job's KillAt in 8 bytes instead of a time.Time's 24.
func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

// disconnected ends a bound job whose last bound connection is gone: a
// queued one is dropped, a running one stopped.
func (l *loop) disconnected(j *jobs.Job) {
	switch j.Rec.State {
	case api.StateQueued:
		l.dropFiles(j)
		l.jobs.Dropped(j, unix.SIGTERM, api.ReasonDisconnected)
		l.publishJob(api.EventJobExited, j)
	case api.StateRunning:
		l.stopJob(j, api.ReasonDisconnected)
	}
}

// stopJobs is the jobs' part of the shutdown: queued jobs are dropped
// (reason shutdown, fds closed), running ones stopped within the budget.
func (l *loop) stopJobs() {
	for _, j := range l.jobs.Queued() {
		l.dropFiles(j)
		l.jobs.Dropped(j, unix.SIGTERM, api.ReasonShutdown)
		l.publishJob(api.EventJobExited, j)
	}
	for _, j := range l.jobs.RunningJobs() {
		l.stopJob(j, api.ReasonShutdown)
	}
}

// armJob replaces j's timer with one that calls fire after d, if j still
// runs then. A job has a timer only while it has a timeout or a pending
// SIGKILL, so an idle tend has none (DESIGN.md §1.8).
func (l *loop) armJob(j *jobs.Job, d time.Duration, fire func()) {
	l.disarmJob(j)
	j.Timer = l.tm.after(d, func() {
		j.Timer, j.KillAt = 0, 0
		if j.Rec.State == api.StateRunning {
			fire()
		}
	})
}

// disarmJob cancels j's timer, if any.
func (l *loop) disarmJob(j *jobs.Job) {
	if j.Timer != 0 {
		l.tm.cancel(j.Timer)
		j.Timer = 0
	}
	j.KillAt = 0
}

// publishJob sends a copy of j's record as an event: on the loop, so each
// job's events are in order.
func (l *loop) publishJob(typ string, j *jobs.Job) {
	rec := j.Rec
	l.publish(api.Event{Type: typ, Job: &rec})
}
