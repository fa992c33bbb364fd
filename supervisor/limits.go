//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/unit/cgroup"
)

// v1Limits is the loop's cgroup v1 hierarchies for unit limits, found once
// at start (findV1): where the v2 tree lacks the memory or pids controller
// (a hybrid host binds them to v1), a unit with memory_max or pids_max
// gets a directory of its own in the v1 hierarchy, joined by its own
// process before exec (the unit helper), never by tend writing a pid.
type v1Limits struct {
	mem, pids       *cgroup.V1 // nil: none usable, for memErr, pidsErr
	memErr, pidsErr error
}

// wantsLimits says whether any unit may ask for a limit: a service with
// one, or any job while the control socket is on (setUnitsPids looks for
// the pids hierarchy itself when it needs one). Finding is cheap and
// creates nothing; a unit's directory is made when it starts.
func wantsLimits(f *config.Config) bool {
	if f.Control.Socket != "" {
		return true
	}
	for _, s := range f.Services {
		if s.MemoryMax != config.NoLimit || s.PidsMax != config.NoLimit {
			return true
		}
	}
	return false
}

// findV1 looks for the v1 hierarchies of memory and pids once, at start.
func (l *loop) findV1() {
	if !wantsLimits(l.cfg.File) {
		l.v1.memErr = errors.New("cgroup v1: not looked for: no unit asks for a limit")
		l.v1.pidsErr = l.v1.memErr
		return
	}
	l.v1.mem, l.v1.memErr = cgroup.FindV1("memory")
	l.v1.pids, l.v1.pidsErr = cgroup.FindV1("pids")
	if l.v1.mem != nil || l.v1.pids != nil {
		l.log.Info("unit limits through cgroup v1", "memory", v1Dir(l.v1.mem), "pids", v1Dir(l.v1.pids))
	}
}

func v1Dir(v *cgroup.V1) string {
	if v == nil {
		return ""
	}
	return v.Dir()
}

// limitPlan is where a unit's limits go: its own v2 cgroup, or a v1
// directory per hierarchy. The zero plan limits nothing and costs nothing.
type limitPlan struct {
	memory, pids  int64 // config.NoLimit: none
	memV2, pidsV2 bool  // written in the unit's v2 cgroup
	memV1, pidsV1 bool  // in a v1 directory of their own
	v1Mem, v1Pids *cgroup.V1
	// needsTrampoline: some limit is in a v1 directory, which the unit's
	// child must join itself before exec.
	needsTrampoline bool
}

// planLimits decides where memory and pids limits of a unit with track
// go: the unit's v2 cgroup where its controller is enabled there, else a
// v1 hierarchy of tend's, else an error naming the field, the controller
// and why each place is missing. It reads settings fixed at start: safe
// off the loop.
func (l *loop) planLimits(track config.Track, memory, pids int64) (limitPlan, error) {
	p := limitPlan{memory: memory, pids: pids}
	if memory != config.NoLimit {
		v2, err := l.v2Has(track, "memory")
		switch {
		case v2:
			p.memV2 = true
		case l.v1.mem != nil:
			p.memV1, p.v1Mem = true, l.v1.mem
		default:
			return p, fmt.Errorf("memory_max: the memory controller is missing here: cgroup v2: %v; %v", err, l.v1.memErr)
		}
	}
	if pids != config.NoLimit {
		v2, err := l.v2Has(track, "pids")
		switch {
		case v2:
			p.pidsV2 = true
		case l.v1.pids != nil:
			p.pidsV1, p.v1Pids = true, l.v1.pids
		default:
			return p, fmt.Errorf("pids_max: the pids controller is missing here: cgroup v2: %v; %v", err, l.v1.pidsErr)
		}
	}
	if l.units.v1 != nil && !p.pidsV2 && !p.pidsV1 {
		// The pids reserve: every unit has a directory below the units'
		// parent, joined before its command runs (setUnitsPids).
		p.pidsV1, p.v1Pids = true, l.units.v1
	}
	p.needsTrampoline = p.memV1 || p.pidsV1
	return p, nil
}

// v2Has says whether a unit of track gets ctrl in its own v2 cgroup, or why
// not.
func (l *loop) v2Has(track config.Track, ctrl string) (bool, error) {
	if t, err := l.resolveTrack(track); err == nil {
		track = t
	}
	switch {
	case l.cg.h == nil:
		return false, fmt.Errorf("no cgroup of tend's own (%v)", l.cg.err)
	case track != config.TrackCgroup:
		return false, fmt.Errorf("the unit's track is %s, not cgroup", track)
	case !l.cg.h.Has(ctrl):
		on := strings.Join(l.cg.h.Controllers(), " ")
		if on == "" {
			on = "none"
		}
		return false, fmt.Errorf("%s is not enabled under %s (enabled: %s; a hybrid host binds it to v1)", ctrl, l.cg.h.Dir(), on)
	}
	return true, nil
}

// applyV2Limits writes the unit's v2 limits into its cgroup, which exists
// before the child: the child is born limited.
func (l *loop) applyV2Limits(u *unit) error {
	p := u.spec.limits
	if p.memV2 {
		if err := u.cg.SetMemoryMax(p.memory); err != nil {
			return err
		}
	}
	if p.pidsV2 {
		if err := u.cg.SetPidsMax(p.pids); err != nil {
			return err
		}
	}
	return nil
}

// makeV1 makes u's v1 directories (one per hierarchy: memory and pids
// co-mounted share one) with their limits written, before the child. A
// non-root subreaper helper joins as the unit's user: the directory's
// cgroup.procs is given to that uid (the kernel then lets it move only
// processes of its own uid, into a cgroup it cannot leave).
func (l *loop) makeV1(u *unit, name string, uid int) error {
	p := u.spec.limits
	var mem *cgroup.V1Group
	if p.memV1 {
		g, err := p.v1Mem.New(name)
		if err != nil {
			return err
		}
		u.v1 = append(u.v1, g)
		mem = g
		if err := g.SetMemoryLimit(p.memory); err != nil {
			return err
		}
	}
	if p.pidsV1 {
		g := mem
		if g == nil || p.v1Pids != p.v1Mem {
			var err error
			if g, err = p.v1Pids.New(name); err != nil {
				return err
			}
			u.v1 = append(u.v1, g)
		}
		if p.pids != config.NoLimit {
			if err := g.SetPidsMax(p.pids); err != nil {
				return err
			}
		}
	}
	if uid > 0 {
		for _, g := range u.v1 {
			if err := os.Chown(filepath.Join(g.Path(), "cgroup.procs"), uid, -1); err != nil {
				return fmt.Errorf("cgroup v1: give %s's cgroup.procs to uid %d: %w", g.Path(), uid, err)
			}
		}
	}
	return nil
}

// v1FDs are the fds of u's v1 directories, for the helper to join.
func (u *unit) v1FDs() []uintptr {
	fds := make([]uintptr, len(u.v1))
	for i, g := range u.v1 {
		fds[i] = uintptr(g.FD())
	}
	return fds
}

// closeV1FDs closes tend's fds of u's v1 directories once the child has
// its copies.
func (u *unit) closeV1FDs() {
	for _, g := range u.v1 {
		g.Close()
	}
}

// readOOM reads how many of u's processes the OOM killer killed, from the
// cgroup that holds its memory limit (v2 memory.events, v1
// memory.oom_control), before the cgroup is removed. It keeps the highest
// count read: it is read when the main process ends and again at the end.
func (l *loop) readOOM(u *unit) {
	p := u.spec.limits
	var n uint64
	var err error
	switch {
	case p.memV2 && u.cg != nil:
		n, err = u.cg.OOMKills()
	case p.memV1 && len(u.v1) > 0:
		n, err = u.v1[0].OOMKills() // the memory directory is made first
	default:
		return
	}
	if err != nil {
		l.log.Warn("cannot read the unit's OOM kills", "unit", u.spec.name, "err", err)
		return
	}
	u.oomKills = max(u.oomKills, n)
}

// oomKilledMain says whether the OOM killer ended u's main process: the
// unit's oom_kill counter is above 0 and the main died of SIGKILL, or
// exited 137 (128+SIGKILL: a shell reporting its child killed so). Whoever
// else sent a SIGKILL meanwhile (a timeout, a kill request), the kernel's
// own is taken as the cause.
func (u *unit) oomKilledMain() bool {
	if u.oomKills == 0 {
		return false
	}
	ws := u.mainWS
	return ws.Signaled() && ws.Signal() == unix.SIGKILL || ws.Exited() && ws.ExitStatus() == 128+int(unix.SIGKILL)
}

// sayOOM logs what the OOM killer did to u, owned by who ("service web",
// "job j-7f3a"): the main killed, or other processes of the unit.
func (l *loop) sayOOM(u *unit, who string) {
	if u.oomKills == 0 {
		return
	}
	limit := config.FormatBytes(u.spec.limits.memory)
	if u.oomKilledMain() {
		l.log.Warn(fmt.Sprintf("%s: killed by the OOM killer (memory_max %s)", who, limit), "oom_kills", u.oomKills, "status", reaper.Describe(u.mainWS))
		return
	}
	l.log.Warn(fmt.Sprintf("%s: %d processes killed by the OOM killer (memory_max %s)", who, u.oomKills, limit), "oom_kills", u.oomKills)
}

// removeV1 removes u's v1 directories once the unit has ended. One that a
// process outlived (a group unit's escaper) is logged and left: never
// waited for.
func (l *loop) removeV1(u *unit) {
	for _, g := range u.v1 {
		if err := g.Remove(); err != nil {
			l.log.Warn("unit cgroup left in place", "dir", g.Path(), "err", err)
		}
	}
	u.v1 = nil
}
