//go:build linux

package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/spawn"
)

// DefaultPath is the PATH of a non-root caller's job that sends no env.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxFiles is how many fds a request may pass: stdin, stdout, stderr.
const maxFiles = 3

// Submit validates req, checks that its caller may run it, and starts the
// job at once if fewer than MaxRunning run, or queues it if fewer than
// MaxQueued wait. It returns the new record (state running or queued) or a
// *api.StatusError: 400 bad request or unknown user, 403 user named by a
// non-root caller, 422 the command cannot be executed (the text names the
// path and errno; no record is made), 429 queue full, 503 shutting down or
// fork failed with EAGAIN. req.Files are closed in every case: right after
// the start, when the job is refused, or when it leaves the queue.
func (m *Manager) Submit(req SubmitRequest) (api.Job, error) {
	j, err := m.prepare(&req)
	if err != nil {
		closeFiles(req.Files)
		return api.Job{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune()
	switch {
	case m.stopping:
		err = api.Errorf(http.StatusServiceUnavailable, "tend is shutting down")
	case m.running < m.cfg.MaxRunning && len(m.queue) == 0:
		m.add(j)
		if err = m.run(j); err != nil {
			delete(m.jobs, j.rec.ID) // an exec failure leaves no record
			m.unbind(j)
			err = startError(err)
		}
	case len(m.queue) < m.cfg.MaxQueued:
		m.add(j)
		m.queue = append(m.queue, j)
	default:
		err = api.Errorf(http.StatusTooManyRequests, "job queue full (%d running, %d queued)",
			m.running, len(m.queue))
	}
	if err != nil {
		closeFiles(j.files)
		return api.Job{}, err
	}
	return j.rec, nil
}

// add gives j a fresh id, records it and binds it to its connection; m.mu
// must be held.
func (m *Manager) add(j *job) {
	for {
		var b [4]byte
		rand.Read(b[:]) // never fails on Linux (crypto/rand docs)
		j.rec.ID = "j-" + hex.EncodeToString(b[:])
		if _, taken := m.jobs[j.rec.ID]; !taken {
			break
		}
	}
	m.seq++
	j.seq = m.seq
	m.jobs[j.rec.ID] = j
	for conn := range j.conns {
		delete(j.conns, conn) // bind re-adds it with the index
		m.bind(j, conn)
	}
}

// prepare turns a request into an unrecorded queued job, or a 400/403.
// It takes no lock: user lookups read /etc/passwd.
func (m *Manager) prepare(req *SubmitRequest) (*job, error) {
	timeout, stdio, err := m.validate(req)
	if err != nil {
		return nil, err
	}
	cred, uid, home, err := m.identity(req)
	if err != nil {
		return nil, err
	}
	dir := req.Dir
	if dir == "" {
		dir = "/"
	}
	j := &job{
		rec: api.Job{
			State: api.StateQueued, Argv: slices.Clone(req.Argv), UID: uid,
			Labels: maps.Clone(req.Labels), QueuedAt: m.now(),
		},
		spec: &spawn.Spec{
			Argv: slices.Clone(req.Argv), Env: m.environ(req, home), Dir: dir,
			Cred: cred, Setsid: true,
		},
		files: req.Files, stdio: stdio, timeout: timeout, bound: req.Bind,
		done: make(chan struct{}),
	}
	if j.rec.Labels == nil {
		j.rec.Labels = noLabels // "labels": {} rather than null, shared
	}
	if req.Bind && req.Conn != 0 {
		j.conns = map[uint64]struct{}{req.Conn: {}}
	}
	return j, nil
}

func badRequest(format string, args ...any) error {
	return api.Errorf(http.StatusBadRequest, format, args...)
}

// validate checks the request's shape and returns its timeout and the
// target fd of each passed file.
func (m *Manager) validate(req *SubmitRequest) (time.Duration, []int, error) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return 0, nil, badRequest("argv is empty")
	}
	if req.Dir != "" && !filepath.IsAbs(req.Dir) {
		// tend's cwd means nothing to the caller.
		return 0, nil, badRequest("dir %q is not an absolute path", req.Dir)
	}
	timeout := m.cfg.Timeout
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d < 0 {
			return 0, nil, badRequest("timeout %q is not a duration >= 0", req.Timeout)
		}
		timeout = d
	}
	for k := range req.Labels {
		if k == "" {
			return 0, nil, badRequest("label with an empty key")
		}
	}
	stdio, err := targets(req.Stdio, len(req.Files))
	return timeout, stdio, err
}

// targets checks Stdio against the number of passed files; without Stdio
// the files are fds 0, 1, 2 in order.
func targets(stdio []int, nfiles int) ([]int, error) {
	if nfiles > maxFiles {
		return nil, badRequest("%d fds passed, at most %d (stdin, stdout, stderr)", nfiles, maxFiles)
	}
	if stdio == nil {
		return []int{0, 1, 2}[:nfiles], nil
	}
	if len(stdio) != nfiles {
		return nil, badRequest("stdio names %d fds but %d were passed", len(stdio), nfiles)
	}
	var seen [maxFiles]bool
	for _, fd := range stdio {
		if fd < 0 || fd >= maxFiles {
			return nil, badRequest("stdio fd %d is not 0, 1 or 2", fd)
		}
		if seen[fd] {
			return nil, badRequest("stdio fd %d named twice", fd)
		}
		seen[fd] = true
	}
	return slices.Clone(stdio), nil
}

// identity decides who the job runs as (invariant 7: never more than the
// caller has). It returns the credential (nil: tend's own), the uid for the
// record and, for a named user, its home directory.
func (m *Manager) identity(req *SubmitRequest) (*syscall.Credential, int, string, error) {
	c := req.Caller
	if req.User != "" {
		if !c.Root() {
			return nil, 0, "", api.Errorf(http.StatusForbidden, "only root may run a job as another user")
		}
		id, err := spawn.LookupUser(req.User)
		if err != nil {
			return nil, 0, "", badRequest("%v", err)
		}
		return id.Cred, int(id.Cred.Uid), id.Home, nil
	}
	if m.euid != 0 && (c.UID == m.euid || c.Root()) {
		// A non-root tend cannot setgroups, let alone setuid: run as
		// itself, which for a root caller is less than it has.
		return nil, m.euid, "", nil
	}
	return credsFor(c.UID, c.GID, c.Groups), c.UID, "", nil
}

// environ is the job's environment: the request's own if it sent one; else
// tend's (cfg.Env) for root, but only PATH and HOME for anyone else, because
// tend's environment holds the container's secrets. TEND_SOCKET always
// points at this tend.
func (m *Manager) environ(req *SubmitRequest, home string) []string {
	var env []string
	switch {
	case req.Env != nil:
		env = slices.Clone(req.Env)
	case req.Caller.Root():
		env = slices.Clone(m.cfg.Env)
		if req.User != "" && home != "" {
			env = spawn.SetEnv(env, "HOME", home)
		}
	default:
		env = []string{"PATH=" + DefaultPath, "HOME=" + homeOf(req.Caller.UID)}
	}
	if m.cfg.Socket != "" {
		env = spawn.SetEnv(env, "TEND_SOCKET", m.cfg.Socket)
	}
	return env
}

// homeOf is uid's home directory from its passwd entry, else "/".
func homeOf(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.HomeDir != "" {
		return u.HomeDir
	}
	return "/"
}
