//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
	"github.com/tendinit/tend/unit/cgroup"
	"github.com/tendinit/tend/unit/helper"
)

// unit is one service run or one job: the command tend started and all it
// starts in turn (DESIGN.md §1.11). How its processes are tracked is its
// track:
//   - group: tend's child is the command, leading its own process group or
//     session; the group is reached through the child's handle while the
//     child is unreaped; a process that leaves the group escapes.
//   - subreaper: tend's child is a unit helper (unit/helper), the unit's own
//     subreaper, which starts the command, reports its raw wait status, and
//     signals, stops and sweeps the unit when told; whatever the unit forks
//     or setsids stays its descendant. tend never SIGKILLs the helper: it
//     asks it to kill, and only past a bounded deadline kills the helper's
//     tree itself.
//
// The unit ends when nothing of it is left: the group leader (group) or the
// helper (subreaper) has been reaped. Only then does its owner learn of the
// end, with the main process's status: a restart never overlaps leftovers
// of the run before. Owned by the loop.
type unit struct {
	track config.Track
	owner any           // *service or *jobs.Job
	proc  *reaper.Child // tend's child: the command, or the helper
	conn  *helper.Conn  // subreaper: the helper's control socket; tramp: its report socket
	// tramp: tend's child is the exec trampoline (unit/helper's exec
	// mode), which becomes the command: the command runs once its report
	// socket closes at the exec.
	tramp bool

	main     int             // the command's pid; 0 until known
	started  bool            // the command has been exec'd
	mainDone bool            // the command has exited: mainWS is its status
	mainWS   unix.WaitStatus // raw, as wait4 gave it to whoever reaped it
	left     int             // leftovers killed after the main process ended
	startErr error           // why the command could not be started (subreaper)
	ended    bool
	rescue   uint64 // timer: kill the helper's tree if it has not ended the unit
	// pidfd (subreaper, spec.pidfd) is the command's pidfd from its
	// helper, -1 if none: kept only until the request's answer takes a
	// copy (backend.PidFD) or the command exits, so that running units
	// hold no fd each.
	pidfd int

	// subreaper: the unit ends when the helper has been reaped and its
	// socket read to EOF, whichever comes last: the reaper and the relay
	// are two paths into the loop, and the helper's last messages (the
	// command's status) may arrive after its own exit.
	helperExit *reaper.Exit
	relayDone  bool
	drain      uint64 // timer: stop waiting for EOF (a leaked socket)

	// cgroup: the unit's own cgroup; the unit ends when its main has been
	// reaped (exit) and the cgroup is empty.
	cg        *cgroup.Group
	spec      unitSpec
	exit      *reaper.Exit
	populated bool
	sweep     uint64 // timer: cgroup.kill of the leftovers

	// v1: the unit's cgroup v1 directories for its limits, removed when
	// it ends; oomKills: the OOM killer's kills read from the cgroup
	// holding its memory limit.
	v1       []*cgroup.V1Group
	oomKills uint64
}

// unitSpec is what a unit needs beyond its prepared command.
type unitSpec struct {
	name        string // for its cgroup's name
	track       config.Track
	files       []uintptr // stdio
	stopSignal  unix.Signal
	stopTimeout time.Duration // for leftovers once the main process ends
	killMode    config.KillMode
	// nproc > 0 is the RLIMIT_NPROC (soft = hard) the command gets, set
	// before its exec by the trampoline or the helper: [jobs] nproc for a
	// job that runs as a non-root uid.
	nproc int
	// signalAs is the uid whose rights tend's signals to the unit carry
	// (reaper.Child.SignalAs): a non-root caller's, for its jobs; 0:
	// tend's own. cgroup.kill of the unit's own cgroup is not a signal
	// of this kind: everything in that cgroup is the unit's.
	signalAs int
	limits   limitPlan // memory_max, pids_max and where they go
	uid      int       // the unit's uid (0: root or tend's own)
	// proc is set in the command's process before its exec (umask, nice,
	// rlimits, no_new_privs): by the trampoline, or the subreaper helper.
	proc helper.Process
	// pidfd (subreaper): the helper passes a pidfd of the command with
	// its started message, for the answer of the job's request.
	pidfd bool
}

// errHelperEnded is a unit helper that died before it started its
// command: tend's side of the start failed, not the command. At pids.max
// its Go runtime cannot make a thread and exits 2.
var errHelperEnded = errors.New("the unit helper ended before its command started")

// helperRescue is how long past its own deadline tend gives a unit helper
// to end its unit before tend kills the helper's tree itself.
const helperRescue = 5 * time.Second

// resolveTrack is the track a unit gets: auto picks the best available;
// a track asked for by name that cannot be had here is an error naming
// why, never a silent downgrade. It reads only settings fixed at start:
// safe off the loop.
func (l *loop) resolveTrack(t config.Track) (config.Track, error) {
	if t == "" {
		t = l.file.Load().Defaults.Track // off the loop too: the reload's copy
	}
	switch t {
	case config.TrackAuto, "":
		// A cgroup each where tend has a writable hierarchy, else the
		// process group. The unit helper is not auto's choice yet: with
		// it as the default the whole suite, run under CI's load, still
		// fails now and then (a parallel stop's TERM trap not run, a
		// workload exit misreported); it is there by name.
		if l.cg.h != nil {
			return config.TrackCgroup, nil
		}
		return config.TrackGroup, nil
	case config.TrackCgroup:
		if l.cg.h == nil {
			return "", fmt.Errorf("track %q: not available: %v", t, l.cg.err)
		}
	case config.TrackSubreaper:
		if l.helperExe == "" {
			return "", fmt.Errorf("track %q: the unit helper cannot be started: %s is not there", t, helper.Exe)
		}
	}
	return t, nil
}

// startUnit forks p as a unit owned by owner. For a group unit the command
// runs when it returns (started); a subreaper unit's command is exec'd by
// its helper, which says so later (unitMessage).
func (l *loop) startUnit(p *spawn.Prepared, us unitSpec, owner any) (*unit, error) {
	u := &unit{track: us.track, owner: owner, spec: us, pidfd: -1}
	q := p.WithFiles(us.files)
	if err := l.makeV1(u, us.name, l.v1Owner(us)); err != nil {
		l.removeV1(u)
		return nil, err
	}
	started, err := l.startUnitIn(u, p, q)
	if err != nil {
		l.removeV1(u)
		return nil, err
	}
	u.closeV1FDs() // the child has its copies
	return started, nil
}

// v1Owner is the uid to give a unit's v1 directories to: a subreaper
// helper joins them with the unit's credentials; the trampoline joins as
// root.
func (l *loop) v1Owner(us unitSpec) int {
	if us.track == config.TrackSubreaper {
		return us.uid
	}
	return 0
}

// startUnitIn forks u once its v1 directories, if any, are made.
func (l *loop) startUnitIn(u *unit, p, q *spawn.Prepared) (*unit, error) {
	us := u.spec
	if u.track == config.TrackCgroup {
		if err := l.newUnitCgroup(u, us.name); err != nil {
			return nil, err
		}
		if err := l.applyV2Limits(u); err != nil {
			l.cg.w.Unwatch(u.cg)
			u.cg.Remove()
			return nil, err
		}
		if !l.cg.clone3 || us.nproc > 0 || us.limits.needsTrampoline || us.proc.Set() {
			return l.startTrampoline(u, p, q)
		}
		cq := q.InCgroup(u.cg.FD())
		c, err := l.r.Start(func(pidfd *int) (int, error) { return l.fork(cq, pidfd) }, u)
		if err != nil {
			l.cg.w.Unwatch(u.cg)
			u.cg.Remove()
			return nil, err
		}
		c.SignalAs(us.signalAs)
		u.proc, u.main, u.started = c, c.Pid(), true
		return u, nil
	}
	if u.track != config.TrackSubreaper && (us.nproc > 0 || us.limits.needsTrampoline || us.proc.Set()) {
		return l.startTrampoline(u, p, q)
	}
	if u.track != config.TrackSubreaper {
		c, err := l.r.Start(func(pidfd *int) (int, error) { return l.fork(q, pidfd) }, u)
		if err != nil {
			return nil, err
		}
		c.SignalAs(us.signalAs)
		u.proc, u.main, u.started = c, c.Pid(), true
		return u, nil
	}
	hs := helper.Subreaper{Path: p.Path(), Argv: p.Spec().Argv, Env: p.Spec().Env,
		StopSignal: syscall.Signal(us.stopSignal), StopTimeout: us.stopTimeout, KillMode: helper.KillMode(us.killMode),
		Setsid: p.Spec().Setsid, NProc: us.nproc, Cgroups: len(u.v1), Process: us.proc, PidFD: us.pidfd}
	// The control socket goes after the stdio and any fds passed on at
	// their own numbers (socket activation): where Via puts it; the v1
	// directories to join follow it.
	_, hs.CtlFD = q.Via(l.helperExe, nil, nil, 0)
	argv, env, err := hs.Args()
	if err != nil {
		return nil, err
	}
	mine, theirs, err := helper.Socketpair()
	if err != nil {
		return nil, err
	}
	hq, _ := q.Via(l.helperExe, argv, env, append([]uintptr{theirs.Fd()}, u.v1FDs()...)...)
	c, err := l.r.Start(func(pidfd *int) (int, error) { return l.fork(hq, pidfd) }, u)
	theirs.Close() // the helper has its copy
	if err != nil {
		mine.Close()
		return nil, err
	}
	// The helper runs with the unit's credentials, so its own signals
	// carry them; tend's last resort on its tree (armRescue) must too:
	// the caller can stop his own helper to bring that about.
	c.SignalAs(us.signalAs)
	u.proc, u.conn = c, helper.NewConn(mine)
	go l.relay(u)
	return u, nil
}

// startTrampoline starts a unit through the exec trampoline, where the
// command needs something done in its own process before its exec that
// Go's fork cannot do: joining the unit's cgroup without clone3, or an
// RLIMIT_NPROC (a limit set by tend on itself would be tend's until it
// is restored, and a hard limit once lowered cannot be raised again
// without CAP_SYS_RESOURCE). tend's child runs the helper's exec mode as
// root, which joins the unit's cgroup (fd FDCgroup, if it has one), sets
// the limit, drops to the unit's credentials and becomes the command. Its
// report socket says why it failed, or reaches EOF at the exec: only then
// is the command started. A unit with limits in cgroup v1 directories goes
// this way too: the trampoline joins them (fds after the v2 cgroup's)
// before anything else, so no process of the unit runs outside them.
func (l *loop) startTrampoline(u *unit, p, q *spawn.Prepared) (*unit, error) {
	fail := func(err error) (*unit, error) {
		if u.cg != nil {
			l.cg.w.Unwatch(u.cg)
			u.cg.Remove()
		}
		return nil, err
	}
	he := helper.Exec{Path: p.Path(), Argv: p.Spec().Argv, Env: p.Spec().Env, Cgroup: u.cg != nil, V1: len(u.v1), NProc: u.spec.nproc, Cred: q.Cred(),
		Process: u.spec.proc}
	// The report socket and the cgroup's fd go after the stdio and any
	// fds passed on at their own numbers: where Via puts them.
	_, he.CtlFD = q.Via(l.helperExe, nil, nil, 0)
	argv, env, err := he.Args()
	if err != nil {
		return fail(err)
	}
	mine, theirs, err := helper.Socketpair()
	if err != nil {
		return fail(err)
	}
	extra := []uintptr{theirs.Fd()}
	if u.cg != nil {
		extra = append(extra, uintptr(u.cg.FD()))
	}
	hq, _ := q.AsRoot().Via(l.helperExe, argv, env, append(extra, u.v1FDs()...)...)
	c, err := l.r.Start(func(pidfd *int) (int, error) { return l.fork(hq, pidfd) }, u)
	theirs.Close()
	if err != nil {
		mine.Close()
		return fail(err)
	}
	c.SignalAs(u.spec.signalAs)
	u.proc, u.main, u.conn, u.tramp = c, c.Pid(), helper.NewConn(mine), true
	go l.relay(u)
	return u, nil
}

// relay posts a helper's messages to the loop, in order, then its EOF.
func (l *loop) relay(u *unit) {
	for m := range u.conn.Messages() {
		l.post(func() { l.unitMessage(u, m) }, func() { closePidFD(&m.FD) })
	}
	l.post(func() { l.unitRelayDone(u) }, nil)
}

// helperDrain bounds the wait for a reaped helper's EOF. Its datagrams are
// queued before it exits, so EOF follows at once unless a process that
// outlived it still holds the socket (it cannot, close-on-exec; this is
// the belt to that).
const helperDrain = time.Second

// unitRelayDone: the helper's socket is read to the end.
func (l *loop) unitRelayDone(u *unit) {
	u.relayDone = true
	if u.tramp && !u.started && u.startErr == nil && !u.ended {
		// The trampoline's socket closed at its exec: the command runs
		// (or ran: its exit may be here already).
		u.started = true
		l.unitStarted(u)
	}
	if u.helperExit != nil && !u.ended {
		l.unitReaped(u, *u.helperExit)
	}
}

// unitMessage handles one message of a unit's helper.
func (l *loop) unitMessage(u *unit, m helper.Message) {
	if u.ended || m.Kind != helper.Started || !u.spec.pidfd || u.pidfd >= 0 {
		closePidFD(&m.FD) // not asked for, or too late: nobody would close it
	}
	if u.ended {
		return
	}
	switch m.Kind {
	case helper.Started:
		u.main, u.started = m.PID, true
		if m.FD >= 0 {
			u.pidfd = m.FD
		}
		l.unitStarted(u) // answers the request: the pidfd is there for it
	case helper.Failed:
		if u.started { // the helper exits now: its end reports this
			break
		}
		switch {
		case m.Path == "setup":
			u.startErr = fmt.Errorf("unit helper setup: %w", m.Errno)
		case m.Errno == unix.EAGAIN:
			// fork(2) in the helper met pids.max or RLIMIT_NPROC: a
			// limit, not the command's fault, as in a direct start.
			u.startErr = fmt.Errorf("fork %s: %w", m.Path, m.Errno)
		default:
			u.startErr = &spawn.ExecError{Path: m.Path, Err: m.Errno}
		}
	case helper.Exited:
		u.mainDone, u.mainWS = true, unix.WaitStatus(m.Status)
		l.unitMainExited(u)
	case helper.Left:
		u.left = m.N
	case helper.Invalid:
		l.log.Warn("unit helper", "err", m.Err)
	}
}

// unitExit is the exit of a unit's child (the command, or its helper): for
// group units and for helpers, the end of the unit.
func (l *loop) unitExit(u *unit, e reaper.Exit) {
	if u.conn != nil && !u.relayDone {
		u.helperExit = &e
		u.drain = l.tm.after(helperDrain, func() {
			u.drain = 0
			if !u.ended {
				l.log.Warn("unit helper's socket still open after its exit: ending the unit", "pid", e.Pid)
				l.unitReaped(u, e)
			}
		})
		return
	}
	l.unitReaped(u, e)
}

// unitReaped: u's child has been reaped and its messages, if any, taken.
// A cgroup unit ends once its cgroup is empty too.
func (l *loop) unitReaped(u *unit, e reaper.Exit) {
	if u.cg != nil {
		if u.drain != 0 {
			l.tm.cancel(u.drain)
			u.drain = 0
		}
		if u.conn != nil {
			u.conn.Close()
		}
		u.exit, u.mainDone, u.mainWS = &e, true, e.Status
		l.cgroupMainExited(u)
		return
	}
	l.endUnit(u, e)
}

// endUnit ends u: its child (the command, or the helper) has been reaped,
// and a helper's messages have all been taken.
func (l *loop) endUnit(u *unit, e reaper.Exit) {
	if u.drain != 0 {
		l.tm.cancel(u.drain)
		u.drain = 0
	}
	if !u.mainDone {
		// group: this is the main process. subreaper: the helper died
		// without saying how the command ended; its own status it is.
		u.mainDone, u.mainWS = true, e.Status
		if !u.started && u.startErr == nil {
			u.startErr = fmt.Errorf("%w: %s", errHelperEnded, reaper.Describe(e.Status))
		}
	}
	u.ended = true
	closePidFD(&u.pidfd)
	l.readOOM(u)
	l.removeV1(u)
	if u.rescue != 0 {
		l.tm.cancel(u.rescue)
		u.rescue = 0
	}
	if u.conn != nil {
		u.conn.Close()
	}
	switch o := u.owner.(type) {
	case *service:
		l.serviceUnitEnded(o, u)
	case *jobs.Job:
		l.jobUnitEnded(o, u)
	}
}

// unitStarted tells u's owner that its command runs.
func (l *loop) unitStarted(u *unit) {
	switch o := u.owner.(type) {
	case *service:
		l.serviceStarted(o, u)
	case *jobs.Job:
		l.jobStarted(o, u)
	}
}

// unitMainExited notes that a unit's command has exited while the unit
// lives on, sweeping its leftovers (subreaper, cgroup). A job's exit is
// recorded now: its waiter learns the command's status when the command
// ends, not when the last leftover is gone; its slot is free again.
func (l *loop) unitMainExited(u *unit) {
	closePidFD(&u.pidfd) // the job's record is exited: no answer passes it now
	l.readOOM(u)
	l.log.Debug("main process exited, unit still ending", "pid", u.main, "status", reaper.Describe(u.mainWS))
	if j, ok := u.owner.(*jobs.Job); ok && j.Run == u && u.started {
		l.jobExited(j, u)
	}
}

// closePidFD closes *fd, if any, and leaves -1.
func closePidFD(fd *int) {
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

// signalMain sends sig to u's main process; with group, to its process
// group (the main leads one).
func (l *loop) signalMain(u *unit, sig unix.Signal, group bool) error {
	if u == nil || u.ended || u.mainDone {
		return reaper.ErrNotRunning
	}
	if u.track != config.TrackSubreaper {
		if group {
			return u.proc.SignalGroup(sig)
		}
		return u.proc.Signal(sig)
	}
	if !u.started {
		return reaper.ErrNotRunning
	}
	if group {
		return l.helperSend(u, func() error { return u.conn.Tree(sig) })
	}
	return l.helperSend(u, func() error { return u.conn.Signal(sig) })
}

// signalUnit sends sig to every process of u that tend can reach: the
// group while its leader lives, or all of the helper's unit.
func (l *loop) signalUnit(u *unit, sig unix.Signal) error {
	if u == nil || u.ended {
		return reaper.ErrNotRunning
	}
	switch u.track {
	case config.TrackCgroup:
		return l.cgroupSignal(u, sig)
	case config.TrackSubreaper:
		return l.helperSend(u, func() error { return u.conn.Tree(sig) })
	}
	return u.proc.SignalGroup(sig)
}

// killUnit SIGKILLs every process of u: the group through its leader's
// handle, or by the helper, which exits once its unit is empty; a helper
// that has not ended its unit helperRescue later has its tree killed by
// tend.
func (l *loop) killUnit(u *unit) error {
	if u == nil || u.ended {
		return reaper.ErrNotRunning
	}
	if u.track == config.TrackCgroup {
		return u.cg.Kill()
	}
	if u.track != config.TrackSubreaper {
		return u.proc.SignalGroup(unix.SIGKILL)
	}
	err := l.helperSend(u, u.conn.Kill)
	l.armRescue(u, helperRescue)
	return err
}

// stopUnit asks u to stop as a whole: sig to every process, SIGKILL to what
// is left after timeout. Only a helper can do it for all; a group unit gets
// sig on its group and the SIGKILL from the caller's own timer.
func (l *loop) stopUnit(u *unit, sig unix.Signal, timeout time.Duration) error {
	if u == nil || u.ended {
		return reaper.ErrNotRunning
	}
	if u.track == config.TrackCgroup {
		return l.cgroupSignal(u, sig)
	}
	if u.track != config.TrackSubreaper {
		return u.proc.SignalGroup(sig)
	}
	err := l.helperSend(u, func() error { return u.conn.Stop(syscall.Signal(sig), timeout) })
	l.armRescue(u, timeout+helperRescue)
	return err
}

// cgroupSignal sends sig to every process in u's cgroup that u's signalAs
// uid may signal (all of them for tend's own units): a signal, unlike
// cgroup.kill, is the caller's act, so it carries the caller's rights.
func (l *loop) cgroupSignal(u *unit, sig unix.Signal) error {
	if u.spec.signalAs == 0 {
		return u.cg.Signal(sig)
	}
	return u.cg.SignalVia(sig, func(fd int, sig unix.Signal) error { return l.r.PidfdSignalAs(u.spec.signalAs, fd, sig) })
}

// helperSend sends one command to u's helper. A helper that is gone (its
// exit not yet taken) gives ErrNotRunning, as a reaped child would.
func (l *loop) helperSend(u *unit, send func() error) error {
	if u.proc.Reaped() {
		return reaper.ErrNotRunning
	}
	if err := send(); err != nil {
		if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, os.ErrClosed) {
			return reaper.ErrNotRunning
		}
		return err
	}
	return nil
}

// armRescue makes sure that, d from now, a helper still there has its
// whole tree killed by tend: the helper's handle pins its number, and its
// descendants are reached through checked pidfds.
func (l *loop) armRescue(u *unit, d time.Duration) {
	if u.rescue != 0 {
		return
	}
	u.rescue = l.tm.after(d, func() {
		u.rescue = 0
		if !u.ended {
			n := u.proc.SignalTree(unix.SIGKILL)
			l.log.Warn("unit helper did not end its unit in time: killed its tree", "pid", u.proc.Pid(), "processes", n)
		}
	})
}

// unitPid is the pid to show for u: the command's once known.
func unitPid(u *unit) *int {
	if u == nil || u.ended || u.main == 0 || u.mainDone {
		return nil
	}
	pid := u.main
	return &pid
}

// locateHelper picks the unit helper's program once, at start.
func (l *loop) locateHelper() {
	exe, note := helper.Locate()
	if _, err := os.Stat(exe); err != nil {
		l.log.Warn("no unit helper: track subreaper and per-service process settings are unavailable", "err", err)
		return
	}
	l.helperExe = exe
	if note != "" && exe == helper.Exe {
		l.log.Warn(note) // one was installed and refused
	} else if note != "" {
		l.log.Debug(note)
	}
}
