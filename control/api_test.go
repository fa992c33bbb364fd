//go:build linux

package control

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

func TestStatus(t *testing.T) {
	h := startServer(t, nil)
	code, body := h.do(t, "GET", "/v1/status", "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/status = %d %s, want 200", code, body)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	want := api.Counters{Reaped: 10, OrphansReaped: 3, JobsStarted: 7, JobsRunning: 2, JobsQueued: 1, JobsKept: 4}
	if st.Version != "test" || st.PID != os.Getpid() || len(st.Services) != 2 || len(st.Jobs) != 2 || st.Counters != want {
		t.Errorf("GET /v1/status = %+v", st)
	}
	if c := <-h.jobs.callers; c.UID != 0 || c.PID != os.Getpid() {
		t.Errorf("List caller = %+v, want uid 0 and pid %d", c, os.Getpid())
	}
}

func TestHealth(t *testing.T) {
	h := startServer(t, nil)
	if code, body := h.do(t, "GET", "/v1/health", ""); code != http.StatusOK || !strings.Contains(body, `"healthy":true`) {
		t.Errorf("healthy: GET /v1/health = %d %s, want 200", code, body)
	}
	h.svcs.mu.Lock()
	h.svcs.healthy = false
	h.svcs.mu.Unlock()
	if code, body := h.do(t, "GET", "/v1/health", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, `"not_ready":["gateway"]`) {
		t.Errorf("unhealthy: GET /v1/health = %d %s, want 503", code, body)
	}
}

func TestServiceOps(t *testing.T) {
	h := startServer(t, nil)
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"/v1/services/gateway/signal", `{"signal":"HUP"}`, http.StatusNoContent},
		{"/v1/services/gateway/signal", ``, http.StatusBadRequest}, // never a default SIGTERM
		{"/v1/services/gateway/signal", `{}`, http.StatusBadRequest},
		{"/v1/services/worker/restart", ``, http.StatusAccepted},
		{"/v1/services/worker/stop", `{}`, http.StatusAccepted},
		{"/v1/services/worker/start", ` `, http.StatusAccepted},
		{"/v1/services/nope/start", ``, http.StatusNotFound},
		{"/v1/services/worker/signal", `{"signal":"SIGNOPE"}`, http.StatusBadRequest},
		{"/v1/services/worker/signal", `{"tree":true}`, http.StatusBadRequest},
		{"/v1/services/worker/start", `{"signal":"HUP"}`, http.StatusBadRequest},
	} {
		if code, body := h.do(t, "POST", tc.path, tc.body); code != tc.code {
			t.Errorf("POST %s %q = %d %s, want %d", tc.path, tc.body, code, body, tc.code)
		}
	}
	want := []string{"gateway signal hangup", "worker restart signal 0", "worker stop signal 0", "worker start signal 0"}
	if ops := h.svcs.calls(); !reflect.DeepEqual(ops, want) {
		t.Errorf("ServiceOp calls = %q, want %q", ops, want)
	}
}

func TestJobs(t *testing.T) {
	h := startServer(t, nil)
	code, body := h.do(t, "POST", "/v1/jobs", `{"argv":["sleep","9"],"labels":{"a":"b"},"bind":true,"timeout":"1m"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"id":"j-1"`) {
		t.Fatalf("POST /v1/jobs = %d %s, want 201", code, body)
	}
	req := <-h.jobs.submitted
	if req.Argv[1] != "9" || req.Labels["a"] != "b" || !req.Bind || req.Conn == 0 || req.Caller.UID != 0 || len(req.Files) != 0 {
		t.Errorf("Submit got %+v", req)
	}
	if code, body := h.do(t, "POST", "/v1/jobs", `{"argv":["full"]}`); code != http.StatusTooManyRequests || !strings.Contains(body, "queue full") {
		t.Errorf("POST /v1/jobs (full) = %d %s, want 429", code, body)
	}
	if code, body := h.do(t, "GET", "/v1/jobs?label=a=b&label=c=d%3De", ""); code != http.StatusOK || !strings.HasPrefix(body, `[{"id":"j-2"`) {
		t.Errorf("GET /v1/jobs = %d %s", code, body)
	}
	if got, want := <-h.jobs.labels, map[string]string{"a": "b", "c": "d=e"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List labels = %v, want %v", got, want)
	}
	if code, _ := h.do(t, "GET", "/v1/jobs/j-1", ""); code != http.StatusOK {
		t.Errorf("GET /v1/jobs/j-1 = %d, want 200", code)
	}
	if code, body := h.do(t, "GET", "/v1/jobs/j-9", ""); code != http.StatusNotFound || !strings.Contains(body, `{"error":"no job j-9"}`) {
		t.Errorf("GET /v1/jobs/j-9 = %d %s, want 404", code, body)
	}
	if code, _ := h.do(t, "POST", "/v1/jobs/j-1/signal", `{"signal":"KILL","tree":true}`); code != http.StatusNoContent {
		t.Errorf("POST signal = %d, want 204", code)
	}
	if code, _ := h.do(t, "POST", "/v1/jobs/j-1/signal", `{"kill":true}`); code != http.StatusAccepted {
		t.Errorf("POST signal kill = %d, want 202", code)
	}
	if a, b := <-h.jobs.signals, <-h.jobs.signals; a.Sig != unix.SIGKILL || !a.Tree || !b.Kill {
		t.Errorf("Signal got %+v and %+v", a, b)
	}
}

func TestWait(t *testing.T) {
	h := startServer(t, nil)
	start := time.Now()
	code, body := h.do(t, "GET", "/v1/jobs/j-1/wait?timeout=100ms", "")
	if code != http.StatusOK || !strings.Contains(body, `"state":"running"`) || time.Since(start) < 100*time.Millisecond {
		t.Errorf("wait with timeout = %d %s after %v, want 200 running after 100ms", code, body, time.Since(start))
	}
	if code, _ := h.do(t, "GET", "/v1/jobs/j-9/wait", ""); code != http.StatusNotFound {
		t.Errorf("wait j-9 = %d, want 404", code)
	}
	done := make(chan string)
	go func() {
		_, body := h.do(t, "GET", "/v1/jobs/j-1/wait", "")
		done <- body
	}()
	select {
	case body := <-done:
		t.Fatalf("wait without timeout returned early: %s", body)
	case <-time.After(200 * time.Millisecond):
	}
	close(h.jobs.release)
	if body := <-done; !strings.Contains(body, `"state":"exited"`) {
		t.Errorf("wait = %s, want exited", body)
	}
}

// A wait outlives every server timeout: it is cut only by the job's end.
func TestWaitOutlivesTimeouts(t *testing.T) {
	h := startServer(t, func(c *Config) {
		c.ReadHeaderTimeout, c.IdleTimeout, c.IOTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	})
	go func() {
		time.Sleep(300 * time.Millisecond)
		close(h.jobs.release)
	}()
	if code, body := h.do(t, "GET", "/v1/jobs/j-1/wait", ""); code != http.StatusOK || !strings.Contains(body, "exited") {
		t.Errorf("wait = %d %s, want 200 exited", code, body)
	}
}

// A bound connection is not closed by IdleTimeout: its job would die.
func TestBoundConnNotIdleClosed(t *testing.T) {
	h := startServer(t, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	c := h.dial(t)
	body := `{"argv":["x"],"bind":true}`
	resp := roundTrip(t, c, postJobs(body), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("bound POST = %d", resp.StatusCode)
	}
	id := (<-h.jobs.submitted).Conn
	select {
	case id := <-h.jobs.closed:
		t.Fatalf("bound connection %d closed while idle", id)
	case <-time.After(300 * time.Millisecond):
	}
	if resp := roundTrip(t, c, []byte("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("second request on bound conn = %d", resp.StatusCode)
	}
	c.Close()
	if got := waitFor(t, h.jobs.closed, "ConnClosed"); got != id {
		t.Errorf("ConnClosed(%d), want the Conn of the submit, %d", got, id)
	}
}

// Close ends long requests (a wait, an event stream) and returns promptly.
func TestCloseEndsLongRequests(t *testing.T) {
	h := startServer(t, nil)
	errs := make(chan error, 2)
	for _, path := range []string{"/v1/jobs/j-1/wait", "/v1/events"} {
		go func() {
			resp, err := h.client(t).Get("http://tend" + path)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	waitFor(t, h.hub.subscribed, "Subscribe")
	time.Sleep(50 * time.Millisecond) // let the wait reach Wait
	start := time.Now()
	if err := h.srv.Close(time.Now().Add(5 * time.Second)); err != nil || time.Since(start) > 2*time.Second {
		t.Errorf("Close = %v after %v", err, time.Since(start))
	}
	for range 2 {
		if err := waitFor(t, errs, "a long request to end"); err == nil {
			t.Errorf("a long request ended cleanly, want a broken connection")
		}
	}
	if _, err := os.Lstat(h.path); !os.IsNotExist(err) {
		t.Errorf("socket after Close: %v, want removed", err)
	}
}

func TestPanicIsA500(t *testing.T) {
	h := startServer(t, nil)
	if code, body := h.do(t, "POST", "/v1/services/boom/stop", ""); code != http.StatusInternalServerError || !strings.Contains(body, "internal error") {
		t.Errorf("panicking handler = %d %s, want 500", code, body)
	}
	if code, _ := h.do(t, "GET", "/v1/health", ""); code != http.StatusOK {
		t.Errorf("after a panic: GET /v1/health = %d, want 200", code)
	}
}
