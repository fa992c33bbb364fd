//go:build linux

package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
)

// Service operations of POST /v1/services/{name}/{op}.
const (
	OpSignal  = "signal"
	OpRestart = "restart"
	OpStop    = "stop"
	OpStart   = "start"
)

// Status returns GET /v1/status: every service, the jobs the caller may
// see, and tend's counters.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// Reload is POST /v1/reload: tend re-reads its file and applies what
// changed, or nothing (an error says why).
func (c *Client) Reload(ctx context.Context) (Reload, error) {
	var r Reload
	err := c.do(ctx, http.MethodPost, "/v1/reload", nil, &r)
	return r, err
}

// Zombies returns GET /v1/zombies: the live processes holding zombies
// that the caller may see (its own uid's; root: all), most first.
func (c *Client) Zombies(ctx context.Context) ([]ZombieParent, error) {
	var z []ZombieParent
	err := c.do(ctx, http.MethodGet, "/v1/zombies", nil, &z)
	return z, err
}

// Health returns GET /v1/health (level ready). A 503 that carries a Health
// body is an answer, not an error: it returns that Health (Healthy false)
// and nil.
func (c *Client) Health(ctx context.Context) (Health, error) { return c.HealthAt(ctx, "") }

// HealthAt is Health at a level: HealthAlive, HealthReady, or "" (ready).
func (c *Client) HealthAt(ctx context.Context, level string) (Health, error) {
	path := "/v1/health"
	if level != "" {
		path += "?level=" + url.QueryEscape(level)
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return Health{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		var h Health
		if err := checkStatus(resp); err != nil {
			return h, err
		}
		return h, decodeBody(resp.Body, &h)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var h struct {
		Health
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &h) != nil || h.Error != "" || h.Healthy {
		// Not a health answer: tend could not say (e.g. it is stopping).
		return Health{}, checkStatus(&http.Response{StatusCode: resp.StatusCode, Body: io.NopCloser(bytes.NewReader(b))})
	}
	return h.Health, nil
}

// Jobs returns every job GET /v1/jobs lists, newest first, filtered by
// every label given (all must match): it follows the pages (JobsPage) to
// the last. A job forgotten between two pages is missing; the record a
// page ended at being forgotten meanwhile is an error (a 404): list again.
func (c *Client) Jobs(ctx context.Context, labels map[string]string) ([]Job, error) {
	var all []Job
	after := ""
	for {
		page, next, err := c.JobsPage(ctx, labels, 0, after)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		if next == after || len(page) == 0 {
			return nil, fmt.Errorf("bad answer from tend: a page of %d jobs names %q as the next again", len(page), next)
		}
		after = next
	}
}

// JobsByPID returns the records of the caller's jobs that ran as pid,
// newest first, live and kept (pids recycle: there may be several), at
// most one page ([control] page_size).
func (c *Client) JobsByPID(ctx context.Context, pid int) ([]Job, error) {
	var out []Job
	err := c.do(ctx, http.MethodGet, "/v1/jobs?pid="+strconv.Itoa(pid), nil, &out)
	return out, err
}

// JobsPage returns one page of GET /v1/jobs: at most limit jobs (0: tend's
// [control] page_size), newest first, after the job with id after ("": from
// the newest), and the after of the next page, "" when this is the last.
func (c *Client) JobsPage(ctx context.Context, labels map[string]string, limit int, after string) ([]Job, string, error) {
	q := url.Values{}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a stable URL, for logs and tests
	for _, k := range keys {
		q.Add("label", k+"="+labels[k])
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	path := "/v1/jobs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return nil, "", err
	}
	var raw json.RawMessage
	if err := decodeBody(resp.Body, &raw); err != nil {
		return nil, "", err
	}
	jobs, err := decodeJobList(raw)
	return jobs, resp.Header.Get(NextHeader), err
}

// decodeJobList reads a JSON array of jobs; it also accepts {"jobs": [...]}
// so that the client does not break if the list ever gets a wrapper.
func decodeJobList(raw json.RawMessage) ([]Job, error) {
	var jobs []Job
	err := json.Unmarshal(raw, &jobs)
	if err != nil {
		var wrapped struct {
			Jobs []Job `json:"jobs"`
		}
		if json.Unmarshal(raw, &wrapped) != nil {
			return nil, fmt.Errorf("bad answer from tend: %w", err)
		}
		jobs = wrapped.Jobs
	}
	return jobs, nil
}

// Job returns GET /v1/jobs/{id}.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// Wait long-polls GET /v1/jobs/{id}/wait. With timeout > 0 it asks once,
// with ?timeout=, and returns the record as it is then (State running when
// the time ran out first). With timeout 0 it polls again and again until
// the job has exited or ctx is done.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) (Job, error) {
	path := "/v1/jobs/" + url.PathEscape(id) + "/wait"
	if timeout > 0 {
		path += "?timeout=" + url.QueryEscape(timeout.String())
	}
	for {
		var j Job
		if err := c.do(ctx, http.MethodGet, path, nil, &j); err != nil {
			return j, err
		}
		if j.State == StateExited || timeout > 0 {
			return j, nil
		}
	}
}

// Signal sends POST /v1/jobs/{id}/signal.
func (c *Client) Signal(ctx context.Context, id string, req SignalRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/signal", req, nil)
}

// ServiceOp sends POST /v1/services/{name}/{op}; op is one of OpSignal,
// OpRestart, OpStop and OpStart, and sig (a name or number) is the signal
// of OpSignal, ignored otherwise.
func (c *Client) ServiceOp(ctx context.Context, name, op, sig string) error {
	var body any
	switch op {
	case OpSignal:
		body = SignalRequest{Signal: sig}
	case OpRestart, OpStop, OpStart:
	default:
		return fmt.Errorf("unknown service operation %q (want signal, restart, stop or start)", op)
	}
	return c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/"+op, body, nil)
}

// EventStream is the open answer of GET /v1/events. It is not safe for
// concurrent use.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// maxEventLine bounds one NDJSON line (a job record with a long argv).
const maxEventLine = 4 << 20

// Events opens GET /v1/events. Read it with Next; Close it, or cancel
// ctx, to stop.
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return nil, err
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	return &EventStream{body: resp.Body, sc: sc}, nil
}

// Next returns the next event. It returns io.EOF when tend ended the
// stream, and the context's error when the stream's ctx was cancelled.
func (s *EventStream) Next() (Event, error) {
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue // a keep-alive blank line
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return e, fmt.Errorf("bad event from tend: %w", err)
		}
		return e, nil
	}
	if err := s.sc.Err(); err != nil {
		return Event{}, fmt.Errorf("events: %w", err)
	}
	return Event{}, io.EOF
}

// Close ends the stream and releases its connection.
func (s *EventStream) Close() error { return s.body.Close() }
