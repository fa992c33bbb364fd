//go:build linux

// Package jobs holds the records of tend's jobs and the policy of their
// queue (DESIGN.md §5): who may see which record, when a job starts or waits
// or is refused, how long an exit record is kept. It starts, signals and
// waits for nothing: the supervisor's loop, the one owner of every child,
// drives it, and is its only user. Nothing here is safe for concurrent use,
// and nothing here may block.
package jobs

import (
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/spawn"
)

// Job is one job: its record and what the loop needs to run and stop it.
// Every field belongs to the loop.
type Job struct {
	Rec api.Job // handed out by value; pointer fields are replaced, never written through
	seq uint64  // creation order

	all, ended, mine links // in the table's lists: every record, exit records, its uid's (records.go)
	// size and Bound share a word: a record's bytes are counted 10,000
	// times over (TestHardeningTenThousandJobs), and its size class is
	// what the heap pays.
	size  int32 // estimated heap bytes, once exited (int32: the request caps bound it far below)
	Bound bool  // dies when its last bound connection closes

	Prep    *spawn.Prepared // the resolved command, until it is started or dropped
	Files   []int           // fds passed with the request, until then too
	Stdio   []int           // the job's fd for each of Files
	Timeout time.Duration   // 0: none
	Conns   map[uint64]struct{}

	SignalAs  int              // the uid whose rights tend's signals to it carry; 0: tend's (root's jobs)
	Run       any              // the loop's unit, while running
	StartWait chan StartResult // while a submitter waits to learn whether its command started
	Reason    string           // why tend is stopping it; "" while nobody is
	Timer     uint64           // the loop's pending timer for it (timeout or SIGKILL); 0: none
	KillAt    int64            // when a pending SIGKILL is due, on the loop's monotonic clock (ns); 0: none

	outcome *Outcome // created for the first waiter, completed at exit
}

// StartResult is whether a job's command started: its record then, or why
// it could not be executed (its record is gone: the request gets the error).
type StartResult struct {
	Rec api.Job
	Err error
}

// Outcome is how a waiter on another goroutine learns a job's exit: Done
// is closed once Record holds the exit record, which never changes after.
type Outcome struct {
	done chan struct{}
	rec  api.Job
}

// Done is closed when the job has exited.
func (o *Outcome) Done() <-chan struct{} { return o.done }

// Record is the exit record; valid once Done is closed.
func (o *Outcome) Record() api.Job { return o.rec }

// Outcome returns the job's Outcome, making it on first use: an idle record
// carries no channel.
func (j *Job) Outcome() *Outcome {
	if j.outcome == nil {
		j.outcome = &Outcome{done: make(chan struct{})}
		if j.Rec.State == api.StateExited {
			j.outcome.rec = j.Rec
			close(j.outcome.done)
		}
	}
	return j.outcome
}

// complete publishes the exit record to the waiters, if any.
func (j *Job) complete() {
	if j.outcome != nil {
		j.outcome.rec = j.Rec
		close(j.outcome.done)
		j.outcome = nil // an exited job's Outcome is made afresh, already done
	}
}
