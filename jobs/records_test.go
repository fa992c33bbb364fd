//go:build linux

package jobs

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/control"
)

// exitOne admits a job of uid with labels and argv and ends it at once:
// one exit record.
func exitOne(t *testing.T, tab *Table, c *clock, uid int, labels map[string]string, argv ...string) *Job {
	t.Helper()
	if len(argv) == 0 {
		argv = []string{"x"}
	}
	j := NewJob(argv, uid, labels, c.now())
	if _, err := tab.Admit(j); err != nil {
		t.Fatalf("Admit: %v", err)
	}
	c.t = c.t.Add(time.Millisecond)
	tab.Dropped(j, unix.SIGTERM, api.ReasonKilled)
	return j
}

func kept(tab *Table, j *Job) bool { return tab.jobs[j.Rec.ID] == j }

// TestRecordBudgetIsFairPerUID: a uid flooding the table past
// MaxRecordBytes loses its own oldest records; another uid within its
// share (budget / uids holding records) keeps every one of its own.
func TestRecordBudgetIsFairPerUID(t *testing.T) {
	big := map[string]string{"k": strings.Repeat("v", 4000)}
	one := recordSize(&Job{Rec: api.Job{Argv: []string{"x"}, Labels: big, Error: ""}})
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 100000, MaxRecordBytes: 20 * one})
	var roots []*Job
	for range 5 {
		roots = append(roots, exitOne(t, tab, c, 0, big))
	}
	var flood []*Job
	for range 200 {
		flood = append(flood, exitOne(t, tab, c, 1000, big))
	}
	n, bytes := tab.KeptRecords()
	if bytes > 20*one {
		t.Errorf("kept %d records of %d bytes, over the budget of %d", n, bytes, 20*one)
	}
	for i, j := range roots {
		if !kept(tab, j) {
			t.Errorf("root's record %d (of 5, within its share) was evicted by uid 1000's flood", i)
		}
	}
	// uid 1000 keeps the rest of the budget, its newest records.
	keptFlood := 0
	for i, j := range flood {
		if kept(tab, j) {
			keptFlood++
			if i < len(flood)-15 {
				t.Errorf("uid 1000's record %d kept while newer ones went", i)
			}
		}
	}
	if keptFlood != 15 {
		t.Errorf("uid 1000 kept %d records, want 15 (the budget of 20 less root's 5)", keptFlood)
	}
}

// TestEvictionOrder: over the budget, the largest holder's oldest record
// goes first, down to a fair share; of equal holders, the one whose oldest
// record is older pays.
func TestEvictionOrder(t *testing.T) {
	one := recordSize(&Job{Rec: api.Job{Argv: []string{"x"}, Labels: noLabels}})
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 100000, MaxRecordBytes: 6 * one})
	a := []*Job{exitOne(t, tab, c, 1, nil), exitOne(t, tab, c, 1, nil), exitOne(t, tab, c, 1, nil), exitOne(t, tab, c, 1, nil)}
	b := []*Job{exitOne(t, tab, c, 2, nil), exitOne(t, tab, c, 2, nil)}
	// Full: 4 of uid 1, 2 of uid 2. One more of uid 2 evicts uid 1's oldest.
	b = append(b, exitOne(t, tab, c, 2, nil))
	if kept(tab, a[0]) || !kept(tab, a[1]) || !kept(tab, b[0]) {
		t.Errorf("after uid 2's third record: uid 1's oldest kept %v (want false), its second %v, uid 2's first %v (want true)",
			kept(tab, a[0]), kept(tab, a[1]), kept(tab, b[0]))
	}
	// 3 and 3, and uid 3 arrives: of the equal holders uid 1's oldest is older.
	exitOne(t, tab, c, 3, nil)
	if kept(tab, a[1]) || !kept(tab, b[0]) {
		t.Errorf("equal holders: uid 1's oldest kept %v, uid 2's oldest kept %v; want uid 1's to go first", kept(tab, a[1]), kept(tab, b[0]))
	}
	// 2, 3 and 1: uid 3's next record is paid for by uid 2, the largest.
	exitOne(t, tab, c, 3, nil)
	if kept(tab, b[0]) || !kept(tab, a[2]) {
		t.Errorf("uid 3's second record: uid 2's oldest kept %v (want false), uid 1's kept %v (want true)", kept(tab, b[0]), kept(tab, a[2]))
	}
}

// TestMaxRecordsIsFairPerUID: the count limit evicts like the byte budget.
func TestMaxRecordsIsFairPerUID(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 10})
	mine := []*Job{exitOne(t, tab, c, 0, nil), exitOne(t, tab, c, 0, nil)}
	for range 100 {
		exitOne(t, tab, c, 1000, nil)
	}
	if n, _ := tab.KeptRecords(); n != 10 || !kept(tab, mine[0]) || !kept(tab, mine[1]) {
		t.Errorf("kept %d records (want 10), root's %v %v (want both)", n, kept(tab, mine[0]), kept(tab, mine[1]))
	}
	if got := tab.Counters().JobsKept; got != 10 {
		t.Errorf("Counters().JobsKept = %d, want 10", got)
	}
}

// TestRecordKeepsBoundedArgv: a record keeps at most RecordArgvBytes of
// argv, says so, and cuts at a character boundary; an exec error is
// bounded too.
func TestRecordKeepsBoundedArgv(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 10, MaxQueued: 10, Keep: time.Hour, MaxRecords: 10, RecordArgvBytes: 7})
	// "abc" and its NUL take 4 bytes; 2 are left for "dé...": the cut
	// falls inside é, so only "d" is kept.
	j := exitOne(t, tab, c, 0, nil, "abc", "défghijk", "tail")
	if got := j.Rec.Argv; len(got) != 2 || got[0] != "abc" || got[1] != "d" || !j.Rec.ArgvTruncated {
		t.Errorf("kept argv %q truncated %v, want [abc d] true", got, j.Rec.ArgvTruncated)
	}
	short := exitOne(t, tab, c, 0, nil, "ab", "cd")
	if len(short.Rec.Argv) != 2 || short.Rec.ArgvTruncated {
		t.Errorf("argv within the limit: kept %q truncated %v", short.Rec.Argv, short.Rec.ArgvTruncated)
	}
	f := NewJob([]string{"x"}, 0, nil, c.now())
	tab.Admit(f)
	tab.Failed(f, 127, fmt.Errorf("exec %s: not found", strings.Repeat("p", 100000)))
	if len(f.Rec.Error) > minErrorBytes {
		t.Errorf("record keeps %d bytes of the exec error, want at most %d", len(f.Rec.Error), minErrorBytes)
	}
}

// TestListPages: newest first, limit per page, next names the last of a
// full page only when more follow, after continues there; an unknown or
// another uid's after is a 404; filters apply before the limit.
func TestListPages(t *testing.T) {
	tab, c := newTable(Limits{MaxRunning: 100, MaxQueued: 100, Keep: time.Hour, MaxRecords: 100})
	var ids []string // newest last
	for i := range 7 {
		uid := 1000
		if i == 3 {
			uid = 1001
		}
		ids = append(ids, exitOne(t, tab, c, uid, map[string]string{"odd": fmt.Sprint(i%2 == 1)}).Rec.ID)
	}
	live := NewJob([]string{"x"}, 1000, nil, c.now())
	tab.Admit(live)
	mine := control.Caller{UID: 1000}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, next, err := tab.List(mine, nil, 0, after, 2)
		if err != nil || len(page) > 2 || pages > 4 {
			t.Fatalf("page %d after %q: %d jobs, %v", pages, after, len(page), err)
		}
		for _, j := range page {
			got = append(got, j.ID)
		}
		if next == "" {
			break
		}
		if next != page[len(page)-1].ID {
			t.Fatalf("next %q is not the page's last id %q", next, page[len(page)-1].ID)
		}
		after = next
	}
	want := []string{live.Rec.ID, ids[6], ids[5], ids[4], ids[2], ids[1], ids[0]}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("pages of 2 = %q, want %q (newest first, uid 1001's skipped)", got, want)
	}
	if page, next, _ := tab.List(mine, nil, 0, "", 7); len(page) != 7 || next != "" {
		t.Errorf("a page holding exactly all: %d jobs, next %q; want 7 and none", len(page), next)
	}
	if page, next, _ := tab.List(mine, map[string]string{"odd": "true"}, 0, "", 1); len(page) != 1 || page[0].ID != ids[5] || next != ids[5] {
		t.Errorf("filtered page: %v next %q", page, next)
	}
	for _, bad := range []string{"j-nope", ids[3]} {
		if _, _, err := tab.List(mine, nil, 0, bad, 2); status(err) != http.StatusNotFound {
			t.Errorf("List after %q (unknown or not mine) = %v, want a 404", bad, err)
		}
	}
	if page, _, err := tab.List(root(), nil, 0, ids[3], 10); err != nil || len(page) != 3 || page[0].ID != ids[2] {
		t.Errorf("root after uid 1001's job: %v, %v", page, err)
	}
}

// TestRecordSizeEstimate holds recordSize to the heap: the estimate of a
// record must be at least what keeping it costs, and not far more, or the
// budget would mean nothing.
func TestRecordSizeEstimate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels int
		argv   int
	}{{"bare", 0, 1}, {"labelled", 32, 8}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4000
			tab, c := newTable(Limits{MaxRunning: n, MaxQueued: n, Keep: time.Hour, MaxRecords: n})
			mk := func(i int) *Job {
				labels := map[string]string{}
				for k := range tc.labels {
					labels[fmt.Sprintf("key-%03d", k)] = fmt.Sprintf("value-%d-%d", i, k)
				}
				argv := make([]string, tc.argv)
				for a := range argv {
					argv[a] = fmt.Sprintf("arg-%d-%d", i, a)
				}
				return NewJob(argv, 0, labels, c.now())
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range n {
				j := mk(i)
				tab.Admit(j)
				tab.Dropped(j, unix.SIGTERM, api.ReasonKilled)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			_, est := tab.KeptRecords()
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("%d records: estimated %d bytes (%d each), heap grew %d (%d each)", n, est, est/n, heap, heap/n)
			if est < heap*8/10 || est > heap*3 {
				t.Errorf("estimate %d bytes for %d records, heap grew %d: want within 0.8x-3x", est, n, heap)
			}
			runtime.KeepAlive(tab)
		})
	}
}
