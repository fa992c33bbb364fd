//go:build linux

// Package jobs owns the job records of tend's control API (DESIGN.md §5): it
// starts jobs through the reaper, queues them beyond [jobs] max_running,
// enforces timeouts, bind and shutdown, and keeps exit records for a while.
//
// It never waits for a child: exits arrive through the owner callback given
// to reaper.Start, on the reaper's goroutine. It signals a job only through
// reaper.Signal, which refuses once the leader is reaped, so no signal can
// reach a recycled pid. It keeps no fd or pidfd per record.
//
// Lock order: Manager.mu is taken before the reaper's lock. Submit (and the
// exit callback, when it starts queued jobs) calls reaper.Start with mu held,
// so the record exists before its owner callback can run; the reaper never
// holds its own lock while calling an owner, so there is no cycle. The events
// hub's lock comes after both: Publish is called with mu held (it never
// blocks), which makes each job's started/exited order exact.
package jobs

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
)

// Defaults for zero Config fields.
const (
	DefaultMaxRunning = 64
	DefaultStopGrace  = 5 * time.Second
	DefaultKeep       = time.Hour
	DefaultMaxRecords = 10000
)

// Manager owns every job record. The zero value is not usable; call New.
type Manager struct {
	r    *reaper.Reaper
	cfg  Config // defaults applied; read-only after New
	log  *slog.Logger
	euid int // tend's own uid: a caller with it needs no setuid

	// spawn is spawn.Start; tests replace it to make fork fail.
	spawn func(spawn.Spec) (int, error)
	now   func() time.Time

	mu       sync.Mutex
	jobs     map[string]*job              // guarded by mu; every live record by id
	queue    []*job                       // guarded by mu; queued jobs, FIFO
	ended    []*job                       // guarded by mu; exited records, oldest first
	conns    map[uint64]map[*job]struct{} // guarded by mu; open bound connection -> its unexited jobs
	running  int                          // guarded by mu
	started  uint64                       // guarded by mu
	seq      uint64                       // guarded by mu; creation order of records
	stopping bool                         // guarded by mu; set by Shutdown
	drained  chan struct{}                // closed once stopping and nothing runs
	closed   bool                         // guarded by mu; drained is closed
}

// job is one record and what the manager needs to run and stop it.
// Every field is guarded by Manager.mu.
type job struct {
	rec api.Job // handed out by value; pointer fields are replaced, never written through
	seq uint64

	spec    *spawn.Spec // until started (nil after); Files are filled in at start
	files   []*os.File  // passed fds, until started or dropped
	stdio   []int       // target fd of each of files
	timeout time.Duration
	bound   bool
	conns   map[uint64]struct{} // bound connections still open

	reason   string        // why tend is stopping it; "" while nobody is
	timer    *time.Timer   // the timeout, or the pending SIGKILL; nil when neither
	timerGen uint64        // bumped whenever timer changes, so a stale firing does nothing
	killAt   time.Time     // when the pending SIGKILL is due; zero when none
	done     chan struct{} // closed at exit, then the shared closedDone
}

// Exited records are kept by the thousand, so they share what they can:
// each drops its own channel for closedDone, and label-less jobs share one
// empty map (records are read-only once handed out).
var (
	closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
	noLabels   = map[string]string{}
)

// New returns a Manager that starts jobs through r, whose Run must be
// running. Zero fields of cfg get defaults: MaxRunning 64, StopGrace 5s,
// Keep 1h, MaxRecords 10000; MaxQueued 0 means no queue (429 when every
// slot is busy).
func New(r *reaper.Reaper, cfg Config) *Manager {
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = DefaultMaxRunning
	}
	cfg.MaxQueued = max(cfg.MaxQueued, 0)
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = DefaultMaxRecords
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Manager{
		r: r, cfg: cfg, log: log, euid: os.Geteuid(),
		spawn: spawn.Start, now: time.Now,
		jobs:    make(map[string]*job),
		conns:   make(map[uint64]map[*job]struct{}),
		drained: make(chan struct{}),
	}
}

// visible returns the job with id if c may see it, else nil: another uid's
// job looks exactly like a missing one, so ids do not leak. A job belongs to
// the uid it runs as (the record's uid, which the events filter uses too):
// that uid could signal its processes and read their /proc anyway, so seeing
// a job root started for it gives it nothing it did not have.
func (m *Manager) visible(c Caller, id string) *job {
	j := m.jobs[id]
	if j == nil || !canSee(c, j) {
		return nil
	}
	return j
}

func canSee(c Caller, j *job) bool { return c.Root() || j.rec.UID == c.UID }

func notFound(id string) error { return api.Errorf(http.StatusNotFound, "no job %q", id) }

// Get returns the record of job id: 404 when there is none, or when c is not
// root and did not submit it.
func (m *Manager) Get(c Caller, id string) (api.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune()
	j := m.visible(c, id)
	if j == nil {
		return api.Job{}, notFound(id)
	}
	return j.rec, nil
}

// List returns the records c may see (all for root, its own otherwise) that
// carry every label in labels, newest first. It never returns nil.
func (m *Manager) List(c Caller, labels map[string]string) []api.Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune()
	var sel []*job
	for _, j := range m.jobs {
		if canSee(c, j) && hasLabels(j.rec.Labels, labels) {
			sel = append(sel, j)
		}
	}
	sort.Slice(sel, func(a, b int) bool { return sel[a].seq > sel[b].seq })
	out := make([]api.Job, len(sel))
	for i, j := range sel {
		out[i] = j.rec
	}
	return out
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// Wait returns the record of job id once it has exited. If ctx ends first it
// returns the current record and ctx.Err(). For a bound job, conn (when not
// 0) becomes one of its bound connections: the job is then stopped only when
// every one of them has closed (ConnClosed).
func (m *Manager) Wait(ctx context.Context, c Caller, id string, conn uint64) (api.Job, error) {
	m.mu.Lock()
	j := m.visible(c, id)
	if j == nil {
		m.mu.Unlock()
		return api.Job{}, notFound(id)
	}
	_, had := j.conns[conn]
	added := j.bound && conn != 0 && j.rec.State != api.StateExited && !had
	if added {
		m.bind(j, conn)
	}
	done := j.done // finish swaps it for the shared closed one
	m.mu.Unlock()

	var err error
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done: // both ready: the exit wins
		default:
			err = ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if added && j.rec.State != api.StateExited {
		// The wait request ended: it no longer holds the job.
		m.release(j, conn)
	}
	return j.rec, err
}

// release removes conn from j's bound connections and stops j when none
// is left (as ConnClosed does); m.mu must be held.
func (m *Manager) release(j *job, conn uint64) {
	if _, ok := j.conns[conn]; !ok {
		return // ConnClosed came first and did the rest
	}
	delete(j.conns, conn)
	if set := m.conns[conn]; set != nil {
		delete(set, j)
		if len(set) == 0 {
			delete(m.conns, conn)
		}
	}
	if len(j.conns) == 0 {
		m.disconnected(j)
	}
}

// disconnected ends a bound job whose last bound connection is gone: a
// queued one is dropped, a running one stopped (SIGTERM to its group,
// SIGKILL after StopGrace); m.mu must be held.
func (m *Manager) disconnected(j *job) {
	switch j.rec.State {
	case api.StateQueued:
		m.dequeue(j)
		m.finish(j, api.ReasonDisconnected)
	case api.StateRunning:
		m.stop(j, api.ReasonDisconnected, m.cfg.StopGrace)
	}
}

// bind adds conn to j's bound connections; m.mu must be held.
func (m *Manager) bind(j *job, conn uint64) {
	if j.conns == nil {
		j.conns = make(map[uint64]struct{})
	}
	j.conns[conn] = struct{}{}
	set := m.conns[conn]
	if set == nil {
		set = make(map[*job]struct{})
		m.conns[conn] = set
	}
	set[j] = struct{}{}
}

// unbind forgets j's connections once it has exited; m.mu must be held.
func (m *Manager) unbind(j *job) {
	for conn := range j.conns {
		if set := m.conns[conn]; set != nil {
			delete(set, j)
			if len(set) == 0 {
				delete(m.conns, conn)
			}
		}
	}
	j.conns = nil
}

// Counters returns how many jobs were started in all, and how many run and
// wait in the queue now.
func (m *Manager) Counters() (started uint64, running, queued int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.started, m.running, len(m.queue)
}

// Running is the number of running jobs.
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// prune forgets exited records older than Keep and the oldest beyond
// MaxRecords. It runs lazily (Submit, List, Get, exits), so an idle tend has
// no timer for it. m.mu must be held.
func (m *Manager) prune() {
	cutoff := m.now().Add(-m.cfg.Keep)
	n := 0
	for n < len(m.ended) && (len(m.ended)-n > m.cfg.MaxRecords || m.ended[n].rec.EndedAt.Before(cutoff)) {
		delete(m.jobs, m.ended[n].rec.ID)
		m.ended[n] = nil // the backing array must not keep it alive
		n++
	}
	m.ended = m.ended[n:]
}

// closeFiles closes the passed fds tend holds for a job.
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// credsFor converts SO_PEERGROUPS gids for syscall.Credential. An empty,
// non-nil result makes the child call setgroups(0): it must never keep
// tend's own supplementary groups.
func credsFor(uid, gid int, groups []int) *syscall.Credential {
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: make([]uint32, 0, len(groups))}
	for _, g := range groups {
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return cred
}
