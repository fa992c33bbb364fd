//go:build linux

package supervisor

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/jobs"
)

// Reload is POST /v1/reload: the file is read and its services prepared
// (users, env files) off the loop, then the loop applies the difference.
// Nothing changes unless all of it can.
func (b backend) Reload() (api.Reload, error) {
	nf, prepared, err := b.l.loadReload()
	if err != nil {
		return api.Reload{}, err
	}
	var rep api.Reload
	if e := b.do(func() { rep, err = b.l.applyReload(nf, prepared) }); e != nil {
		return api.Reload{}, e
	}
	return rep, err
}

// loadReload reads the file again and makes its services, not started.
func (l *loop) loadReload() (*config.Config, map[string]*service, error) {
	if l.cfg.Reload == nil {
		return nil, nil, api.Errorf(http.StatusConflict, "no config file to reload: init mode")
	}
	nf, err := l.cfg.Reload()
	if err != nil {
		return nil, nil, api.Errorf(http.StatusUnprocessableEntity, "config refused, nothing changed: %v", err)
	}
	prepared := map[string]*service{}
	var errs []string
	for _, c := range nf.Services {
		s, err := l.newService(c)
		if err != nil {
			errs = append(errs, fmt.Sprintf("service %q: %v", c.Name, err))
			continue
		}
		prepared[c.Name] = s
	}
	if len(errs) > 0 {
		return nil, nil, api.Errorf(http.StatusUnprocessableEntity, "config refused, nothing changed: %s", strings.Join(errs, "; "))
	}
	return nf, prepared, nil
}

// reloadAsync is the reload signal ([control] reload_on): as POST
// /v1/reload, its outcome logged.
func (l *loop) reloadAsync() {
	go func() {
		nf, prepared, err := l.loadReload()
		l.post(func() {
			if err == nil {
				_, err = l.applyReload(nf, prepared)
			}
			if err != nil {
				l.log.Error("reload refused", "err", err)
			}
		}, nil)
	}()
}

// applyReload applies nf on the loop: services added start (once their
// dependencies are ready), removed ones stop and are forgotten, changed
// ones restart with their new keys (stopped or failed ones start again),
// the rest and every job are left alone; the other tables' changes are
// applied where they can be, and any that cannot refuse the whole reload.
func (l *loop) applyReload(nf *config.Config, prepared map[string]*service) (api.Reload, error) {
	rep := api.Reload{Added: []string{}, Removed: []string{}, Changed: []string{}, Settings: []string{}}
	if l.sd.active {
		return rep, api.Errorf(http.StatusConflict, "tend is shutting down")
	}
	old := l.cfg.File
	settings, refused := settingsDiff(old, nf, l.cfg.GraceSet)
	if len(refused) > 0 {
		return rep, api.Errorf(http.StatusConflict, "reload refused, nothing changed: %s", strings.Join(refused, "; "))
	}
	byName := map[string]*service{}
	for _, s := range l.svcs {
		switch {
		case s == l.main:
		case s.removed && nf.Service(s.cfg.Name) != nil:
			// Two services of one name: the API could name only one.
			return rep, api.Errorf(http.StatusConflict, "reload refused, nothing changed: service %q, removed by the last reload, is still stopping: reload again once it is gone", s.cfg.Name)
		case !s.removed:
			byName[s.cfg.Name] = s
		}
	}
	for _, c := range nf.Services {
		s := byName[c.Name]
		fresh := prepared[c.Name]
		switch {
		case s == nil:
			if err := l.makeNotifier(fresh); err != nil {
				l.log.Error("reload: service not added", "service", c.Name, "err", err)
				continue
			}
			l.svcs = append(l.svcs, fresh)
			rep.Added = append(rep.Added, c.Name)
		case !sameService(s.cfg, c):
			l.replaceService(s, fresh)
			rep.Changed = append(rep.Changed, c.Name)
		}
	}
	for name, s := range byName {
		if nf.Service(name) == nil {
			l.removeService(s)
			rep.Removed = append(rep.Removed, name)
		}
	}
	slices.Sort(rep.Removed)
	if old.Zombies.Scan == 0 && nf.Zombies.Scan > 0 {
		l.tm.after(nf.Zombies.Scan, l.zombieTick)
	}
	if !l.cfg.GraceSet {
		l.cfg.Grace = nf.Shutdown.Grace
	}
	nf.Main = old.Main // refused above if it changed
	l.cfg.File = nf
	l.file.Store(nf)
	j := nf.Jobs
	l.jobs.SetLimits(jobs.Limits{MaxRunning: j.MaxRunning, MaxQueued: j.MaxQueued, Keep: j.Keep, MaxRecords: j.MaxRecords,
		MaxRecordBytes: int64(j.MaxRecordBytes), RecordArgvBytes: j.RecordArgvBytes})
	l.relevel()
	rep.Settings = settings
	l.log.Info("reloaded", "added", rep.Added, "removed", rep.Removed, "changed", rep.Changed, "settings", rep.Settings)
	l.startEligible()
	l.startQueued()
	return rep, nil
}

// sameService reports whether a and b configure a service alike (their
// line in the file aside).
func sameService(a, b config.Service) bool {
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}

// replaceService gives s the keys of fresh: at once when nothing of it
// runs (a stopped or failed one then starts again), else once its run has
// been stopped (restartAfterStop).
func (l *loop) replaceService(s, fresh *service) {
	if s.unit == nil {
		l.adopt(s, fresh)
		if s.state != statePending {
			// A backoff's restart, or a start whose lookup is in flight
			// (the old command's), is void: the new keys start afresh.
			s.gen++
			l.setState(s, statePending, "reason", "changed by a reload")
		}
		return // startEligible starts it once its (new) after is ready
	}
	s.next = fresh
	s.restartAfterStop = true
	if err := l.apiStop(s); err != nil {
		l.log.Warn("reload: stopping a changed service", "service", s.cfg.Name, "err", err)
	}
}

// adopt puts fresh's configuration into s, which keeps its identity (runs,
// state, last exit) and gets a fresh restart budget.
func (l *loop) adopt(s, fresh *service) {
	s.next = nil
	s.closeNotifier()
	s.cfg, s.spec, s.tracker, s.checks = fresh.cfg, fresh.spec, fresh.tracker, fresh.checks
	for _, c := range s.checks {
		c.s = s
	}
	if err := l.makeNotifier(s); err != nil {
		l.log.Error("reload: the service's notify socket", "service", s.cfg.Name, "err", err)
	}
}

// removeService stops s for good and forgets it once nothing of it runs.
func (l *loop) removeService(s *service) {
	s.removed = true
	s.next, s.restartAfterStop = nil, false
	if s.unit == nil {
		s.gen++
		l.forget(s)
		return
	}
	if err := l.apiStop(s); err != nil {
		l.log.Warn("reload: stopping a removed service", "service", s.cfg.Name, "err", err)
	}
}

// forget drops s, which runs no more, from the loop.
func (l *loop) forget(s *service) {
	s.killProbes()
	s.closeNotifier()
	l.svcs = slices.DeleteFunc(l.svcs, func(o *service) bool { return o == s })
	l.relevel()
	l.log.Info("service removed", "service", s.cfg.Name)
}

// relevel recomputes the start (and stop) order from the file's after
// graph; the main service stays last.
func (l *loop) relevel() {
	byName := map[string]*service{}
	for _, s := range l.svcs {
		if !s.removed {
			byName[s.cfg.Name] = s
		}
	}
	l.levels = nil
	for i, names := range l.cfg.File.StartLevels() {
		var level []*service
		for _, n := range names {
			if s := byName[n]; s != nil {
				s.level = i
				level = append(level, s)
			}
		}
		l.levels = append(l.levels, level)
	}
	if l.main != nil {
		l.main.level = len(l.levels)
		l.levels = append(l.levels, []*service{l.main})
	}
}

// settingsDiff compares the tables other than the services: applied lists
// what will change ("[jobs] max_running: 64 -> 8"), refused what cannot
// change while tend runs.
func settingsDiff(a, b *config.Config, graceSet bool) (applied, refused []string) {
	restartNeeded := func(section, key string) {
		refused = append(refused, fmt.Sprintf("[%s] %s: changing it needs a restart of tend", section, key))
	}
	for _, d := range fieldDiff(a.Control, b.Control) {
		restartNeeded("control", d.key)
	}
	ja, jb := a.Jobs, b.Jobs
	for _, d := range fieldDiff(ja, jb) {
		switch d.key {
		case "max_running", "max_queued", "timeout", "stop_grace", "keep", "max_records", "max_record_bytes", "stop":
			applied = append(applied, "[jobs] "+d.text)
		default: // the request caps the control server checks, nproc resolved at start
			restartNeeded("jobs", d.key)
		}
	}
	for _, d := range fieldDiff(a.Shutdown, b.Shutdown) {
		if d.key == "grace" && graceSet {
			applied = append(applied, "[shutdown] grace: the file's "+d.text+" (--grace wins)")
			continue
		}
		applied = append(applied, "[shutdown] "+d.text)
	}
	for section, pair := range map[string][2]any{"defaults": {a.Defaults, b.Defaults}, "health": {a.Health, b.Health}, "zombies": {a.Zombies, b.Zombies}} {
		for _, d := range fieldDiff(pair[0], pair[1]) {
			applied = append(applied, "["+section+"] "+d.text)
		}
	}
	if (a.Main == nil) != (b.Main == nil) || (a.Main != nil && !sameService(*a.Main, *b.Main)) {
		refused = append(refused, "[main]: changing it needs a restart of tend (the main command is never restarted)")
	}
	slices.Sort(applied)
	slices.Sort(refused)
	return applied, refused
}

type fieldChange struct{ key, text string }

// fieldDiff lists the fields of two structs of one type that differ, named
// as the file spells them (MaxRunning: max_running).
func fieldDiff(a, b any) []fieldChange {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []fieldChange
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		if reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			continue
		}
		f := va.Type().Field(i)
		key := f.Tag.Get("key") // where snake cannot tell an acronym's end
		if key == "" {
			key = snake(f.Name)
		}
		out = append(out, fieldChange{key, fmt.Sprintf("%s: %v -> %v", key, fa.Interface(), fb.Interface())})
	}
	return out
}

// snake is MaxRunning as max_running, IdleTimeout as idle_timeout.
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 && !unicode.IsUpper(rune(name[i-1])) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
