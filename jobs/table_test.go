//go:build linux

package jobs

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/control"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTable(lim Limits) (*Table, *clock) {
	c := &clock{t: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}
	return New(lim, c.now), c
}

func status(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestAdmitQueueAndRefuse(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 2, MaxQueued: 1, Keep: time.Hour, MaxRecords: 10})
	var got []string
	for i := range 4 {
		j := NewJob([]string{"x"}, 0, nil, c.now())
		now, err := tab.Admit(j)
		switch {
		case err != nil:
			got = append(got, "refused")
			if status(err) != http.StatusTooManyRequests || j.Rec.ID != "" {
				t.Errorf("job %d: %v (id %q), want a 429 and no record", i, err, j.Rec.ID)
			}
		case now:
			got = append(got, "start")
			j.Rec.PID = new(int) // Started needs a Child; the table only counts
			tab.running++
		default:
			got = append(got, "queue")
		}
	}
	if want := []string{"start", "start", "queue", "refused"}; len(got) != 4 || got[0] != want[0] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("admissions %q, want %q", got, want)
	}
	if next := tab.NextQueued(); next != nil {
		t.Errorf("NextQueued with every slot busy = %v", next.Rec.ID)
	}
	tab.running--
	if next := tab.NextQueued(); next == nil || next.Rec.State != api.StateQueued {
		t.Errorf("NextQueued with a free slot = %v, want the queued job", next)
	}
}

func TestVisibilityAndList(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 10})
	mine := control.Caller{UID: 1000}
	other := control.Caller{UID: 1001}
	var ids []string
	for i, uid := range []int{1000, 1001, 1000} {
		c.t = c.t.Add(time.Second)
		j := NewJob([]string{"x"}, uid, map[string]string{"n": string(rune('a' + i))}, c.now())
		if _, err := tab.Admit(j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.Rec.ID)
	}
	if tab.Visible(other, ids[0]) != nil || tab.Visible(mine, ids[0]) == nil || tab.Visible(root(), ids[1]) == nil {
		t.Error("visibility: a uid sees only its own jobs, root sees all")
	}
	if l, _, _ := tab.List(mine, nil, 0, "", 10); len(l) != 2 || l[0].ID != ids[2] || l[1].ID != ids[0] {
		t.Errorf("List(mine) = %v, want its two jobs newest first", l)
	}
	if l, _, _ := tab.List(root(), map[string]string{"n": "b"}, 0, "", 10); len(l) != 1 || l[0].ID != ids[1] {
		t.Errorf("List(root, n=b) = %v", l)
	}
	if l, _, _ := tab.List(other, map[string]string{"n": "a"}, 0, "", 10); len(l) != 0 {
		t.Errorf("List(other, n=a) = %v: another uid's job", l)
	}
	// By pid: every record that had it (pids recycle), only the caller's.
	for _, id := range ids {
		pid := 77
		tab.jobs[id].Rec.PID = &pid
	}
	if l, _, _ := tab.List(mine, nil, 77, "", 10); len(l) != 2 || l[0].ID != ids[2] || l[1].ID != ids[0] {
		t.Errorf("List(mine, pid 77) = %v, want its two jobs that had pid 77", l)
	}
	if l, _, _ := tab.List(root(), nil, 77, "", 10); len(l) != 3 {
		t.Errorf("List(root, pid 77) = %v, want all three", l)
	}
	if l, _, _ := tab.List(root(), nil, 78, "", 10); len(l) != 0 {
		t.Errorf("List(root, pid 78) = %v, want none", l)
	}
}

func root() control.Caller { return control.Caller{UID: 0} }

// TestPrune: exit records go after Keep, and beyond MaxRecords the oldest
// first; live records are never pruned.
func TestPrune(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 100, MaxQueued: 0, Keep: time.Minute, MaxRecords: 3})
	var js []*Job
	for range 5 {
		j := NewJob([]string{"x"}, 0, nil, c.now())
		tab.Admit(j)
		js = append(js, j)
	}
	for _, j := range js[:4] {
		c.t = c.t.Add(time.Second)
		tab.Dropped(j, unix.SIGTERM, api.ReasonKilled)
	}
	tab.Prune()
	if tab.Visible(root(), js[0].Rec.ID) != nil || tab.Visible(root(), js[1].Rec.ID) == nil {
		t.Error("beyond MaxRecords the oldest exit record goes first")
	}
	c.t = c.t.Add(2 * time.Minute)
	tab.Prune()
	for _, j := range js[:4] {
		if tab.Visible(root(), j.Rec.ID) != nil {
			t.Errorf("exit record %s kept past Keep", j.Rec.ID)
		}
	}
	if tab.Visible(root(), js[4].Rec.ID) == nil {
		t.Error("a live record was pruned")
	}
}

// TestBoundConnections: a job dies (is reported) when its last bound
// connection closes, not before.
func TestBoundConnections(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 10})
	j := NewJob([]string{"x"}, 0, nil, c.now())
	tab.Admit(j)
	tab.Bind(j, 1)
	tab.Bind(j, 2)
	if got := tab.ConnClosed(1); len(got) != 0 {
		t.Errorf("first connection closed: %d jobs orphaned, want 0", len(got))
	}
	if last := tab.Release(j, 2); !last {
		t.Error("releasing the last bound connection: not reported as last")
	}
	other := NewJob([]string{"y"}, 0, nil, c.now())
	tab.Admit(other)
	tab.Bind(other, 3)
	if got := tab.ConnClosed(3); len(got) != 1 || got[0] != other {
		t.Errorf("ConnClosed(3) = %v, want the job bound to it", got)
	}
}

// TestOutcome: a waiter's Outcome is completed with the exit record, also
// when made after the exit.
func TestOutcome(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 10})
	j := NewJob([]string{"x"}, 0, nil, c.now())
	tab.Admit(j)
	o := j.Outcome()
	select {
	case <-o.Done():
		t.Fatal("Outcome done before the exit")
	default:
	}
	tab.Failed(j, 127, errors.New("exec x: not found"))
	<-o.Done()
	if r := o.Record(); r.ExitCode == nil || *r.ExitCode != 127 || r.Reason != api.ReasonExecFailed {
		t.Errorf("Outcome record %+v", r)
	}
	if r := j.Outcome(); r.Record().Reason != api.ReasonExecFailed {
		t.Error("an Outcome made after the exit is not done with the record")
	}
}

// TestListLabels: a label selector matches the jobs that have every one of
// its labels, newest first; one no job has matches none (the old
// jobs/submit_test.go's TestListLabels, on the table).
func TestListLabels(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 10})
	var ids []string
	for _, labels := range []map[string]string{{"team": "x", "kind": "build"}, {"team": "x"}} {
		c.t = c.t.Add(time.Second)
		j := NewJob([]string{"x"}, 0, labels, c.now())
		if _, err := tab.Admit(j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.Rec.ID)
	}
	for _, tc := range []struct {
		sel  map[string]string
		want []string
	}{
		{nil, []string{ids[1], ids[0]}},
		{map[string]string{"team": "x"}, []string{ids[1], ids[0]}},
		{map[string]string{"team": "x", "kind": "build"}, []string{ids[0]}},
		{map[string]string{"kind": "test"}, nil},
	} {
		l, _, _ := tab.List(root(), tc.sel, 0, "", 10)
		var got []string
		for _, j := range l {
			got = append(got, j.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%v) = %v, want %v", tc.sel, got, tc.want)
		}
	}
}
