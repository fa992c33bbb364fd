//go:build linux

package supervisor

import (
	"bytes"
	"os"
	"strconv"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/unit/cgroup"
)

// Live process counts of units, for status and job records. Counting reads
// /proc, which is slow next to the loop's work, so the loop only notes
// where a count starts (a unitRoot) and the API's goroutine counts, off the
// loop, after it has its answer. A count is a snapshot: by the time it is
// read, the unit may have forked or lost a process. Only a unit that is
// still running is counted; a root whose pid was reaped and reused in the
// meantime can give a wrong number once, never a wrong signal.

// unitRoot is where a count of a unit's processes starts.
type unitRoot struct {
	track config.Track
	pid   int           // subreaper: the helper; group: the group's leader
	cg    *cgroup.Group // cgroup: the unit's own
}

// root is u's unitRoot, the zero one when u is not running.
func (u *unit) root() unitRoot {
	if u == nil || u.ended || u.proc == nil {
		return unitRoot{}
	}
	if u.cg != nil {
		return unitRoot{track: u.track, cg: u.cg, pid: -1}
	}
	if u.track == config.TrackSubreaper {
		return unitRoot{track: u.track, pid: u.proc.Pid()}
	}
	if u.mainDone {
		return unitRoot{}
	}
	return unitRoot{track: u.track, pid: u.main}
}

// jobRoot is j's unitRoot.
func jobRoot(j *jobs.Job) unitRoot {
	u, _ := j.Run.(*unit)
	return u.root()
}

// count is how many processes the unit has now; nil when unknown.
func (r unitRoot) count() *int {
	var n int
	switch {
	case r.cg != nil:
		c, err := r.cg.Count() // fails once the unit's cgroup is removed
		if err != nil {
			return nil
		}
		n = c
	case r.pid <= 0:
		return nil
	case r.track == config.TrackSubreaper:
		// Whatever the unit forks stays the helper's descendant.
		n = len(descendantsOf(r.pid))
	default:
		// The leader and those of its descendants still in its group;
		// one that left the group, or was orphaned, is not counted.
		n = groupMembers(r.pid)
		if n == 0 {
			return nil
		}
	}
	return &n
}

// counting bounds the /proc walks running at once: a flood of status
// requests costs at most this many walks' CPU. A request that finds them
// all taken gets no counts (unknown) rather than waiting: a handler that
// waited would hold its connection slot from requests that matter more.
var counting = make(chan struct{}, 2)

// countUnits counts each root's processes, or none when the walks are all
// taken.
func countUnits(roots []unitRoot) []*int {
	out := make([]*int, len(roots))
	select {
	case counting <- struct{}{}:
	default:
		return out
	}
	defer func() { <-counting }()
	for i, r := range roots {
		out[i] = r.count()
	}
	return out
}

// descendantsOf lists pid's live descendants (none when pid is gone), at
// most 1<<16 of them: a count is worth no more of tend's time.
func descendantsOf(pid int) []int {
	out, _ := reaper.DescendantsOf(pid, 1<<16)
	return out
}

// groupMembers counts the leader pgid and its descendants whose process
// group is still pgid: a walk of the unit's own tree, not of all of /proc.
func groupMembers(pgid int) int {
	if pgidOf(pgid) != pgid {
		return 0 // gone, or no longer leading its group
	}
	n := 1
	for _, pid := range descendantsOf(pgid) {
		if pgidOf(pid) == pgid {
			n++
		}
	}
	return n
}

// pgidOf is pid's process group from /proc/PID/stat, 0 when unknown.
func pgidOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(string(f[2]))
	return n
}
