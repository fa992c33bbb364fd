//go:build linux

package jobs

import (
	"log/slog"
	"os"
	"time"

	"github.com/tendinit/tend/api"
)

// Caller is who sent a request, from SO_PEERCRED and SO_PEERGROUPS.
type Caller struct {
	PID    int
	UID    int
	GID    int
	Groups []int // supplementary groups
}

// Root reports whether the caller is root.
func (c Caller) Root() bool { return c.UID == 0 }

// Config is the [jobs] section plus what the manager needs from tend.
type Config struct {
	MaxRunning int           // beyond: queue
	MaxQueued  int           // beyond: 429
	Timeout    time.Duration // default per-job wall time; 0 = none
	StopGrace  time.Duration // SIGTERM -> SIGKILL of a job's group
	Keep       time.Duration // how long exit records stay queryable
	MaxRecords int           // hard cap on exit records kept (oldest go first); 0 = 10000

	Env    []string // tend's environment less its own settings: root callers' default
	Socket string   // the control socket's path: TEND_SOCKET of every job
	Log    *slog.Logger
	// Publish, if set, receives job.started and job.exited events, in
	// order for each job; it must not block.
	Publish func(api.Event)
}

// SubmitRequest is one POST /v1/jobs.
type SubmitRequest struct {
	api.JobRequest
	Caller Caller
	// Files are the fds passed with the request (at most 3), owned by the
	// manager from the call on: it closes them right after the job starts,
	// or when the job is refused or dropped from the queue.
	Files []*os.File
	// Conn identifies the connection that carried the request; with Bind,
	// the job is killed (reason disconnected) if that connection closes
	// before the job exits (see Manager.ConnClosed).
	Conn uint64
}
