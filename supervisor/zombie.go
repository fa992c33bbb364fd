//go:build linux

package supervisor

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/zombies"
)

// zombieMaxAge is how long a scan answers for: callers asking in a loop
// cost one walk of /proc a second.
const zombieMaxAge = time.Second

// namedMember is a running unit and what to call it.
type namedMember struct {
	name string
	m    *member
}

// members lists the running units of services and jobs, for naming the
// unit a process belongs to off the loop.
func (l *loop) members() []namedMember {
	var out []namedMember
	for _, s := range l.svcs {
		if s.unit != nil && s.unit.proc != nil {
			out = append(out, namedMember{"service " + s.cfg.Name, memberOf(s.unit)})
		}
	}
	for _, j := range l.jobs.RunningJobs() {
		if u, ok := j.Run.(*unit); ok && u != nil && u.proc != nil {
			out = append(out, namedMember{"job " + j.Rec.ID, memberOf(u)})
		}
	}
	return out
}

// scanZombies scans (or takes the last scan younger than zombieMaxAge) and
// names each parent's unit. Off the loop: it reads /proc.
func scanZombies(s *zombies.Scanner, ms []namedMember) []api.ZombieParent {
	ps := s.Scan(os.Getpid(), zombieMaxAge)
	out := make([]api.ZombieParent, 0, len(ps))
	for _, p := range ps {
		zp := api.ZombieParent{PID: p.PID, UID: p.UID, Command: p.Command, Zombies: p.Zombies, ZombiePIDs: p.PIDs, FirstSeen: p.FirstSeen}
		for _, nm := range ms {
			if nm.m.holds(p.PID) {
				zp.Owner = nm.name
				break
			}
		}
		out = append(out, zp)
	}
	return out
}

// zombieTick is the [zombies] scan: off the loop, then zombieResult on it.
func (l *loop) zombieTick() {
	ms := l.members()
	go func() {
		ps := scanZombies(l.zscan, ms)
		l.post(func() { l.zombieResult(ps) }, nil)
	}()
}

// zombieResult warns, once per crossing, of each parent holding warn_at
// zombies or more, keeps the scan for /v1/health, and arms the next scan.
func (l *loop) zombieResult(ps []api.ZombieParent) {
	z := l.cfg.File.Zombies
	over := map[int]bool{}
	for i := range ps {
		p := &ps[i]
		if p.Zombies < z.WarnAt {
			continue
		}
		over[p.PID] = true
		if l.zwarned[p.PID] {
			continue
		}
		l.zwarned[p.PID] = true
		l.log.Warn("a process holds zombies it never waited for: only it can reap them (PID 1 cannot)",
			"pid", p.PID, "command", p.Command, "owner", p.Owner, "zombies", p.Zombies, "first_seen", p.FirstSeen.Format(time.RFC3339))
		zp := *p
		l.publish(api.Event{Type: api.EventZombieHeld, Zombie: &zp, PID: p.PID})
	}
	for pid := range l.zwarned {
		if !over[pid] {
			delete(l.zwarned, pid) // below again: the next crossing warns
		}
	}
	l.zlast = ps
	if !l.sd.active && z.Scan > 0 { // a reload may have turned the scan off
		l.tm.after(z.Scan, l.zombieTick)
	}
}

// zombiesDown is what the last scan says against /v1/health ([zombies]
// health_max).
func (l *loop) zombiesDown() []api.Down {
	limit := l.cfg.File.Zombies.HealthMax
	if limit <= 0 {
		return nil
	}
	var out []api.Down
	for _, p := range l.zlast {
		if p.Zombies > limit {
			svc := ""
			if s, ok := strings.CutPrefix(p.Owner, "service "); ok {
				svc = s
			}
			out = append(out, api.Down{Service: svc, Reason: fmt.Sprintf("pid %d (%s) holds %d zombies (health_max %d)", p.PID, p.Command, p.Zombies, limit)})
		}
	}
	return out
}

// Zombies is GET /v1/zombies: a scan, those c may see.
func (b backend) Zombies(c control.Caller) []api.ZombieParent {
	var ms []namedMember
	if b.do(func() { ms = b.l.members() }) != nil {
		return nil
	}
	all := scanZombies(b.l.zscan, ms)
	out := all[:0:0]
	for _, p := range all {
		if c.Root() || p.UID == c.UID {
			out = append(out, p)
		}
	}
	return out
}
