//go:build linux

package supervisor

import (
	"fmt"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/unit/cgroup"
)

// unitsDir is the one cgroup of tend's that holds every unit ([jobs]
// units_pids): its pids.max caps all of them together. Unit cgroup names
// end in "-N" and tend's v2 leaf is "tend": neither can take it.
const unitsDir = "units"

// unitsPids is the pids reserve of tend's, fixed at start by setUnitsPids:
// the cgroup that every unit goes below, and its figures. Both nil: none.
type unitsPids struct {
	v2    *cgroup.Hierarchy // the v2 parent: l.cg.h is it from then on
	v1    *cgroup.V1        // the v1 parent, in tend's pids hierarchy
	max   int64             // its pids.max
	limit int64             // tend's own pids limit (0: none found)
	file  string            // the pids.max that sets limit
	dir   string
}

// setUnitsPids resolves [jobs] units_pids once, at start, after the
// hierarchies are found and before any unit: "auto" is NProcFor of tend's
// own pids limit (as [jobs] nproc = "auto"), so that units together,
// root's included (RLIMIT_NPROC does not hold for root), can never take
// the pids that tend needs to make a thread, answer, reap and restart;
// where no pids limit is set there is nothing to keep. The parent is made
// in the v2 hierarchy where tend's units get the pids controller there,
// else in tend's v1 pids hierarchy, where every unit's own directory is
// joined by its trampoline or helper before its command runs. Where
// neither can be had nothing changes (root's units are then not covered:
// docs/GUARANTEES.md).
func (l *loop) setUnitsPids() {
	u := &l.units
	n := int64(l.cfg.File.Jobs.UnitsPids)
	if n == 0 {
		return
	}
	limit, file, _ := cgroup.PidsLimit()
	u.limit, u.file = limit, file
	if n == config.UnitsPidsAuto {
		if limit == 0 {
			l.log.Debug("no pids limit found: no pids reserve to keep", "setting", `[jobs] units_pids = "auto"`)
			return
		}
		n = int64(config.NProcFor(limit))
	}
	v2 := l.cg.h != nil && l.cg.h.Has("pids")
	if !v2 && l.v1.pids == nil && !wantsLimits(l.cfg.File) {
		// findV1 did not look: no unit asks for a limit of its own.
		l.v1.pids, l.v1.pidsErr = cgroup.FindV1("pids")
		if l.v1.pids != nil {
			l.v1.mem, l.v1.memErr = cgroup.FindV1("memory") // for co-mounting only
		}
	}
	switch {
	case v2:
		sub, err := limitedSub(l.cg.h, n)
		if err != nil {
			l.log.Warn("no pids reserve: cannot make the units' cgroup", "err", err, "setting", "[jobs] units_pids")
			return
		}
		u.v2, u.dir = sub, sub.Dir()
		l.cg.h = sub
	case l.v1.pids != nil:
		sub, err := limitedSub(l.v1.pids, n)
		if err != nil {
			l.log.Warn("no pids reserve: cannot make the units' cgroup", "err", err, "setting", "[jobs] units_pids")
			return
		}
		// Co-mounted memory: a unit's one directory there is below
		// the parent too (a process is in one cgroup of a hierarchy).
		if l.v1.pids.SameHierarchy(l.v1.mem) {
			l.v1.mem = sub
		}
		u.v1, u.dir = sub, sub.Dir()
		l.v1.pids = sub
	default:
		why := fmt.Sprintf("no writable pids cgroup for units: cgroup v2: %v; %v", l.v2PidsErr(), l.v1.pidsErr)
		l.log.Info("no pids reserve: units are not under one pids cgroup", "why", why, "pids_max", limit, "setting", "[jobs] units_pids")
		return
	}
	u.max = n
	msg := fmt.Sprintf("units share pids.max %d", n)
	switch {
	case limit > n:
		msg += fmt.Sprintf("; tend keeps %d", limit-n)
	case limit > 0:
		// A number set by hand at or over the limit: the units are
		// grouped, but tend keeps nothing of its own.
		l.log.Warn(fmt.Sprintf("[jobs] units_pids %d is not below tend's pids limit %d: tend keeps no pids reserve", n, limit), "file", file)
	}
	l.log.Info(msg, "dir", u.dir, "pids_max", limit, "file", file, "setting", "[jobs] units_pids")
}

// v2PidsErr says why units get no pids controller in cgroup v2.
func (l *loop) v2PidsErr() error {
	_, err := l.v2Has(config.TrackCgroup, "pids")
	return err
}

// removeUnitsPids removes the units' parent at tend's exit, once every
// unit has ended; one a process outlived keeps it, named in the log. The
// fields stay: the API's goroutines may still read them (planLimits), and
// a unit started now fails to make its directory, as it should.
func (l *loop) removeUnitsPids() {
	u := &l.units
	var err error
	switch {
	case u.v2 != nil:
		err = u.v2.RemoveDir()
	case u.v1 != nil:
		err = u.v1.RemoveDir()
	default:
		return
	}
	if err != nil {
		l.log.Warn("the units' pids cgroup left in place", "dir", u.dir, "err", err)
	}
}

// pidsReserve is the reserve for GET /v1/status; nil where there is none.
func (l *loop) pidsReserve() *api.PidsReserve {
	u := &l.units
	if u.max == 0 {
		return nil
	}
	r := &api.PidsReserve{UnitsPidsMax: u.max, Dir: u.dir, PidsLimit: u.limit}
	if u.limit > u.max {
		r.Reserved = u.limit - u.max
	}
	return r
}

// cgroupDir is what a cgroup directory of either version offers the
// units' parent.
type cgroupDir interface {
	SetPidsMax(int64) error
	RemoveDir() error
}

// limitedSub makes the units' parent below base with pids.max n, and
// removes it again when the limit cannot be written.
func limitedSub[T cgroupDir](base interface{ Sub(string) (T, error) }, n int64) (T, error) {
	sub, err := base.Sub(unitsDir)
	if err != nil {
		return sub, err
	}
	if err := sub.SetPidsMax(n); err != nil {
		_ = sub.RemoveDir()
		var none T
		return none, err
	}
	return sub, nil
}
