//go:build linux

package supervisor

import (
	"fmt"
	"strings"
	"time"

	"github.com/tendinit/tend/api"
)

// stopRecord is one unit's part in the shutdown, for the summary that a
// forced stop ends with. Owned by the loop.
type stopRecord struct {
	name   string // "service web", "job j-7f3a", "sweep"
	took   time.Duration
	done   bool // its exit came
	killed bool // it got SIGKILL
}

// recordRunning notes the services and jobs running as the shutdown starts.
func (l *loop) recordRunning() {
	l.sd.started = time.Now()
	for _, s := range l.svcs {
		if s.unit != nil {
			l.sd.units = append(l.sd.units, &stopRecord{name: "service " + s.cfg.Name})
		}
	}
	for _, j := range l.jobs.RunningJobs() {
		l.sd.units = append(l.sd.units, &stopRecord{name: "job " + j.Rec.ID})
	}
}

// record finds the unit called name, or nil outside a shutdown.
func (sd *shutdown) record(name string) *stopRecord {
	if !sd.active {
		return nil
	}
	for _, r := range sd.units {
		if r.name == name {
			return r
		}
	}
	return nil
}

// markKilled notes a SIGKILL of name during the shutdown.
func (sd *shutdown) markKilled(name string) {
	if r := sd.record(name); r != nil && !r.done {
		r.killed = true
	}
}

// ended notes name's exit during the shutdown.
func (sd *shutdown) ended(name string) {
	if r := sd.record(name); r != nil && !r.done {
		r.done, r.took = true, time.Since(sd.started)
	}
}

// sweepKilled notes that the final SIGKILL found something still there.
func (sd *shutdown) sweepKilled() {
	if sd.active && sd.record("sweep") == nil {
		sd.units = append(sd.units, &stopRecord{name: "sweep", killed: true})
	}
}

// summarize ends a shutdown that had to SIGKILL anything with one warning
// and one shutdown.forced event naming each unit, how long it took and
// whether it was killed; [shutdown] killed_exit_code, when set, is then
// tend's exit code, so that a runtime can tell a forced stop from a clean
// one (both would otherwise exit with the main's code).
func (l *loop) summarize() {
	forced := false
	for _, r := range l.sd.units {
		forced = forced || r.killed
	}
	if !l.sd.active || !forced {
		return
	}
	if c := l.cfg.File.Shutdown.KilledExitCode; c > 0 {
		l.code = c
	}
	units := make([]api.ShutdownUnit, 0, len(l.sd.units))
	parts := make([]string, 0, len(l.sd.units))
	total := time.Since(l.sd.started)
	for _, r := range l.sd.units {
		took := r.took
		if !r.done {
			took = total
		}
		u := api.ShutdownUnit{Name: r.name, TookMS: took.Milliseconds(), Ended: r.done || r.name == "sweep", Killed: r.killed}
		units = append(units, u)
		// Always in ms ("0ms", not time.Duration's "0s"): one format to read.
		p := fmt.Sprintf("%s %dms", r.name, took.Milliseconds())
		if r.name == "sweep" {
			p = "sweep"
		}
		switch {
		case !u.Ended:
			p += " killed, still there"
		case r.killed:
			p += " killed"
		}
		parts = append(parts, p)
	}
	code := l.code
	l.log.Warn("shutdown forced: "+strings.Join(parts, ", "), "took", total.Round(time.Millisecond), "code", code)
	l.publish(api.Event{Type: api.EventShutdownForced, Code: &code, Units: units})
}
