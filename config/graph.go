//go:build linux

package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// StartLevels groups the services by their after lists: level 0 waits for
// nobody, and each later level waits only for services of earlier levels
// (a service sits one level above the highest of its after list). Names
// are sorted within a level. The supervisor starts level by level, the
// services of one level in parallel, and stops in the reverse order.
//
// Parse refuses unknown names and cycles. For a Config built by hand, an
// unknown name in After is ignored, and services caught in a cycle make up
// one last level, so that every service is still started.
func (c *Config) StartLevels() [][]string {
	after := map[string][]string{}
	var remaining []string
	for _, s := range c.Services {
		if _, dup := after[s.Name]; !dup {
			after[s.Name] = s.After
			remaining = append(remaining, s.Name)
		}
	}
	var levels [][]string
	started := map[string]bool{}
	for len(remaining) > 0 {
		var level, later []string
		for _, name := range remaining {
			if waits(after[name], after, started) {
				later = append(later, name)
			} else {
				level = append(level, name)
			}
		}
		if len(level) == 0 { // only a cycle is left
			level, later = later, nil
		}
		sort.Strings(level)
		for _, name := range level {
			started[name] = true // only now: a level never waits for itself
		}
		levels = append(levels, level)
		remaining = later
	}
	return levels
}

// waits reports whether deps holds a known service not yet started.
func waits(deps []string, known map[string][]string, started map[string]bool) bool {
	for _, dep := range deps {
		if _, ok := known[dep]; ok && !started[dep] {
			return true
		}
	}
	return false
}

// label names service i in errors: by name once the name is valid.
func label(i int, s Service) string {
	if isValidName(s.Name) {
		return fmt.Sprintf("service %q", s.Name)
	}
	return fmt.Sprintf("service[%d]", i)
}

// checkNames refuses a name given to two services, at the second name.
// ts are the tables svcs were read from.
func (d *decoder) checkNames(ts []*table, svcs []Service) {
	first := map[string]int{}
	for i, s := range svcs {
		if s.Name == "" {
			continue // reported as missing
		}
		if j, dup := first[s.Name]; dup {
			where := ""
			if svcs[j].Line > 0 {
				where = fmt.Sprintf(" (line %d)", svcs[j].Line)
			}
			d.reportf(ts[i].posOf("name"), "service[%d]: name: %q is already the name of service[%d]%s", i, s.Name, j, where)
			continue
		}
		first[s.Name] = i
	}
}

// checkAfter refuses after lists that name unknown services, name one twice,
// or make a cycle, naming the cycle: "a -> b -> a". Each is reported at the
// element of the after list at fault.
func (d *decoder) checkAfter(ts []*table, svcs []Service) {
	known := map[string]bool{}
	for _, s := range svcs {
		known[s.Name] = true
	}
	for i, s := range svcs {
		for j, dep := range s.After {
			at := ts[i].elemPos("after", j)
			switch {
			case slices.Contains(s.After[:j], dep):
				d.reportf(at, "%s: after: %q is listed twice", label(i, s), dep)
			case dep == MainName:
				// The main command is not in the file and may not even be given.
				d.reportf(at, "%s: after: %q (the command after --) cannot be waited for", label(i, s), dep)
			case dep == "" || !known[dep]:
				d.reportf(at, "%s: after: unknown service %q", label(i, s), dep)
			}
		}
	}
	for _, cycle := range cycles(svcs) {
		// A cycle starts at a service whose after list names the next one.
		i := slices.IndexFunc(svcs, func(s Service) bool { return s.Name == cycle[0] })
		at := ts[i].elemPos("after", slices.Index(svcs[i].After, cycle[1]))
		d.reportf(at, "service %q: after: cycle %s", cycle[0], strings.Join(cycle, " -> "))
	}
}

// cycles finds the cycles of the after graph by depth-first search, in
// name order so that the same file always reports the same cycles. Each
// cycle starts and ends with the same name.
func cycles(svcs []Service) [][]string {
	after := map[string][]string{}
	for _, s := range svcs {
		if _, dup := after[s.Name]; !dup {
			after[s.Name] = s.After
		}
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var found [][]string
	var visit func(name string)
	visit = func(name string) {
		state[name] = onPath
		path = append(path, name)
		for j, dep := range after[name] {
			if _, ok := after[dep]; !ok || slices.Contains(after[name][:j], dep) {
				continue // unknown or twice: reported by checkAfter
			}
			switch state[dep] {
			case onPath:
				start := slices.Index(path, dep)
				found = append(found, append(slices.Clone(path[start:]), dep))
			case unvisited:
				visit(dep)
			}
		}
		path = path[:len(path)-1]
		state[name] = done
	}
	names := make([]string, 0, len(after))
	for name := range after {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if state[name] == unvisited {
			visit(name)
		}
	}
	return found
}
