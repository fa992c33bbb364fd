//go:build linux

package jobs

import (
	"net/http"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/control"
)

// FuzzListPaging pages through Table.List while the table changes between
// pages: jobs admitted by two uids, jobs exiting, time passing (records
// pruned after Keep, the oldest evicted beyond MaxRecords). Each byte is
// one step. Within one listing (from after "" to a page with no next):
// no record is returned twice, the records come newest first, each one is
// the caller's to see, and every record the caller could see when the
// listing began and that is still kept at its end was returned. An after
// that was forgotten meanwhile is a 404, and the listing starts over.
func FuzzListPaging(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 3, 0, 3, 1, 3, 0, 7, 3, 3})
	f.Add([]byte{1, 0, 4, 0, 4, 1, 1, 3, 2, 3, 130, 3, 0, 3, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 3, 1, 3, 1, 3, 3, 3})
	f.Fuzz(func(t *testing.T, steps []byte) {
		if len(steps) == 0 {
			return
		}
		tab, c := newTable(Limits{MaxRunning: 1 << 20, Keep: 30 * time.Second, MaxRecords: 6})
		caller := control.Caller{UID: 1000}
		if steps[0]&1 == 1 {
			caller = root()
		}
		var running []*Job
		var (
			listing bool
			after   string
			seen    map[string]bool
			before  map[string]bool // visible when the listing began
			last    uint64          // admission order (seq) of the last record returned
		)
		for _, b := range steps[1:] {
			switch arg := int(b >> 2); b & 3 {
			case 0: // a job of uid 1000 or 1001 starts
				j := NewJob([]string{"x"}, 1000+arg&1, nil, c.now())
				if _, err := tab.Admit(j); err != nil {
					t.Fatalf("Admit: %v", err)
				}
				running = append(running, j)
			case 1: // one exits
				if len(running) > 0 {
					i := arg % len(running)
					tab.Dropped(running[i], unix.SIGTERM, api.ReasonKilled)
					running = append(running[:i], running[i+1:]...)
				}
			case 2: // time passes
				c.t = c.t.Add(time.Duration(arg) * time.Second)
			case 3: // the next page
				if !listing {
					// The table's own admission order: ids are random
					// and may come back once a record is forgotten.
					listing, after, seen, last = true, "", map[string]bool{}, tab.seq+1
					tab.Prune() // as List does first: what it may show
					before = map[string]bool{}
					for id, j := range tab.jobs {
						if canSee(caller, j) {
							before[id] = true
						}
					}
				}
				page, next, err := tab.List(caller, nil, 0, after, 1+arg%4)
				if err != nil {
					if status(err) != http.StatusNotFound || tab.jobs[after] != nil {
						t.Fatalf("List after %q: %v, want a page or a 404 for a forgotten after", after, err)
					}
					listing = false
					continue
				}
				for _, r := range page {
					j := tab.jobs[r.ID]
					switch {
					case seen[r.ID]:
						t.Fatalf("%s returned twice in one listing", r.ID)
					case j == nil || !canSee(caller, j):
						t.Fatalf("%s returned, not kept or not uid %d's to see", r.ID, caller.UID)
					case j.seq >= last:
						t.Fatalf("%s returned after a newer or equal one: not newest first", r.ID)
					}
					seen[r.ID], last = true, j.seq
				}
				if next != "" {
					after = next
					continue
				}
				for id := range before {
					if tab.jobs[id] != nil && !seen[id] {
						t.Fatalf("%s, visible when the listing began and kept throughout, never returned", id)
					}
				}
				listing = false
			}
		}
	})
}
