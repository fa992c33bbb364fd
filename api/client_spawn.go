//go:build linux

package api

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
	"net/url"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MaxFiles is how many file descriptors one POST /v1/jobs may carry.
const MaxFiles = 3

// Spawn starts a job (POST /v1/jobs) that is not bound to any connection,
// and returns the 201 record (State queued or running). files, at most
// MaxFiles, become the job's fds named by req.Stdio (default 0, 1, 2 in
// order); they are sent with SCM_RIGHTS on a connection of their own, and
// stay the caller's to close. A command that cannot be executed is a
// *StatusError with Code 422 whose Msg names the path and the errno.
func (c *Client) Spawn(ctx context.Context, req JobRequest, files []*os.File) (Job, error) {
	if req.Bind {
		return Job{}, errors.New("spawn: a bound job needs SpawnBound")
	}
	if len(files) == 0 {
		var j Job
		err := c.do(ctx, http.MethodPost, "/v1/jobs", req, &j)
		return j, err
	}
	conn, j, err := c.spawnOnConn(ctx, req, files)
	if conn != nil {
		conn.close()
	}
	return j, err
}

// Run starts a job and waits for its exit in one round trip (POST
// /v1/jobs?wait=1 on the client's pooled connections), and returns its
// final record. The job is not bound: if ctx ends first, Run returns ctx's
// error and the job runs on. No files: for those, SpawnWaiting.
func (c *Client) Run(ctx context.Context, req JobRequest) (Job, error) {
	if req.Bind {
		return Job{}, errors.New("run: a bound job needs SpawnWaiting")
	}
	resp, err := c.send(ctx, http.MethodPost, "/v1/jobs?wait=1", req)
	if err != nil {
		return Job{}, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return Job{}, err
	}
	dec := json.NewDecoder(resp.Body)
	var first, final Job
	if err := dec.Decode(&first); err != nil {
		return Job{}, fmt.Errorf("bad answer from tend: %w", err)
	}
	switch err := dec.Decode(&final); {
	case errors.Is(err, io.EOF): // a tend without wait=1: poll
		return c.Wait(ctx, first.ID, 0)
	case err != nil:
		return first, fmt.Errorf("waiting for job %s: %w", first.ID, err)
	}
	return final, nil
}

// BoundJob is a job started with Bind: tend kills its process tree (reason
// disconnected) when the connection that started it closes before the job
// exits. Wait on it with Wait, which uses that same connection; Close
// drops the job.
type BoundJob struct {
	Job  Job // the 201 record; Wait updates it
	conn *jobConn
	mu   sync.Mutex // serializes Wait; guards Job and err
	err  error      // set once the connection can no longer be used
	// stream is the rest of a POST /v1/jobs?wait=1 answer: the final
	// record comes on it (SpawnWaiting); nil: Wait long-polls.
	stream *json.Decoder
	body   io.ReadCloser
}

// SpawnBound starts a job bound to a new connection (req.Bind is set) and
// returns it once tend has answered 201. files are passed as in Spawn.
func (c *Client) SpawnBound(ctx context.Context, req JobRequest, files []*os.File) (*BoundJob, error) {
	req.Bind = true
	conn, j, err := c.spawnOnConn(ctx, req, files)
	if err != nil {
		if conn != nil {
			conn.close()
		}
		return nil, err
	}
	return &BoundJob{Job: j, conn: conn}, nil
}

// SpawnWaiting is SpawnBound in one round trip: POST /v1/jobs?wait=1,
// whose answer carries the record at the start and, when the job has
// exited, its final one, which Wait reads. Against a tend that answers
// with the first record alone, Wait falls back to long-polling.
func (c *Client) SpawnWaiting(ctx context.Context, req JobRequest, files []*os.File) (*BoundJob, error) {
	req.Bind = true
	if len(files) > MaxFiles {
		return nil, fmt.Errorf("spawn: %d files passed, at most %d", len(files), MaxFiles)
	}
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	jc := &jobConn{conn: nc.(*net.UnixConn)}
	jc.br = bufio.NewReader(jc.conn)
	fail := func(err error) (*BoundJob, error) {
		jc.close()
		return nil, err
	}
	hreq, err := newRequest(ctx, http.MethodPost, "/v1/jobs?wait=1", req)
	if err != nil {
		return fail(err)
	}
	var buf bytes.Buffer
	if err := hreq.Write(&buf); err != nil {
		return fail(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = jc.conn.SetDeadline(longAgo) })
	defer stop()
	if err := writeWithFiles(jc.conn, buf.Bytes(), files); err != nil {
		return fail(fmt.Errorf("POST /v1/jobs: %w", err))
	}
	resp, err := http.ReadResponse(jc.br, hreq)
	if err != nil {
		return fail(fmt.Errorf("POST /v1/jobs: %w", err))
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return fail(err)
	}
	b := &BoundJob{conn: jc, body: resp.Body, stream: json.NewDecoder(resp.Body)}
	if err := b.stream.Decode(&b.Job); err != nil {
		resp.Body.Close()
		return fail(fmt.Errorf("bad answer from tend: %w", err))
	}
	return b, nil
}

// Wait long-polls the job's wait endpoint on the bound connection until
// the job has exited, and returns its final record. When ctx is done first
// it returns ctx's error and the BoundJob can only be closed (which kills
// the job if it is still running).
func (b *BoundJob) Wait(ctx context.Context) (Job, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.Job, b.err
	}
	if b.stream != nil {
		j, err := b.readFinal(ctx)
		switch {
		case err == nil:
			return j, nil
		case !errors.Is(err, io.EOF):
			b.err = err
			return b.Job, err
		}
		// An older tend answered the first record alone: poll.
	}
	path := "/v1/jobs/" + url.PathEscape(b.Job.ID) + "/wait"
	for {
		j, err := b.conn.exchange(ctx, http.MethodGet, path, nil, nil)
		var se *StatusError
		switch {
		case errors.As(err, &se):
			return b.Job, err // an answer: the connection is still in step
		case err != nil:
			b.err = err
			return b.Job, err
		}
		b.Job = j
		if j.State == StateExited {
			return j, nil
		}
	}
}

// readFinal reads the final record of a wait=1 answer; io.EOF when the
// answer ended without one (a tend without wait=1).
func (b *BoundJob) readFinal(ctx context.Context) (Job, error) {
	stop := context.AfterFunc(ctx, func() { _ = b.conn.conn.SetDeadline(longAgo) })
	defer stop()
	var j Job
	err := b.stream.Decode(&j)
	body := b.body
	b.stream, b.body = nil, nil
	if errors.Is(err, io.EOF) {
		body.Close() // drained: the connection is in step for a poll
		return j, io.EOF
	}
	body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return j, fmt.Errorf("waiting for job %s: %w", b.Job.ID, ctx.Err())
		}
		return j, fmt.Errorf("waiting for job %s: %w", b.Job.ID, err)
	}
	b.Job = j
	return j, nil
}

// Close closes the bound connection: if the job has not exited yet, tend
// kills it.
func (b *BoundJob) Close() error { return b.conn.close() }

// jobConn is a dedicated HTTP/1.1 connection: one request at a time, which
// the caller (BoundJob's mutex, or a single Spawn) guarantees.
type jobConn struct {
	conn *net.UnixConn
	br   *bufio.Reader
}

func (jc *jobConn) close() error { return jc.conn.Close() }

// spawnOnConn dials a connection and sends POST /v1/jobs on it with files.
// It returns the connection whenever it was opened, even with an error.
func (c *Client) spawnOnConn(ctx context.Context, req JobRequest, files []*os.File) (*jobConn, Job, error) {
	if len(files) > MaxFiles {
		return nil, Job{}, fmt.Errorf("spawn: %d files passed, at most %d", len(files), MaxFiles)
	}
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, Job{}, err
	}
	jc := &jobConn{conn: nc.(*net.UnixConn)}
	jc.br = bufio.NewReader(jc.conn)
	j, err := jc.exchange(ctx, http.MethodPost, "/v1/jobs", req, files)
	return jc, j, err
}

// longAgo is a deadline in the past: setting it makes pending I/O fail at
// once, which is how a cancelled context interrupts a raw connection.
var longAgo = time.Unix(1, 0)

// exchange sends one request (with files, if any, on its first bytes) and
// reads the Job the answer carries.
func (jc *jobConn) exchange(ctx context.Context, method, path string, in any, files []*os.File) (Job, error) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = jc.conn.SetDeadline(longAgo)
		close(fired)
	})
	j, err := jc.roundTrip(ctx, method, path, in, files)
	if !stop() {
		<-fired // the deadline is set: report the context, not an i/o timeout
		if err == nil {
			_ = jc.conn.SetDeadline(time.Time{}) // done before the cancel: keep the connection usable
		} else {
			err = fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
	}
	return j, err
}

// roundTrip writes the request and reads the answer on the connection.
func (jc *jobConn) roundTrip(ctx context.Context, method, path string, in any, files []*os.File) (Job, error) {
	req, err := newRequest(ctx, method, path, in)
	if err != nil {
		return Job{}, err
	}
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return Job{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if err := writeWithFiles(jc.conn, buf.Bytes(), files); err != nil {
		return Job{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	resp, err := http.ReadResponse(jc.br, req)
	if err != nil {
		return Job{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close() // drains the body, so the next request starts in step
	if err := checkStatus(resp); err != nil {
		return Job{}, err
	}
	var j Job
	err = decodeBody(resp.Body, &j)
	return j, err
}

// writeWithFiles writes b, attaching files to its first bytes: tend takes
// the fds that arrive with the first bytes of a request as that request's
// (DESIGN.md §5). A stream socket may accept only part of b in one
// sendmsg; the fds travel with that part and the rest follows plainly.
func writeWithFiles(conn *net.UnixConn, b []byte, files []*os.File) error {
	if len(files) == 0 {
		_, err := conn.Write(b)
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fd, err := rawFd(f)
		if err != nil {
			return fmt.Errorf("pass %s: %w", f.Name(), err)
		}
		fds[i] = fd
	}
	n, _, err := conn.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	runtime.KeepAlive(files) // the fds must stay open until sendmsg has copied them
	if err != nil {
		return err
	}
	_, err = conn.Write(b[n:])
	return err
}

// rawFd returns f's descriptor without (*os.File).Fd's side effect of
// switching a non-blocking file to blocking mode, which would change the
// file description that other processes share with us.
func rawFd(f *os.File) (int, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := sc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}
