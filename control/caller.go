//go:build linux

package control

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Caller is who sent a request, from SO_PEERCRED and SO_PEERGROUPS, read at
// accept: a client cannot gain rights by passing its socket to someone else.
type Caller struct {
	PID    int
	UID    int
	GID    int
	Groups []int // supplementary groups
}

// Root reports whether the caller is root.
func (c Caller) Root() bool { return c.UID == 0 }

// Credential is the caller as the identity a child runs as: its uid, gid
// and supplementary groups. The groups are never nil: an empty list makes
// the child call setgroups(0), so it never keeps tend's own groups.
func (c Caller) Credential() *syscall.Credential {
	cred := &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.GID), Groups: make([]uint32, 0, len(c.Groups))}
	for _, g := range c.Groups {
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return cred
}

// Submit is one POST /v1/jobs, validated: what the backend gets.
type Submit struct {
	Caller Caller
	Conn   uint64 // the connection that carried it; with Bind, the job dies with it

	Argv       []string
	Env        []string // nil when the request sent none
	Dir        string   // absolute; "" = the default, /
	Labels     map[string]string
	Timeout    time.Duration // with TimeoutSet; else the [jobs] default
	TimeoutSet bool
	Bind       bool
	// PidFD: the answer will pass a pidfd of the job's process if it
	// runs by then (POST /v1/jobs without wait): a subreaper unit's
	// helper is asked for one.
	PidFD bool
	User  string // root callers only (checked by the backend)
	Track string // "", or a valid config.Track
	// MemoryMax and PidsMax are the job's limits, config.NoLimit if none.
	MemoryMax int64
	PidsMax   int64

	// Files are the fds passed with the request, raw, owned by the
	// backend from the call on (it closes them: after the start, or on a
	// refusal); Stdio[i] is the job's fd (0-2) for Files[i].
	Files []int
	Stdio []int
}

// JobSignal is one POST /v1/jobs/{id}/signal, validated.
type JobSignal struct {
	Sig  unix.Signal
	Tree bool // the job's whole process group (or unit)
	Kill bool // then SIGKILL after [jobs] stop_grace if still there
}
