//go:build linux

package jobs

import (
	"math"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/control"
)

// The records' memory is bounded by configuration, not by what callers send
// (DESIGN.md §1.10): a request's labels and argv are capped by control's
// validator, a record keeps at most Limits.RecordArgvBytes of argv, and the
// exit records together stay within Limits.MaxRecordBytes and MaxRecords.
//
// Eviction is fair between uids. A uid's share of the budget is the budget
// divided by the number of uids holding exit records; whenever the records
// are over the budget (or the count), the uid holding the most loses its
// oldest record. Over the budget, the largest holder is always over its
// share, so a uid that stays within its share never loses a record to
// another's flood, and no fixed per-uid cap needs configuring: one uid alone
// may use the whole budget. (A uid is who a caller is: only root may run
// jobs as another uid.)

// links are a record's neighbours in one of the table's lists.
type links struct{ prev, next *Job }

// list is an intrusive doubly linked list of records, oldest first: O(1)
// removal from the middle, which eviction by uid needs.
type list struct {
	head, tail *Job
	n          int
}

func (l *list) push(j *Job, at func(*Job) *links) {
	a := at(j)
	a.prev, a.next = l.tail, nil
	if l.tail != nil {
		at(l.tail).next = j
	} else {
		l.head = j
	}
	l.tail = j
	l.n++
}

func (l *list) remove(j *Job, at func(*Job) *links) {
	a := at(j)
	if a.prev != nil {
		at(a.prev).next = a.next
	} else {
		l.head = a.next
	}
	if a.next != nil {
		at(a.next).prev = a.prev
	} else {
		l.tail = a.prev
	}
	*a = links{}
	l.n--
}

func inAll(j *Job) *links   { return &j.all }
func inEnded(j *Job) *links { return &j.ended }
func inOwner(j *Job) *links { return &j.mine }

// owner is one uid's exit records, oldest first, and their size.
type owner struct {
	recs  list
	bytes int64
}

// Estimated heap bytes of a record, for the budget: the Job with its
// api.Job, the table's map entry and id, and per string its header and
// bytes, per label its map slot. TestRecordSizeEstimate holds it to the
// heap's own count.
const (
	recordOverhead = 640
	stringOverhead = 16
	labelOverhead  = 80
)

// recordSize estimates what j's record holds on the heap.
func recordSize(j *Job) int64 {
	n := recordOverhead + len(j.Rec.Error) + len(j.Rec.Track)
	for _, a := range j.Rec.Argv {
		n += stringOverhead + len(a)
	}
	for k, v := range j.Rec.Labels {
		n += labelOverhead + len(k) + len(v)
	}
	return int64(n)
}

// keptArgv is what a record keeps of argv: all of it within max bytes
// (each string counted with its NUL, as execve does), else a prefix whose
// last string is cut at a character boundary and copied, so that the rest
// of the request's string is not kept alive by the record.
func keptArgv(argv []string, max int) ([]string, bool) {
	total := 0
	for _, a := range argv {
		total += len(a) + 1
	}
	if max <= 0 || total <= max {
		return argv, false
	}
	out := make([]string, 0, 8)
	left := max
	for _, a := range argv {
		if len(a)+1 <= left {
			out = append(out, a)
			left -= len(a) + 1
			continue
		}
		if left > 1 {
			out = append(out, strings.Clone(cutString(a, left-1)))
		}
		break
	}
	return out, true
}

// cutString is s cut to at most n bytes without splitting a character.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// keep puts exited j in the budget's accounts.
func (t *Table) keep(j *Job) {
	j.size = int32(min(recordSize(j), math.MaxInt32)) // bounded far below by the request caps
	t.endedList.push(j, inEnded)
	o := t.owners[j.Rec.UID]
	if o == nil {
		o = &owner{}
		t.owners[j.Rec.UID] = o
	}
	o.recs.push(j, inOwner)
	o.bytes += int64(j.size)
	t.endedBytes += int64(j.size)
}

// drop forgets exit record j.
func (t *Table) drop(j *Job) {
	t.endedList.remove(j, inEnded)
	if o := t.owners[j.Rec.UID]; o != nil {
		o.recs.remove(j, inOwner)
		o.bytes -= int64(j.size)
		if o.recs.n == 0 {
			delete(t.owners, j.Rec.UID)
		}
	}
	t.endedBytes -= int64(j.size)
	t.all.remove(j, inAll)
	delete(t.jobs, j.Rec.ID)
}

// largest is the owner holding the most by measure; ties go to the one
// whose oldest record is older, so eviction order does not depend on the
// map's.
func (t *Table) largest(measure func(*owner) int64) *owner {
	var best *owner
	for _, o := range t.owners {
		switch {
		case best == nil, measure(o) > measure(best):
			best = o
		case measure(o) == measure(best) && o.recs.head.seq < best.recs.head.seq:
			best = o
		}
	}
	return best
}

func byCount(o *owner) int64 { return int64(o.recs.n) }
func byBytes(o *owner) int64 { return o.bytes }

// KeptRecords is the number of exit records kept and their estimated size.
func (t *Table) KeptRecords() (n int, bytes int64) { return t.endedList.n, t.endedBytes }

// List returns up to limit records c may see (all for root, its own
// otherwise) that carry every label in labels and, with pid > 0, ran as
// that pid (a list: pids recycle, so several records can have had it),
// newest first, starting
// after the record with id after ("" = the newest). next is the id to pass
// as after for the following page, "" when there is none. An after that c
// cannot see (forgotten since, or never its own) is a 404, as for GET.
func (t *Table) List(c control.Caller, labels map[string]string, pid int, after string, limit int) (page []api.Job, next string, err error) {
	t.Prune()
	from := t.all.tail
	if after != "" {
		j := t.jobs[after]
		if j == nil || !canSee(c, j) {
			return nil, "", api.Errorf(http.StatusNotFound, "after: no job %q (forgotten since, or not yours): list again from the start", after)
		}
		from = j.all.prev
	}
	page = []api.Job{}
	for j := from; j != nil; j = j.all.prev {
		if !canSee(c, j) || !hasLabels(j.Rec.Labels, labels) || (pid > 0 && (j.Rec.PID == nil || *j.Rec.PID != pid)) {
			continue
		}
		if len(page) == limit {
			// One more matches: there is a next page.
			return page, page[len(page)-1].ID, nil
		}
		page = append(page, j.Rec)
	}
	return page, "", nil
}
