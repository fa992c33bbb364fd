//go:build linux

package jobs

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
)

// run starts j now and makes it running, or returns why it could not start
// (startError gives its HTTP status). j's files are closed either way. m.mu
// must be held: the owner callback then finds the record complete, however
// fast the child exits.
func (m *Manager) run(j *job) error {
	pid, err := m.launch(j)
	closeFiles(j.files) // tend's copies: the job has its own now
	j.files = nil
	if err != nil {
		return err
	}
	now := m.now()
	j.rec.PID, j.rec.StartedAt, j.rec.State = &pid, &now, api.StateRunning
	j.spec = nil // the env may be large; the record keeps argv
	m.running++
	m.started++
	if j.timeout > 0 {
		m.arm(j, j.timeout, func(j *job) { m.stop(j, api.ReasonTimeout, m.cfg.StopGrace) })
	}
	m.publish(api.EventJobStarted, j)
	return nil
}

// launch forks j through the reaper with its passed files on their stdio
// fds and /dev/null on the others.
func (m *Manager) launch(j *job) (int, error) {
	var fds [maxFiles]uintptr
	if len(j.files) < maxFiles {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		defer null.Close() // after the fork: the child has its own
		for i := range fds {
			fds[i] = null.Fd()
		}
	}
	for i, f := range j.files {
		// A child's stdio must block: programs do not expect EAGAIN on
		// fd 0-2. Fd clears O_NONBLOCK only when Go set it; a passed fd
		// keeps the sender's flags (os.NewFile: kindNonBlock), and the
		// flag is the open file description's, shared with the job.
		fd := f.Fd()
		if err := unix.SetNonblock(int(fd), false); err != nil {
			return 0, fmt.Errorf("passed fd for %d: %w", j.stdio[i], err)
		}
		fds[j.stdio[i]] = fd
	}
	spec := *j.spec
	spec.Files = fds[:]
	return m.r.Start(func() (int, error) { return m.spawn(spec) },
		func(e reaper.Exit) { m.exited(j, e) })
}

// startError says which HTTP status a failed start gets.
func startError(err error) error {
	var ee *spawn.ExecError
	if errors.As(err, &ee) {
		return api.Errorf(http.StatusUnprocessableEntity, "%s", ee.Error())
	}
	if errors.Is(err, unix.EAGAIN) {
		// pids.max or RLIMIT_NPROC: tend's limit, not the command's fault.
		return api.Errorf(http.StatusServiceUnavailable, "%v (EAGAIN)", err)
	}
	return api.Errorf(http.StatusInternalServerError, "start job: %v", err)
}

// exited is j's owner callback, on the reaper's goroutine: it records the
// exit, publishes it and fills the freed slot from the queue.
func (m *Manager) exited(j *job, e reaper.Exit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	reason := api.ReasonExited
	if ws := e.Status; ws.Signaled() {
		name := signals.Name(ws.Signal())
		j.rec.Signal, j.rec.CoreDumped = &name, ws.CoreDump()
		reason = api.ReasonSignaled
	} else {
		code := ws.ExitStatus()
		j.rec.ExitCode = &code
	}
	if j.reason != "" {
		reason = j.reason // tend stopped it: say why
	}
	m.running--
	m.finish(j, reason)
	m.startQueued()
	m.prune()
}

// finish makes j exited: no timer, no files, no bound connection left,
// waiters woken, job.exited published. m.mu must be held.
func (m *Manager) finish(j *job, reason string) {
	m.disarm(j)
	now := m.now()
	j.rec.State, j.rec.Reason, j.rec.EndedAt = api.StateExited, reason, &now
	closeFiles(j.files)
	j.files, j.spec, j.stdio = nil, nil, nil
	m.unbind(j)
	m.ended = append(m.ended, j)
	close(j.done)
	j.done = closedDone
	m.publish(api.EventJobExited, j)
	if m.stopping && m.running == 0 && !m.closed {
		m.closed = true
		close(m.drained)
	}
}

// startQueued starts queued jobs, oldest first, while slots are free. A job
// that cannot start ends at once with reason exec_failed and the exit code
// a shell would give (127 not found, 126 otherwise, including fork EAGAIN:
// retrying later could wait forever when nothing else runs). m.mu must be
// held.
func (m *Manager) startQueued() {
	for !m.stopping && m.running < m.cfg.MaxRunning && len(m.queue) > 0 {
		j := m.queue[0]
		m.queue[0] = nil
		m.queue = m.queue[1:]
		err := m.run(j)
		if err == nil {
			continue
		}
		code := spawn.ExitNotExecutable
		var ee *spawn.ExecError
		if errors.As(err, &ee) {
			code = ee.Code()
		}
		j.rec.ExitCode, j.rec.Error = &code, err.Error()
		m.finish(j, api.ReasonExecFailed)
	}
}

// dequeue removes a queued j from the queue; m.mu must be held.
func (m *Manager) dequeue(j *job) {
	for i, q := range m.queue {
		if q == j {
			m.queue = slices.Delete(m.queue, i, i+1) // zeroes the freed slot
			return
		}
	}
}

// publish sends a copy of j's record to cfg.Publish, under m.mu so that
// each job's events keep their order; Publish never blocks.
func (m *Manager) publish(typ string, j *job) {
	if m.cfg.Publish == nil {
		return
	}
	rec := j.rec
	m.cfg.Publish(api.Event{Type: typ, Job: &rec})
}
