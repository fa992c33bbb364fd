//go:build linux

package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/signals"
)

// Limits are the [jobs] settings the table enforces (config/ has their
// defaults; the table takes them as they are).
type Limits struct {
	MaxRunning int           // >= 1; beyond it jobs queue
	MaxQueued  int           // >= 0; beyond it the API answers 429
	Keep       time.Duration // how long exit records stay queryable
	MaxRecords int           // exit records kept at most, the largest holder's oldest forgotten first
	// MaxRecordBytes is the budget of exit records' estimated size, shared
	// fairly among uids (records.go); 0 = none.
	MaxRecordBytes int64
	// RecordArgvBytes is how much of its argv a record keeps; 0 = all.
	RecordArgvBytes int
}

// Table is every job record, the queue and the bound connections. The zero
// value is not usable; call New.
type Table struct {
	lim  Limits
	now  func() time.Time
	jobs map[string]*Job // every record by id

	queue   []*Job // queued jobs, oldest first
	running int
	started uint64
	seq     uint64
	// ended counts the jobs that ended, by reason (api.Reason*): for
	// GET /v1/metrics.
	ended map[string]uint64

	conns map[uint64]map[*Job]struct{} // open bound connection -> its unexited jobs

	all        list           // every record, by creation (seq): what List walks
	endedList  list           // exit records, by end: what Keep expires
	owners     map[int]*owner // uid -> its exit records
	endedBytes int64          // their estimated size in all
}

// Exited records are kept by the thousand, so label-less ones share one
// empty map (records are read-only once handed out).
var noLabels = map[string]string{}

// New returns an empty table; now is time.Now, or a fake in tests.
func New(lim Limits, now func() time.Time) *Table {
	return &Table{lim: lim, now: now, jobs: make(map[string]*Job), conns: make(map[uint64]map[*Job]struct{}),
		owners: make(map[int]*owner), ended: make(map[string]uint64)}
}

// NewJob returns a job for argv, run as uid, with labels, not yet in any
// table: Admit records it.
func NewJob(argv []string, uid int, labels map[string]string, queuedAt time.Time) *Job {
	j := &Job{Rec: api.Job{State: api.StateQueued, Argv: argv, UID: uid, Labels: labels, QueuedAt: queuedAt}}
	if len(labels) == 0 {
		j.Rec.Labels = noLabels // "labels": {} rather than null, shared
	}
	return j
}

// Admit decides what becomes of a new job: it gets an id and a record, and
// either may start now (true) or waits in the queue (false). With every slot
// and the queue full it is refused with a 429 and gets no record.
func (t *Table) Admit(j *Job) (startNow bool, err error) {
	t.Prune()
	switch {
	case t.running < t.lim.MaxRunning && len(t.queue) == 0:
		t.add(j)
		return true, nil
	case len(t.queue) < t.lim.MaxQueued:
		t.add(j)
		t.queue = append(t.queue, j)
		return false, nil
	}
	return false, api.Errorf(http.StatusTooManyRequests, "job queue full (%d running, %d queued; [jobs] max_running, max_queued)",
		t.running, len(t.queue))
}

// add gives j a fresh id and records it.
func (t *Table) add(j *Job) {
	for {
		var b [4]byte
		rand.Read(b[:]) // never fails on Linux (crypto/rand docs)
		j.Rec.ID = "j-" + hex.EncodeToString(b[:])
		if _, taken := t.jobs[j.Rec.ID]; !taken {
			break
		}
	}
	t.seq++
	j.seq = t.seq
	j.Rec.Argv, j.Rec.ArgvTruncated = keptArgv(j.Rec.Argv, t.lim.RecordArgvBytes)
	t.jobs[j.Rec.ID] = j
	t.all.push(j, inAll)
}

// Forget removes an admitted job that never started and leaves no record
// (its command could not be executed: the request gets a 422 instead).
func (t *Table) Forget(j *Job) {
	t.Dequeue(j)
	t.unbind(j)
	if _, ok := t.jobs[j.Rec.ID]; ok {
		t.all.remove(j, inAll)
		delete(t.jobs, j.Rec.ID)
	}
}

// Started makes j running, as pid (0: not known yet, see SetPid).
func (t *Table) Started(j *Job, pid int) {
	now := t.now()
	j.Rec.StartedAt, j.Rec.State = &now, api.StateRunning
	t.SetPid(j, pid)
	t.running++
	t.started++
}

// SetPid records the pid of the process running j's command.
func (t *Table) SetPid(j *Job, pid int) {
	if pid > 0 {
		j.Rec.PID = &pid
	}
}

// Abort forgets a running j whose command could not be executed after
// all, while its request still waits: it leaves no record.
func (t *Table) Abort(j *Job) {
	t.running--
	j.Run = nil
	t.Forget(j)
}

// FailedRunning records that running j's command could not be executed
// (a queued job's turn came): as Failed.
func (t *Table) FailedRunning(j *Job, code int, err error) {
	t.running--
	j.Run = nil
	t.Failed(j, code, err)
}

// Exited records the wait status of a running j and finishes it, with
// reason if tend stopped it (j.Reason), else exited or signaled.
func (t *Table) Exited(j *Job, ws unix.WaitStatus) {
	reason := api.ReasonExited
	if ws.Signaled() {
		name := signals.Name(ws.Signal())
		j.Rec.Signal, j.Rec.CoreDumped = &name, ws.CoreDump()
		reason = api.ReasonSignaled
	} else {
		code := ws.ExitStatus()
		j.Rec.ExitCode = &code
	}
	if j.Reason != "" {
		reason = j.Reason // tend stopped it: say why
	}
	t.running--
	j.Run = nil
	t.Finish(j, reason)
}

// Dropped records that queued j ends without ever running, as if sig had
// killed it: a client waiting on it (tend spawn, tend wait) then exits as a
// program killed by sig would, instead of finding neither code nor signal.
func (t *Table) Dropped(j *Job, sig unix.Signal, reason string) {
	t.Dequeue(j)
	name := signals.Name(sig)
	j.Rec.Signal = &name
	t.Finish(j, reason)
}

// Failed records that queued j could not be executed when its turn came:
// exit code 127 or 126, reason exec_failed, the error in the record.
func (t *Table) Failed(j *Job, code int, err error) {
	t.Dequeue(j)
	// The error names the path: bounded as the argv it comes from.
	j.Rec.ExitCode, j.Rec.Error = &code, strings.Clone(cutString(err.Error(), max(t.lim.RecordArgvBytes, minErrorBytes)))
	t.Finish(j, api.ReasonExecFailed)
}

// Finish makes j exited: no bound connection left, waiters woken. The
// loop has already released its timer, files and prepared command.
func (t *Table) Finish(j *Job, reason string) {
	now := t.now()
	j.Rec.State, j.Rec.Reason, j.Rec.EndedAt = api.StateExited, reason, &now
	t.ended[reason]++
	j.Prep, j.Files, j.Stdio = nil, nil, nil
	t.unbind(j)
	t.keep(j)
	j.complete()
	t.Prune()
}

// NextQueued takes the oldest queued job if a slot is free, else nil.
func (t *Table) NextQueued() *Job {
	if t.running >= t.lim.MaxRunning || len(t.queue) == 0 {
		return nil
	}
	j := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	return j
}

// Dequeue removes j from the queue, if it is there.
func (t *Table) Dequeue(j *Job) {
	if i := slices.Index(t.queue, j); i >= 0 {
		t.queue = slices.Delete(t.queue, i, i+1) // zeroes the freed slot
	}
}

// Queued returns the queued jobs, oldest first (a copy).
func (t *Table) Queued() []*Job { return slices.Clone(t.queue) }

// RunningJobs returns the running jobs, in no order.
func (t *Table) RunningJobs() []*Job {
	var out []*Job
	for _, j := range t.jobs {
		if j.Rec.State == api.StateRunning {
			out = append(out, j)
		}
	}
	return out
}

// Running is the number of running jobs.
func (t *Table) Running() int { return t.running }

// Counters returns how many jobs were started in all, how many run and wait
// in the queue now, and how many exit records are kept (api.Counters' jobs
// fields; the rest are zero).
func (t *Table) Counters() api.Counters {
	t.Prune()
	return api.Counters{JobsStarted: t.started, JobsRunning: t.running, JobsQueued: len(t.queue), JobsKept: t.endedList.n}
}

// SetLimits changes the table's limits (a reload): a lower MaxRunning or
// MaxQueued stops nothing that runs or waits, it only admits less; records
// beyond the new keep and counts go at the next prune.
func (t *Table) SetLimits(lim Limits) { t.lim = lim }

// Ended returns how many jobs ended, by reason.
func (t *Table) Ended() map[string]uint64 { return maps.Clone(t.ended) }

// Visible returns the job with id if c may see it, else nil: another uid's
// job looks exactly like a missing one, so ids do not leak. A job belongs
// to the uid it runs as: that uid could signal its processes and read their
// /proc anyway, so seeing a job root started for it gives it nothing new.
func (t *Table) Visible(c control.Caller, id string) *Job {
	t.Prune()
	j := t.jobs[id]
	if j == nil || !canSee(c, j) {
		return nil
	}
	return j
}

func canSee(c control.Caller, j *Job) bool { return c.Root() || j.Rec.UID == c.UID }

// NotFound is the answer for a job c may not see or that does not exist.
func NotFound(id string) error { return api.Errorf(http.StatusNotFound, "no job %q", id) }

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// minErrorBytes is the least of an exec error a record keeps.
const minErrorBytes = 256

// Prune forgets exited records older than Keep, then, while there are more
// than MaxRecords or they are over MaxRecordBytes, the oldest record of the
// uid holding the most (records.go). It runs lazily (admissions, queries,
// exits), so an idle tend has no timer for it.
func (t *Table) Prune() {
	cutoff := t.now().Add(-t.lim.Keep)
	for j := t.endedList.head; j != nil && j.Rec.EndedAt.Before(cutoff); j = t.endedList.head {
		t.drop(j)
	}
	for t.endedList.n > t.lim.MaxRecords {
		t.drop(t.largest(byCount).recs.head)
	}
	for t.lim.MaxRecordBytes > 0 && t.endedBytes > t.lim.MaxRecordBytes {
		t.drop(t.largest(byBytes).recs.head)
	}
}
