//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// This file is the harness of the jobs tests (jobs_*_test.go): a tend that
// serves the control API as PID 1 of a fresh PID namespace, with its socket
// in a directory the test process, the jobs and unprivileged users all reach;
// the CLI clients run from the test process; raw HTTP on the socket.

// jobsWait bounds one API call, one client command or one awaited event.
const jobsWait = 30 * time.Second

// jobsTend is a tend serving the control API.
type jobsTend struct {
	*tendRun
	dir    string // 0755, removed at the end: the socket and the tests' files
	sock   string
	client *api.Client
}

// startJobsTend starts `tend -v [--config FILE] --socket DIR/s -- ARGV` as
// PID 1 (ARGV defaults to sleep 3600; the test's end kills the namespace)
// and waits until the API answers. An empty config is init mode.
func startJobsTend(t *testing.T, o opts, config string, argv ...string) *jobsTend {
	t.Helper()
	o.pid1 = true
	dir := hDir(t)
	jt := &jobsTend{dir: dir, sock: filepath.Join(dir, "s")}
	args := []string{"-vv"}
	if config != "" {
		args = append(args, "--config", svConfig(t, dir, config))
	}
	if len(argv) == 0 {
		argv = []string{"sleep", "3600"}
	}
	args = append(append(args, "--socket", jt.sock, "--"), argv...)
	jt.tendRun = startTend(t, o, args...)
	jt.client = api.NewClient(jt.sock)
	t.Cleanup(jt.client.CloseIdle)
	svPoll(t, jt.tendRun, jobsWait, "control API up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := jt.client.Status(ctx)
		return err == nil || !jt.running()
	})
	if !jt.running() {
		t.Fatalf("tend exited early: %v; stderr:\n%s", jt.cmd.ProcessState, jt.stderrNow())
	}
	return jt
}

// ctx is a context that ends after jobsWait or with the test.
func jobsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), jobsWait)
	t.Cleanup(cancel)
	return ctx
}

// spawn submits an unbound job through the Go client; it fails the test
// unless tend answers 201.
func (jt *jobsTend) spawn(t *testing.T, req api.JobRequest, files ...*os.File) api.Job {
	t.Helper()
	j, err := jt.client.Spawn(jobsCtx(t), req, files)
	if err != nil {
		t.Fatalf("Spawn(%q): %v; tend's stderr:\n%s", req.Argv, err, jt.stderrNow())
	}
	return j
}

// waitJob waits for job id to exit and returns its record.
func (jt *jobsTend) waitJob(t *testing.T, id string) api.Job {
	t.Helper()
	j, err := jt.client.Wait(jobsCtx(t), id, 0)
	if err != nil {
		t.Fatalf("Wait(%s): %v; tend's stderr:\n%s", id, err, jt.stderrNow())
	}
	return j
}

// jobsPollExited polls job id (GET, which binds nothing) until it has
// exited, and returns its record.
func jobsPollExited(t *testing.T, jt *jobsTend, id string) api.Job {
	t.Helper()
	var j api.Job
	svPoll(t, jt.tendRun, jobsWait, "job "+id+" exited", func() bool {
		var err error
		if j, err = jt.client.Job(jobsCtx(t), id); err != nil {
			t.Fatalf("Job(%s): %v", id, err)
		}
		return j.State == api.StateExited
	})
	return j
}

// expectHealthy fails unless tend still runs and answers status and
// health, with no job left running or queued.
func (jt *jobsTend) expectHealthy(t *testing.T) {
	t.Helper()
	if !jt.running() {
		t.Fatalf("tend exited: %v; stderr:\n%s", jt.cmd.ProcessState, jt.stderrAll())
	}
	ctx := jobsCtx(t)
	if h, err := jt.client.Health(ctx); err != nil || !h.Healthy {
		t.Errorf("Health() = %+v, %v; want healthy; tend's stderr:\n%s", h, err, jt.stderrNow())
	}
	var st api.Status
	svPoll(t, jt.tendRun, jobsWait, "no job running or queued", func() bool {
		var err error
		st, err = jt.client.Status(ctx)
		if err != nil {
			t.Fatalf("Status(): %v; tend's stderr:\n%s", err, jt.stderrNow())
		}
		return st.Counters.JobsRunning == 0 && st.Counters.JobsQueued == 0
	})
	if st.PID != 1 {
		t.Errorf("status pid = %d, want 1", st.PID)
	}
}

// jobsRes is how a client command ended.
type jobsRes struct {
	stdout, stderr string
	ws             syscall.WaitStatus
}

// code is the exit code a shell reports (128+N for signal N).
func (r jobsRes) code() int {
	if r.ws.Signaled() {
		return 128 + int(r.ws.Signal())
	}
	return r.ws.ExitStatus()
}

// tendCmd is `tend ARGS...` run from the test process against jt's socket.
func (jt *jobsTend) tendCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(tendBin, args...)
	cmd.Env = childEnv([]string{"TEND_SOCKET=" + jt.sock})
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// jobsRun runs cmd to its end with a deadline (then it is killed and the
// test fails) and returns its output and wait status.
func jobsRun(t *testing.T, cmd *exec.Cmd) jobsRes {
	t.Helper()
	return jobsStart(t, cmd)(t)
}

// jobsStart starts cmd (stdout collected unless set, stderr collected) and
// returns the function that waits, with a deadline, for its end.
func jobsStart(t *testing.T, cmd *exec.Cmd) func(*testing.T) jobsRes {
	t.Helper()
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", cmd.Args, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the status is in cmd.ProcessState
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return func(t *testing.T) jobsRes {
		t.Helper()
		select {
		case <-done:
		case <-time.After(jobsWait):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%q still running after %v; stdout %q, stderr %q", cmd.Args, jobsWait, out.String(), errb.String())
		}
		return jobsRes{stdout: out.String(), stderr: errb.String(), ws: cmd.ProcessState.Sys().(syscall.WaitStatus)}
	}
}

// jobsReply is an answer read off a raw connection.
type jobsReply struct {
	code int
	msg  string // the "error" field of the JSON body
	body string
}

// jobsRaw sends the bytes of one request on a new connection, with fds
// attached to its first bytes when there are any, and reads one answer.
func jobsRaw(t *testing.T, sock, request string, fds ...int) jobsReply {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(jobsWait))
	if len(fds) > 0 {
		_, _, err = c.WriteMsgUnix([]byte(request), unix.UnixRights(fds...), nil)
	} else {
		_, err = io.WriteString(c, request)
	}
	if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write request: %v", err)
	}
	return jobsReadReply(t, bufio.NewReader(c))
}

// jobsReadReply reads one HTTP answer and its JSON error message, if any.
func jobsReadReply(t *testing.T, br *bufio.Reader) jobsReply {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := jobsReply{code: resp.StatusCode, body: string(b)}
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%d answer has Content-Type %q, want application/json; body %q", r.code, ct, b)
		}
		var e api.Error
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			t.Errorf("%d answer body %q: not a JSON error message (%v)", r.code, b, err)
		}
		r.msg = e.Error
	}
	return r
}

// post is the bytes of POST path with a JSON body.
func jobsPost(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		path, len(body), body)
}

// get is the bytes of GET path.
func jobsGet(path string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: tend\r\nConnection: close\r\n\r\n", path)
}

// statusCode is the HTTP status of a client error, 0 for nil, -1 for an
// error that is not an answer.
func jobsCode(err error) int {
	var se *api.StatusError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &se):
		return se.Code
	}
	return -1
}

// jobsLines delivers the lines of r on a channel, closed at EOF.
func jobsLines(r io.Reader) <-chan string {
	c := make(chan string, 1024)
	go func() {
		defer close(c)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c <- sc.Text()
		}
	}()
	return c
}

// jobsNextLine returns the next line from c; it fails the test at EOF or after
// jobsWait.
func jobsNextLine(t *testing.T, c <-chan string, what string) string {
	t.Helper()
	select {
	case l, ok := <-c:
		if !ok {
			t.Fatalf("%s: EOF, want a line", what)
		}
		return l
	case <-time.After(jobsWait):
		t.Fatalf("%s: no line within %v", what, jobsWait)
	}
	return ""
}

// trimmed is s without surrounding white space, for one-line outputs.
func jobsTrim(s string) string { return strings.TrimSpace(s) }
