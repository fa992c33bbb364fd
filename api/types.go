//go:build linux

// Package api holds the wire types of tend's control API (HTTP/1.1 + JSON on
// a Unix socket, DESIGN.md §5) and a Go client for it. It owns no state of
// the server: the server and the client both import it.
package api

import (
	"encoding/json"
	"time"

	"github.com/tendinit/tend/signals"
)

// Job states.
const (
	StateQueued  = "queued"
	StateRunning = "running"
	StateExited  = "exited"
)

// Why a job ended.
const (
	ReasonExited       = "exited"       // exited by itself with a code
	ReasonSignaled     = "signaled"     // killed by a signal nobody from tend sent
	ReasonTimeout      = "timeout"      // its timeout expired
	ReasonKilled       = "killed"       // a signal request with "kill": true
	ReasonShutdown     = "shutdown"     // tend stopped
	ReasonExecFailed   = "exec_failed"  // a queued job whose command could not be run
	ReasonDisconnected = "disconnected" // its bound connection closed first
	// ReasonOOM: the OOM killer killed its main process (its unit's
	// memory_max reached). It wins over timeout, killed, disconnected and
	// shutdown: the main's SIGKILL (or a shell's 137 for it) is put down to
	// the kernel whenever the unit's oom_kill counter is above 0.
	ReasonOOM = "oom"
)

// JobRequest is the body of POST /v1/jobs. File descriptors passed with
// SCM_RIGHTS on the request (at most 3) become the job's fds named in Stdio,
// in order (default 0, 1, 2); the job's other stdio fds are /dev/null.
type JobRequest struct {
	Argv    []string          `json:"argv"`
	Env     []string          `json:"env,omitempty"` // nil: see DESIGN.md §5
	Dir     string            `json:"dir,omitempty"` // default "/"
	Labels  map[string]string `json:"labels,omitempty"`
	Timeout string            `json:"timeout,omitempty"` // Go duration; "" = [jobs] timeout
	Bind    bool              `json:"bind,omitempty"`
	// PidFD asks for a pidfd of the job's process, passed (SCM_RIGHTS)
	// with the 201 answer when the job runs at once, whatever its track
	// (subreaper: opened by its unit helper before it can reap it):
	// readable once it exits, good for pidfd_send_signal; the status
	// still comes from tend.
	PidFD bool   `json:"pidfd,omitempty"`
	User  string `json:"user,omitempty"`  // root callers only
	Stdio []int  `json:"stdio,omitempty"` // target fd (0-2) of each passed fd
	Track string `json:"track,omitempty"` // auto | cgroup | subreaper | group; "" = [defaults] track
	// MemoryMax is the job's memory limit: a JSON integer (bytes) or a
	// string such as "512M" (K, M, G, T: powers of 1024) or "max"; absent
	// or null: none. PidsMax is its limit on tasks: an integer >= 1 or
	// "max". Both need a cgroup controller (README, "Units"): where none
	// can be had the request gets 422 naming it.
	MemoryMax json.RawMessage `json:"memory_max,omitempty"`
	PidsMax   json.RawMessage `json:"pids_max,omitempty"`
}

// Job is the job record.
type Job struct {
	ID         string   `json:"id"`
	PID        *int     `json:"pid"`   // null while queued
	State      string   `json:"state"` // queued | running | exited
	ExitCode   *int     `json:"exit_code"`
	Signal     *string  `json:"signal"` // "SIGKILL" when it died of a signal
	CoreDumped bool     `json:"core_dumped"`
	Reason     string   `json:"reason,omitempty"` // set once exited
	Error      string   `json:"error,omitempty"`  // with exec_failed: path and errno
	Argv       []string `json:"argv"`
	// ArgvTruncated says Argv is only what the record keeps of it
	// ([jobs] record_argv_bytes): the command ran with all of it.
	ArgvTruncated bool              `json:"argv_truncated,omitempty"`
	Labels        map[string]string `json:"labels"`
	UID           int               `json:"uid"`
	QueuedAt      time.Time         `json:"queued_at"`
	StartedAt     *time.Time        `json:"started_at"`
	EndedAt       *time.Time        `json:"ended_at"`
	// Track is how the job's processes are tracked (cgroup, subreaper or
	// group); Processes how many it has now (a snapshot; while running);
	// LeftoversKilled how many outlived its main process and were killed.
	Track           string `json:"track,omitempty"`
	Processes       *int   `json:"processes,omitempty"`
	LeftoversKilled int    `json:"leftovers_killed,omitempty"`
	// MemoryMax (bytes) and PidsMax (tasks) are the limits the job runs
	// with, absent when none; OOMKills how many of its processes the OOM
	// killer killed (the unit's oom_kill counter at its main's end).
	MemoryMax int64 `json:"memory_max,omitempty"`
	PidsMax   int64 `json:"pids_max,omitempty"`
	OOMKills  int   `json:"oom_kills,omitempty"`
}

// SignalRequest is the body of POST /v1/jobs/{id}/signal and of
// POST /v1/services/{name}/signal (Tree and Kill are for jobs only).
type SignalRequest struct {
	Signal string `json:"signal"`         // name or number; default SIGTERM
	Tree   bool   `json:"tree,omitempty"` // the job's whole process group
	Kill   bool   `json:"kill,omitempty"` // then SIGKILL the group after [jobs] stop_grace
}

// Service is one supervised service as GET /v1/status shows it.
type Service struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // pending starting running backoff stopping stopped failed
	PID      *int      `json:"pid"`
	Runs     int       `json:"runs"`
	LastCode *int      `json:"last_code"` // of the last run; 128+N for signal N
	Critical bool      `json:"critical"`
	Ready    bool      `json:"ready"`
	Since    time.Time `json:"since"` // of the current state
	// Track is how the run's processes are tracked; Processes how many
	// the current run has (a snapshot); LeftoversKilled how many outlived
	// the last run's main process and were killed.
	Track           string `json:"track,omitempty"`
	Processes       *int   `json:"processes,omitempty"`
	LeftoversKilled int    `json:"leftovers_killed,omitempty"`
	// LastReason says how the last run ended: exited, signaled, or oom
	// (its main process killed by the OOM killer at memory_max).
	LastReason string `json:"last_reason,omitempty"`
	// MemoryMax (bytes) and PidsMax (tasks) are the limits each run gets,
	// absent when none.
	MemoryMax int64 `json:"memory_max,omitempty"`
	PidsMax   int64 `json:"pids_max,omitempty"`
	// StatusText is the last STATUS= of the current run (ready =
	// "notify"); NotifyStopping: the run sent STOPPING=1.
	StatusText     string `json:"status_text,omitempty"`
	NotifyStopping bool   `json:"notify_stopping,omitempty"`
	// Checks are the service's [[service.check]]s, in file order.
	Checks []Check `json:"checks,omitempty"`
}

// Check is the state of one [[service.check]] of a service.
type Check struct {
	Name      string `json:"name"`
	Probe     string `json:"probe"`      // as the config spells it
	OnFailure string `json:"on_failure"` // restart, stop or ignore
	// State: pending (not probed yet in this ready run, or the service is
	// not ready), passing, or failing (threshold failures in a row).
	State     string     `json:"state"`
	Failures  int        `json:"failures"` // in a row, now
	LastError string     `json:"last_error,omitempty"`
	LastAt    *time.Time `json:"last_at,omitempty"` // of the last probe's end
}

// The states of a Check.
const (
	CheckPending = "pending"
	CheckPassing = "passing"
	CheckFailing = "failing"
)

// Counters are tend's running totals.
type Counters struct {
	Reaped        uint64 `json:"reaped"`         // every child reaped
	OrphansReaped uint64 `json:"orphans_reaped"` // of those, nobody's
	JobsStarted   uint64 `json:"jobs_started"`
	JobsRunning   int    `json:"jobs_running"`
	JobsQueued    int    `json:"jobs_queued"`
	JobsKept      int    `json:"jobs_kept"` // exit records kept (all of them, whoever asks)
}

// Status is the body of GET /v1/status.
type Status struct {
	Version  string    `json:"version"`
	PID      int       `json:"pid"`
	Stopping bool      `json:"stopping"`
	Services []Service `json:"services"`
	Jobs     []Job     `json:"jobs"` // those the caller may see, newest first: one page ([control] page_size)
	// JobsNext, when not "", is the id to list after for the rest:
	// GET /v1/jobs?after=JobsNext.
	JobsNext string   `json:"jobs_next,omitempty"`
	Counters Counters `json:"counters"`
	// PidsReserve is the pids tend keeps that no unit can spend, where it
	// keeps some ([jobs] units_pids); absent otherwise.
	PidsReserve *PidsReserve `json:"pids_reserve,omitempty"`
}

// PidsReserve is the one pids cgroup that holds every unit (service runs
// and jobs, root's too), fixed at start.
type PidsReserve struct {
	UnitsPidsMax int64  `json:"units_pids_max"` // the cgroup's pids.max: all units together
	Dir          string `json:"dir"`
	PidsLimit    int64  `json:"pids_limit,omitempty"` // tend's own pids limit, where one is set
	Reserved     int64  `json:"reserved,omitempty"`   // PidsLimit less UnitsPidsMax: tend's and nobody else's
}

// NextHeader is the header of a GET /v1/jobs answer that has a next page:
// its value is the id to pass as after=. (The Link header says the same as
// a URL.)
const NextHeader = "Tend-Next-After"

// Event types on GET /v1/events.
const (
	EventJobStarted   = "job.started"
	EventJobExited    = "job.exited"
	EventOrphanReaped = "orphan.reaped"
	// Service events are "service." + the new state: service.running, ...
	EventServicePrefix = "service."
)

// Event is one line of the NDJSON stream of GET /v1/events.
type Event struct {
	Seq     uint64    `json:"seq"` // increasing; a gap means events were dropped
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Job     *Job      `json:"job,omitempty"`
	Service *Service  `json:"service,omitempty"`
	PID     int       `json:"pid,omitempty"`  // orphan.reaped
	Code    *int      `json:"code,omitempty"` // orphan.reaped; shutdown.forced: tend's exit code
	// Units is every unit a forced shutdown stopped (shutdown.forced).
	Units []ShutdownUnit `json:"units,omitempty"`
	// Check names the check of Service whose state changed (service.check).
	Check string `json:"check,omitempty"`
	// Zombie is the parent whose zombies crossed [zombies] warn_at
	// (zombie.held).
	Zombie *ZombieParent `json:"zombie,omitempty"`
}

// EventZombieHeld: a scan found a live process holding [zombies] warn_at
// zombies or more (once per crossing).
const EventZombieHeld = "zombie.held"

// ZombieParent is a live process holding zombies it never waited for:
// PID 1 cannot reap them; only the parent (or its end) can. GET /v1/zombies.
type ZombieParent struct {
	PID     int    `json:"pid"`
	UID     int    `json:"uid"`
	Command string `json:"command"`
	// Owner is the unit the parent is part of ("service gateway", "job
	// j-7f3a"), "" when it is none's (init mode's main is "service main").
	Owner      string    `json:"owner,omitempty"`
	Zombies    int       `json:"zombies"`
	ZombiePIDs []int     `json:"zombie_pids"` // the first 32, lowest first
	FirstSeen  time.Time `json:"first_seen"`  // of the oldest, by tend's scans
}

// EventServiceCheck is a check of a service becoming passing or failing.
const EventServiceCheck = "service.check"

// EventShutdownForced is published once when a shutdown had to SIGKILL
// anything, just before tend exits.
const EventShutdownForced = "shutdown.forced"

// ShutdownUnit is one unit's part in a forced shutdown: a service, a job,
// or "sweep" (the final SIGKILL of whatever was left).
type ShutdownUnit struct {
	Name   string `json:"name"`    // "service web", "job j-7f3a", "sweep"
	TookMS int64  `json:"took_ms"` // from the shutdown's start to its end (or to tend's exit)
	Ended  bool   `json:"ended"`   // false: still there when tend exited (D state)
	Killed bool   `json:"killed"`  // it got SIGKILL
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
}

// Reload is the answer of POST /v1/reload: what the re-read file changed.
type Reload struct {
	Added   []string `json:"added"`   // services started
	Removed []string `json:"removed"` // services stopped and forgotten
	Changed []string `json:"changed"` // services restarted with their new keys
	// Settings are the changes of the other tables, applied: "[jobs]
	// max_running: 64 -> 8".
	Settings []string `json:"settings"`
}

// Health is the body of GET /v1/health.
type Health struct {
	Healthy bool   `json:"healthy"`
	Level   string `json:"level"`             // alive or ready, as asked
	Include string `json:"include,omitempty"` // critical or all ([health] include)
	Down    []Down `json:"down,omitempty"`    // what makes it unhealthy
	// NotReady names the counted services that are not ready (level
	// ready), as Down does with the reasons.
	NotReady []string `json:"not_ready,omitempty"`
	// Failed names every service that has failed for good (no restart
	// left), counted or not: a non-counted one does not make Healthy
	// false, it is there for a person or a probe's log to see.
	Failed []string `json:"failed,omitempty"`
}

// Down is one thing that makes GET /v1/health unhealthy.
type Down struct {
	Service string `json:"service,omitempty"` // "" for tend itself (stopping)
	Reason  string `json:"reason"`            // "failed", "starting", "check http failing", ...
}

// The levels of GET /v1/health?level=.
const (
	// HealthAlive: tend answers, is not stopping, and no counted service
	// has failed for good or has a failing check with on_failure =
	// "ignore" (one that restarts or stops is being dealt with).
	HealthAlive = "alive"
	// HealthReady (the default): every counted service is ready, has not
	// sent STOPPING=1, and no check of it is failing.
	HealthReady = "ready"
)

// jobWire is how a Job goes on the wire: its fields and two derived from
// them, so that a record costs no memory for them.
type jobWire struct {
	jobFields
	// WaitStatus is the raw status as wait(2) gives it (code<<8, or the
	// signal number, 0x80 set for a core dump); Returncode is Python's
	// subprocess convention (the code, or -N for signal N). Both null
	// until the job has exited.
	WaitStatus *int `json:"wait_status"`
	Returncode *int `json:"returncode"`
}

// jobFields has Job's fields without its methods (no recursion).
type jobFields Job

// MarshalJSON adds wait_status and returncode to the record.
func (j Job) MarshalJSON() ([]byte, error) {
	w := jobWire{jobFields: jobFields(j)}
	if ws, rc, ok := j.Status(); ok {
		w.WaitStatus, w.Returncode = &ws, &rc
	}
	return json.Marshal(w)
}

// Status is the job's end as a raw wait status and as Python's
// returncode; ok is false until it has exited (or when its signal is
// not one this build can name).
func (j Job) Status() (waitStatus, returncode int, ok bool) {
	switch {
	case j.ExitCode != nil:
		return (*j.ExitCode & 0xff) << 8, *j.ExitCode, true
	case j.Signal != nil:
		sig, err := signals.Parse(*j.Signal)
		if err != nil {
			return 0, 0, false
		}
		n := int(sig)
		ws := n
		if j.CoreDumped {
			ws |= 0x80
		}
		return ws, -n, true
	}
	return 0, 0, false
}
