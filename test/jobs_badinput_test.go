//go:build linux

package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// What bad input gets (DESIGN.md §6): a 4xx with a JSON message, and no harm
// to a job, a service or tend.

// TestJobsBadInput sends malformed, mistyped, oversized and misaddressed
// requests while a job runs: each gets its 4xx and a JSON message, the job
// ends with its exact code afterwards, and tend keeps serving.
func TestJobsBadInput(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	in, inW := mustPipe(t)
	defer inW.Close()
	in.Fd() // blocking: see TestJobsPassedFdsBlocking
	long := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "read x; exit 33"}, Stdio: []int{0}}, in)
	in.Close()
	id := long.ID
	cases := []struct {
		name, req string
		code      int
		msg       string // a word the message must contain
	}{
		{"malformed", jobsPost("/v1/jobs", `{"argv": ["true"`), 400, "JSON"},
		{"not JSON", jobsPost("/v1/jobs", `argv=true`), 400, "malformed"},
		{"empty body", jobsPost("/v1/jobs", ``), 400, "empty"},
		{"argv a string", jobsPost("/v1/jobs", `{"argv": "true"}`), 400, "argv"},
		{"argv of numbers", jobsPost("/v1/jobs", `{"argv": [1, 2]}`), 400, "argv"},
		{"timeout a number", jobsPost("/v1/jobs", `{"argv": ["true"], "timeout": 5}`), 400, "timeout"},
		{"bind a string", jobsPost("/v1/jobs", `{"argv": ["true"], "bind": "yes"}`), 400, "bind"},
		{"body an array", jobsPost("/v1/jobs", `[]`), 400, "body"},
		{"empty argv", jobsPost("/v1/jobs", `{"argv": []}`), 400, "argv"},
		{"no argv", jobsPost("/v1/jobs", `{}`), 400, "argv"},
		{"empty argv[0]", jobsPost("/v1/jobs", `{"argv": [""]}`), 400, "argv"},
		{"unknown field", jobsPost("/v1/jobs", `{"argv": ["true"], "bogus": 1}`), 400, "bogus"},
		{"trailing data", jobsPost("/v1/jobs", `{"argv": ["true"]} {}`), 400, "trailing"},
		{"bad timeout", jobsPost("/v1/jobs", `{"argv": ["true"], "timeout": "soon"}`), 400, "timeout"},
		{"negative timeout", jobsPost("/v1/jobs", `{"argv": ["true"], "timeout": "-1s"}`), 400, "timeout"},
		{"relative dir", jobsPost("/v1/jobs", `{"argv": ["true"], "dir": "tmp"}`), 400, "dir"},
		{"stdio without fds", jobsPost("/v1/jobs", `{"argv": ["true"], "stdio": [1]}`), 400, "stdio"},
		{"unknown user", jobsPost("/v1/jobs", `{"argv": ["true"], "user": "no-such-user-xyz"}`), 400, "no-such-user-xyz"},
		{"missing command", jobsPost("/v1/jobs", `{"argv": ["/no/such/cmd"]}`), 422, "/no/such/cmd"},
		{"bad signal", jobsPost("/v1/jobs/"+id+"/signal", `{"signal": "SIGFOO"}`), 400, "SIGFOO"},
		{"signal a number too big", jobsPost("/v1/jobs/"+id+"/signal", `{"signal": "99"}`), 400, "99"},
		{"signal 0", jobsPost("/v1/jobs/"+id+"/signal", `{"signal": "0"}`), 400, "out of range"},
		{"signal unknown job", jobsPost("/v1/jobs/j-00000000/signal", `{}`), 404, "j-00000000"},
		{"get unknown job", jobsGet("/v1/jobs/j-00000000"), 404, "j-00000000"},
		{"bad wait timeout", jobsGet("/v1/jobs/" + id + "/wait?timeout=xyz"), 400, "timeout"},
		{"bad label query", jobsGet("/v1/jobs?label=novalue"), 400, "label"},
		{"unknown endpoint", jobsGet("/v1/nope"), 404, "/v1/nope"},
		{"unknown version", jobsGet("/v2/status"), 404, "/v2/status"},
		{"wrong method", "DELETE /v1/jobs HTTP/1.1\r\nHost: tend\r\nConnection: close\r\n\r\n", 405, "DELETE"},
		{"GET with a body", "GET /v1/status HTTP/1.1\r\nHost: tend\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 400, "body"},
		{"unknown service op", jobsPost("/v1/services/main/explode", ``), 404, "explode"},
		{"unknown service", jobsPost("/v1/services/nope/restart", ``), 404, "nope"},
		{"service signal with tree", jobsPost("/v1/services/main/signal", `{"signal": "HUP", "tree": true}`), 400, "tree"},
		{"too large, by length", fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: %d\r\n\r\n", 2<<20), 413, "limit"},
	}
	for _, c := range cases {
		r := jobsRaw(t, jt.sock, c.req)
		if r.code != c.code || !strings.Contains(r.msg, c.msg) {
			t.Errorf("%s: %d %q; want %d with %q", c.name, r.code, r.msg, c.code, c.msg)
		}
	}
	jobsHugeBodies(t, jt)
	jobsTooManyFds(t, jt)
	// Nothing was harmed: the job runs, tend serves, the job ends as it says.
	if j, err := jt.client.Job(jobsCtx(t), id); err != nil || j.State != api.StateRunning {
		t.Fatalf("Job(%s) after the bad input: %s (code %v), %v; want running", id, j.State, jobsDeref(j.ExitCode), err)
	}
	inW.Close()
	if j := jt.waitJob(t, id); jobsExact(j, 33) != nil {
		t.Error(jobsExact(j, 33))
	}
	jt.expectHealthy(t)
	if st, err := jt.client.Status(jobsCtx(t)); err != nil || st.Counters.JobsStarted != 1 {
		t.Errorf("Status(): %+v, %v; want exactly 1 job ever started", st.Counters, err)
	}
}

// jobsHugeBodies sends 2 MiB of JSON, with a Content-Length and chunked:
// 413 either way, the writer never blocked forever.
func jobsHugeBodies(t *testing.T, jt *jobsTend) {
	t.Helper()
	body := `{"argv": ["true"], "labels": {"k": "` + strings.Repeat("x", 2<<20) + `"}}`
	chunked := fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	for name, req := range map[string]string{"length": jobsPost("/v1/jobs", body), "chunked": chunked} {
		c, err := net.Dial("unix", jt.sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(jobsWait))
		go func() { _, _ = io.WriteString(c, req) }() // fails once tend closes: fine
		r := jobsReadReply(t, bufio.NewReader(c))
		c.Close()
		if r.code != http.StatusRequestEntityTooLarge {
			t.Errorf("2 MiB body (%s): %d %q; want 413", name, r.code, r.msg)
		}
	}
}

// jobsTooManyFds passes 4 and then 8 fds with a POST /v1/jobs: 400, and
// tend closes every one of them (the pipe's write ends: EOF).
func jobsTooManyFds(t *testing.T, jt *jobsTend) {
	t.Helper()
	for _, n := range []int{4, 8} {
		r, w := mustPipe(t)
		fds := make([]int, n)
		for i := range fds {
			fd, err := unix.Dup(int(w.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			fds[i] = fd
		}
		reply := jobsRaw(t, jt.sock, jobsPost("/v1/jobs", `{"argv": ["sh", "-c", "echo leaked"]}`), fds...)
		for _, fd := range fds {
			unix.Close(fd)
		}
		w.Close()
		if reply.code != http.StatusBadRequest || !strings.Contains(reply.msg, "fd") {
			t.Errorf("%d fds passed: %d %q; want 400 naming the fds", n, reply.code, reply.msg)
		}
		if out := readAllWithin(t, r); out != "" {
			t.Errorf("%d fds passed: a job wrote %q to them", n, out)
		}
		r.Close()
	}
}

// TestJobsSilentClient: a client that connects and sends nothing, or half
// a header, is closed by the server's header timeout (10s); meanwhile the
// API serves others.
func TestJobsSilentClient(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	t0 := time.Now()
	var conns []net.Conn
	for _, first := range []string{"", "GET /v1/sta"} {
		c, err := net.Dial("unix", jt.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, first); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i := range 5 {
		j := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", fmt.Sprintf("exit %d", i)}})
		if j := jt.waitJob(t, j.ID); jobsExact(j, i) != nil {
			t.Error(jobsExact(j, i))
		}
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(jobsWait))
		b, err := io.ReadAll(c)
		took := time.Since(t0)
		if err != nil || took < 9*time.Second {
			t.Errorf("silent client %d: read %q, %v after %v; want EOF after the 10s header timeout", i, b, err, took)
		}
	}
	jt.expectHealthy(t)
}

// TestJobsAbandonedRequests: clients that leave without reading their
// answer make tend write to a closed socket. That must not raise a SIGPIPE
// that tend catches and forwards: the main process (a helper that reports
// its signals) must get nothing but the sentinel SIGUSR1 sent afterwards.
func TestJobsAbandonedRequests(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{stdin: true}, "", helperArgv("sigreport", "main", "0")...)
	jt.expect("main ready")
	for i := range 10 {
		// A bound job, then a wait on it, then away: tend ends the
		// abandoned wait (writing its answer to nobody), then kills the
		// job because its connection closed.
		c, err := net.Dial("unix", jt.sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(jobsWait))
		br := bufio.NewReader(c)
		if _, err := io.WriteString(c, strings.Replace(jobsPost("/v1/jobs", `{"argv": ["sleep", "100"], "bind": true}`), "Connection: close\r\n", "", 1)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("bound spawn %d: %v, %v", i, resp, err)
		}
		var j api.Job
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, jobsGet("/v1/jobs/"+j.ID+"/wait")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		// Polled: a wait would bind its own connection to the job (see
		// TestJobsWaiterDoesNotHoldBoundJob).
		if j := jobsPollExited(t, jt, j.ID); j.Reason != api.ReasonDisconnected {
			t.Errorf("abandoned bound job: reason %q, want disconnected", j.Reason)
		}
		// An event stream left at once, with events still to come.
		es, err := jt.client.Events(jobsCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		es.Close()
		jt.waitJob(t, jt.spawn(t, api.JobRequest{Argv: []string{"true"}}).ID)
	}
	jt.signal(unix.SIGUSR1)
	if l := jt.next(); l != "main sig 10" {
		t.Errorf("main process got %q before the sentinel SIGUSR1: tend forwarded a SIGPIPE of its own writes", l)
	}
	jt.expectHealthy(t)
	jt.closeStdin()
	jt.expect("main bye")
	jt.expectExit(0)
}
