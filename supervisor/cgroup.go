//go:build linux

package supervisor

import (
	"fmt"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/unit/cgroup"
	"github.com/tendinit/tend/unit/helper"
)

// cgroups is the loop's cgroup v2 tracking: the hierarchy tend found at
// start (a delegated, writable cgroup of its own), or why there is none.
// Units get a cgroup each under it, created before their child so that
// the child is born inside (clone3 CLONE_INTO_CGROUP); their emptiness is
// learnt from cgroup.events through one inotify watcher, never by polling.
type cgroups struct {
	h      *cgroup.Hierarchy
	w      *cgroup.Watcher
	err    error // why h is nil
	units  int   // counter for unique unit cgroup names
	clone3 bool  // children can be created inside their cgroup; else the trampoline
}

// wantsCgroups says whether any unit may ask for cgroup tracking: only
// then does tend look for a hierarchy (Find moves tend into a leaf of its
// own cgroup, a change worth making only when it is used).
func wantsCgroups(f *config.Config) bool {
	if f.Defaults.Track == config.TrackAuto || f.Defaults.Track == config.TrackCgroup || f.Defaults.Track == "" {
		return true
	}
	for _, s := range f.Services {
		if s.Track == config.TrackCgroup || s.Track == config.TrackAuto {
			return true
		}
	}
	return false
}

// findCgroups looks for the hierarchy once, at start, before any child.
// Where a seccomp profile answers clone3 with ENOSYS (Docker's and
// Podman's default) Go does not fall back, and tend never writes a pid
// into cgroup.procs after the start (that races the child's first fork):
// the child is then the exec trampoline of unit/helper, which joins the
// cgroup itself, drops to the unit's credentials and execs the command.
func (l *loop) findCgroups() {
	if !wantsCgroups(l.cfg.File) {
		l.cg.err = fmt.Errorf("no unit asks for it")
		return
	}
	h, err := cgroup.Find()
	if err != nil {
		l.cg.err = err
		return
	}
	if l.helperExe == "" {
		l.cg.err = fmt.Errorf("%s is not there for the unit helper", helper.Exe)
		return
	}
	l.cg.clone3 = cgroup.Clone3Usable()
	w, err := cgroup.NewWatcher()
	if err != nil {
		l.cg.err = fmt.Errorf("cgroup watcher: %w", err)
		return
	}
	l.cg.h, l.cg.w = h, w
	l.log.Info("units tracked in cgroups", "dir", h.Dir(), "controllers", h.Controllers(), "clone3", l.cg.clone3)
	go func() {
		for ev := range w.Events() {
			l.post(func() { l.cgroupEvent(ev) }, nil)
		}
	}()
}

// closeCgroups stops the watcher (its goroutine ends with its channel)
// and removes the units' pids parent.
func (l *loop) closeCgroups() {
	if l.cg.w != nil {
		l.cg.w.Close()
	}
	l.removeUnitsPids()
}

// cgroupEvent is a change of a unit's cgroup.events.
func (l *loop) cgroupEvent(ev cgroup.Event) {
	u, ok := ev.Cookie.(*unit)
	if !ok || u.ended {
		return
	}
	u.populated = ev.Populated
	l.cgroupSettle(u)
}

// newUnitCgroup makes the cgroup of a new unit and watches it.
func (l *loop) newUnitCgroup(u *unit, name string) error {
	l.cg.units++
	g, err := l.cg.h.New(fmt.Sprintf("%s.%d", name, l.cg.units))
	if err != nil {
		return err
	}
	if _, err := l.cg.w.Watch(g, u); err != nil {
		g.Remove()
		return err
	}
	u.cg = g
	return nil
}

// cgroupMainExited: the main process of a cgroup unit was reaped. With
// kill_mode unit what is left gets the stop signal, then SIGKILL (all of
// it, through cgroup.kill) after the stop timeout; the unit ends once its
// cgroup is empty.
func (l *loop) cgroupMainExited(u *unit) {
	if n, err := u.cg.Count(); err == nil {
		u.left = n
	}
	if u.left > 0 {
		l.unitMainExited(u)
	}
	if u.left == 0 || u.spec.killMode == config.KillMainOnly {
		l.cgroupEnd(u)
		return
	}
	if u.spec.stopTimeout == 0 {
		_ = u.cg.Kill()
	} else {
		_ = l.cgroupSignal(u, u.spec.stopSignal)
		u.sweep = l.tm.after(u.spec.stopTimeout, func() {
			u.sweep = 0
			if !u.ended {
				_ = u.cg.Kill()
			}
		})
	}
	l.cgroupSettle(u)
}

// cgroupSettle ends u once its main is reaped and its cgroup is empty.
func (l *loop) cgroupSettle(u *unit) {
	if u.ended || u.exit == nil {
		return
	}
	if pop, err := u.cg.Populated(); err == nil && pop {
		return
	}
	l.cgroupEnd(u)
}

// cgroupEnd removes u's cgroup and ends u. A main-only unit's leftovers
// keep theirs; it is left in place, named in the log.
func (l *loop) cgroupEnd(u *unit) {
	if u.sweep != 0 {
		l.tm.cancel(u.sweep)
		u.sweep = 0
	}
	l.cg.w.Unwatch(u.cg)
	if err := u.cg.Remove(); err != nil {
		l.log.Warn("unit cgroup left in place", "dir", u.cg.Path(), "err", err)
	}
	l.endUnit(u, *u.exit)
}

// setNProc resolves [jobs] nproc once, at start, after setUnitsPids:
// "auto" is tend's own pids limit (its cgroup's pids.max or an ancestor's,
// v1 or v2, read-only is enough) less a reserve for root, so that a
// non-root caller's fork bomb meets its RLIMIT_NPROC before the container's
// pids limit; where the units share a pids cgroup (setUnitsPids) it is that
// cgroup's pids.max less a reserve, so that root's units still have room
// beside such a bomb. Where no pids limit is set there is nothing to
// protect and no limit.
func (l *loop) setNProc() {
	n := l.cfg.File.Jobs.NProc
	if n != config.NProcAuto {
		l.nproc = n
		if n > 0 {
			l.log.Info("jobs of non-root users get RLIMIT_NPROC", "nproc", n, "setting", "[jobs] nproc")
		}
		return
	}
	limit, file, err := cgroup.PidsLimit()
	if err != nil {
		l.log.Debug("no pids limit found: jobs get no RLIMIT_NPROC", "err", err)
		return
	}
	base := limit
	if l.units.max > 0 {
		base = l.units.max
	}
	l.nproc = config.NProcFor(base)
	if l.nproc > 0 {
		l.log.Info("jobs of non-root users get RLIMIT_NPROC", "nproc", l.nproc, "pids_max", limit, "file", file,
			"units_pids_max", l.units.max, "reserved", base-int64(l.nproc), "setting", `[jobs] nproc = "auto"`)
	}
}
