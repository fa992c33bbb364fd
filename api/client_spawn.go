//go:build linux

package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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

// BoundJob is a job started with Bind: tend kills its process tree (reason
// disconnected) when the connection that started it closes before the job
// exits. Wait on it with Wait, which uses that same connection; Close
// drops the job.
type BoundJob struct {
	Job  Job // the 201 record; Wait updates it
	conn *jobConn
	mu   sync.Mutex // serializes Wait; guards Job and err
	err  error      // set once the connection can no longer be used
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
