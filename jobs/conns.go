//go:build linux

package jobs

import "github.com/tendinit/tend/api"

// Bind adds conn to j's bound connections: j is stopped once every one of
// them has closed (reason disconnected).
func (t *Table) Bind(j *Job, conn uint64) {
	if j.Conns == nil {
		j.Conns = make(map[uint64]struct{})
	}
	j.Conns[conn] = struct{}{}
	set := t.conns[conn]
	if set == nil {
		set = make(map[*Job]struct{})
		t.conns[conn] = set
	}
	set[j] = struct{}{}
}

// Release removes conn from j's bound connections (a wait request on it
// ended), and reports whether that was j's last one: the loop then stops j.
func (t *Table) Release(j *Job, conn uint64) (last bool) {
	if _, ok := j.Conns[conn]; !ok {
		return false // ConnClosed came first and did the rest
	}
	delete(j.Conns, conn)
	if set := t.conns[conn]; set != nil {
		delete(set, j)
		if len(set) == 0 {
			delete(t.conns, conn)
		}
	}
	return len(j.Conns) == 0 && j.Rec.State != api.StateExited
}

// ConnClosed forgets connection conn and returns the unexited jobs it was
// the last bound connection of: the loop stops them.
func (t *Table) ConnClosed(conn uint64) []*Job {
	set := t.conns[conn]
	delete(t.conns, conn)
	var orphaned []*Job
	for j := range set {
		delete(j.Conns, conn)
		if len(j.Conns) == 0 {
			orphaned = append(orphaned, j)
		}
	}
	return orphaned
}

// unbind forgets j's connections once it has exited or was forgotten.
func (t *Table) unbind(j *Job) {
	for conn := range j.Conns {
		if set := t.conns[conn]; set != nil {
			delete(set, j)
			if len(set) == 0 {
				delete(t.conns, conn)
			}
		}
	}
	j.Conns = nil
}
