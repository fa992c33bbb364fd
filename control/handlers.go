//go:build linux

package control

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// status answers GET /v1/status: every service, the jobs the caller may see.
func (s *Server) status(w http.ResponseWriter, r *http.Request, c *conn) {
	// One page of jobs, as GET /v1/jobs gives without a query: the
	// answer's size is bounded by [control] page_size, the counters are
	// exact.
	page, next, err := s.cfg.Jobs.List(c.caller, ListQuery{Limit: s.cfg.Limits.PageSize})
	if err != nil {
		s.fail(w, err)
		return
	}
	counters := s.cfg.Jobs.Counters()
	counters.Reaped, counters.OrphansReaped = s.cfg.Services.Reaped()
	st := api.Status{
		Version:  s.cfg.Version,
		PID:      os.Getpid(),
		Stopping: s.cfg.Services.Stopping(),
		Services: nonNil(s.cfg.Services.Services()),
		Jobs:     nonNil(page),
		JobsNext: next,
		Counters: counters,

		PidsReserve: s.cfg.Services.PidsReserve(),
	}
	s.reply(w, http.StatusOK, st)
}

// health answers GET /v1/health?level=alive|ready: 200 when healthy, else
// 503, with the record.
func (s *Server) health(w http.ResponseWriter, r *http.Request, c *conn) {
	level := r.URL.Query().Get("level")
	switch level {
	case "":
		level = api.HealthReady
	case api.HealthAlive, api.HealthReady:
	default:
		s.fail(w, api.Errorf(http.StatusBadRequest, "level: %q is not %s or %s", level, api.HealthAlive, api.HealthReady))
		return
	}
	h := s.cfg.Services.Health(level)
	code := http.StatusOK
	if !h.Healthy {
		code = http.StatusServiceUnavailable
	}
	s.reply(w, code, h)
}

// reload answers POST /v1/reload (root and tend's uid only): 200 with what
// changed; a bad file or a refused change is an error that changed nothing.
func (s *Server) reload(w http.ResponseWriter, r *http.Request, c *conn) {
	if !s.mayControl(c.caller) {
		s.fail(w, api.Errorf(http.StatusForbidden, "uid %d may not reload: only root and uid %d may", c.caller.UID, s.uid))
		return
	}
	rep, err := s.cfg.Services.Reload()
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, rep)
}

// zombies answers GET /v1/zombies: the live processes holding zombies the
// caller may see, most first.
func (s *Server) zombies(w http.ResponseWriter, r *http.Request, c *conn) {
	s.reply(w, http.StatusOK, nonNil(s.cfg.Services.Zombies(c.caller)))
}

// serviceOp answers POST /v1/services/{name}/{op}: 204 for a signal sent,
// 202 for a start, stop or restart begun (the supervisor finishes it).
func (s *Server) serviceOp(w http.ResponseWriter, r *http.Request, c *conn) {
	name, op := r.PathValue("name"), r.PathValue("op")
	switch op {
	case "signal", "restart", "stop", "start":
	default:
		s.fail(w, api.Errorf(http.StatusNotFound, "no endpoint POST %s: a service's operations are signal, restart, stop and start", r.URL.Path))
		return
	}
	if !s.mayControl(c.caller) {
		s.fail(w, api.Errorf(http.StatusForbidden, "uid %d may not control services: only root and uid %d may", c.caller.UID, s.uid))
		return
	}
	var sig unix.Signal
	if op == "signal" {
		// A service's signal is never a default: an empty body or
		// signal is refused, not taken for a SIGTERM that would stop it.
		var req api.SignalRequest
		err := s.decode(w, r, &req, false)
		switch {
		case err == nil && (req.Tree || req.Kill):
			err = api.Errorf(http.StatusBadRequest, "body: tree and kill are for jobs, not services")
		case err == nil && req.Signal == "":
			err = api.Errorf(http.StatusBadRequest, `body: signal: missing: a service's signal is named, e.g. {"signal":"SIGHUP"}`)
		}
		if err == nil {
			sig, err = parseSignal(req.Signal)
		}
		if err != nil {
			s.fail(w, err)
			return
		}
	} else if err := s.decode(w, r, &struct{}{}, true); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.cfg.Services.ServiceOp(name, op, sig); err != nil {
		s.fail(w, err)
		return
	}
	if op == "signal" {
		s.reply(w, http.StatusNoContent, nil)
		return
	}
	s.reply(w, http.StatusAccepted, nil)
}

// submit answers POST /v1/jobs: 201 and the record. The oldest batch of fds
// pending on the connection belongs to this request: handed to the manager,
// or closed here when the request is refused before it.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, c *conn) {
	wait := false
	switch v := r.URL.Query().Get("wait"); v {
	case "", "0", "false":
	case "1", "true":
		wait = true
	default:
		c.closeFDs(c.take()...)
		s.fail(w, api.Errorf(http.StatusBadRequest, "wait %s: want 1 (answer the record at the start, then at the exit) or 0", quoteCut(v)))
		return
	}
	files := c.take()
	var req api.JobRequest
	err := s.decode(w, r, &req, false)
	var sub Submit
	if err == nil {
		sub, err = parseJob(req, files, c.caller, c.id, s.cfg.Limits)
		// The NDJSON answer of wait=1 passes no fd: no helper need
		// open a pidfd for it.
		sub.PidFD = sub.PidFD && !wait
	}
	if err != nil {
		c.closeFDs(files...)
		s.fail(w, err)
		return
	}
	job, err := s.cfg.Jobs.Submit(r.Context(), sub)
	if err != nil {
		s.fail(w, err)
		return
	}
	if req.Bind {
		c.bound.Store(true)
	}
	if wait {
		s.submitWait(w, r, c, job)
		return
	}
	if req.PidFD && job.State == api.StateRunning {
		// Sent with the answer's first bytes; none when it cannot be had
		// (the job ended already, seccomp): the client then waits on
		// tend alone.
		if fd, err := s.cfg.Jobs.PidFD(c.caller, job.ID); err == nil {
			c.sendWithNext(fd)
		} else {
			s.cfg.Log.Debug("no pidfd for the job", "job", job.ID, "err", err)
		}
	}
	w.Header().Set("Location", "/v1/jobs/"+url.PathEscape(job.ID))
	s.reply(w, http.StatusCreated, job)
}

// submitWait answers POST /v1/jobs?wait=1: a job in one round trip. The
// 201 is an NDJSON stream of two records: the job's as it started (or was
// queued), at once, so a client can signal it by id meanwhile, then its
// record once it has exited. A bound job dies if the client leaves first;
// an unbound one runs on, its record kept as any other's.
func (s *Server) submitWait(w http.ResponseWriter, r *http.Request, c *conn, job api.Job) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.IOTimeout))
	w.Header().Set("Location", "/v1/jobs/"+url.PathEscape(job.ID))
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusCreated)
	enc := json.NewEncoder(w)
	if enc.Encode(job) != nil || rc.Flush() != nil {
		return // the client left
	}
	final := job
	if job.State != api.StateExited {
		var err error
		if final, err = s.cfg.Jobs.Wait(r.Context(), c.caller, job.ID, c.id); err != nil {
			return // the client left (or the record is gone): nobody to answer
		}
	}
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.IOTimeout))
	_ = enc.Encode(final)
}

// list answers GET /v1/jobs?label=k=v...&limit=N&after=ID: a page of the
// caller's jobs, newest first. When more follow, a Link header (RFC 8288)
// names the next page, rel="next", and Tend-Next-After its cursor.
func (s *Server) list(w http.ResponseWriter, r *http.Request, c *conn) {
	q, err := parseList(r.URL.RawQuery, s.cfg.Limits)
	var page []api.Job
	var next string
	if err == nil {
		page, next, err = s.cfg.Jobs.List(c.caller, q)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if next != "" {
		w.Header().Set(api.NextHeader, next)
		w.Header().Set("Link", "<"+nextPage(r.URL, next)+`>; rel="next"`)
	}
	s.reply(w, http.StatusOK, nonNil(page))
}

// nextPage is the URL of the page after the one u asked for, which ended
// at id: u's query with after replaced.
func nextPage(u *url.URL, id string) string {
	q := u.Query()
	q.Set("after", id)
	return u.Path + "?" + q.Encode()
}

// get answers GET /v1/jobs/{id}.
func (s *Server) get(w http.ResponseWriter, r *http.Request, c *conn) {
	job, err := s.cfg.Jobs.Get(c.caller, r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, job)
}

// wait answers GET /v1/jobs/{id}/wait[?timeout=D]: the record once the job
// exited. When the timeout elapses first the answer is still 200, with the
// current record (state queued or running): the client polls again. The
// request has no server timeout and ends early only if the client leaves.
func (s *Server) wait(w http.ResponseWriter, r *http.Request, c *conn) {
	ctx := r.Context()
	if q := r.URL.Query().Get("timeout"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < 0 {
			s.fail(w, api.Errorf(http.StatusBadRequest, "timeout %q: want a duration such as 30s", q))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	id := r.PathValue("id")
	job, err := s.cfg.Jobs.Wait(ctx, c.caller, id, c.id)
	if r.Context().Err() != nil {
		return // the client left: nobody to answer
	}
	if err != nil && ctx.Err() != nil {
		job, err = s.cfg.Jobs.Get(c.caller, id) // our timeout elapsed
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, job)
}

// signal answers POST /v1/jobs/{id}/signal: 204 once sent, 202 with kill
// (the SIGKILL of the group is still to come).
func (s *Server) signal(w http.ResponseWriter, r *http.Request, c *conn) {
	var req api.SignalRequest
	err := s.decode(w, r, &req, true)
	var sig unix.Signal
	if err == nil {
		sig, err = parseSignal(req.Signal)
	}
	if err == nil {
		err = s.cfg.Jobs.Signal(c.caller, r.PathValue("id"), JobSignal{Sig: sig, Tree: req.Tree, Kill: req.Kill})
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if req.Kill {
		s.reply(w, http.StatusAccepted, nil)
		return
	}
	s.reply(w, http.StatusNoContent, nil)
}

// nonNil makes an empty list [] in JSON, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
