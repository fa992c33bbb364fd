//go:build linux

package control

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// postJobs is the raw bytes of POST /v1/jobs with body.
func postJobs(body string) []byte {
	return fmt.Appendf(nil, "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// roundTrip sends raw on c, the fds with its first 16 bytes (the way a
// client passes stdio: with the first bytes of the request), and reads the
// answer, body included.
func roundTrip(t *testing.T, c *net.UnixConn, raw []byte, fds []int) *http.Response {
	t.Helper()
	first := raw
	if len(fds) > 0 {
		first = raw[:16]
		if _, _, err := c.WriteMsgUnix(first, unix.UnixRights(fds...), nil); err != nil {
			t.Fatalf("sendmsg: %v", err)
		}
	} else if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(raw[len(first):]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp
}

// pipes returns n pipes: the read ends and the raw write-end fds, both
// closed at the end of the test (the write ends by the test itself, earlier).
func pipes(t *testing.T, n int) (rs []*os.File, ws []*os.File, wfds []int) {
	t.Helper()
	for range n {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		rs, ws, wfds = append(rs, r), append(ws, w), append(wfds, int(w.Fd()))
	}
	return rs, ws, wfds
}

// expectEOF closes our write ends and checks that every read end reaches EOF:
// tend holds no copy of the write ends any more.
func expectEOF(t *testing.T, rs, ws []*os.File) {
	t.Helper()
	for _, w := range ws {
		w.Close()
	}
	for i, r := range rs {
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(r); err != nil {
			t.Errorf("pipe %d: %v after %q: tend still holds the write end", i, err, b)
		}
	}
}

func TestFDsPassedToSubmit(t *testing.T) {
	h := startServer(t, nil)
	for n := 1; n <= maxFDs; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rs, ws, wfds := pipes(t, n)
			if resp := roundTrip(t, h.dial(t), postJobs(`{"argv":["cat"]}`), wfds); resp.StatusCode != http.StatusCreated {
				t.Fatalf("POST /v1/jobs with %d fds = %d, want 201", n, resp.StatusCode)
			}
			req := <-h.jobs.submitted
			if len(req.Files) != n {
				t.Fatalf("Submit got %d files, want %d", len(req.Files), n)
			}
			for i, fd := range req.Files {
				checkCloexec(t, fd)
				unix.Write(fd, []byte(fmt.Sprintf("fd %d", i)))
				unix.Close(fd) // the backend owns them: it closes them after the start
			}
			expectEOFWith(t, rs, ws)
		})
	}
}

func expectEOFWith(t *testing.T, rs, ws []*os.File) {
	t.Helper()
	for _, w := range ws {
		w.Close()
	}
	for i, r := range rs {
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(r)
		if err != nil || string(b) != fmt.Sprintf("fd %d", i) {
			t.Errorf("pipe %d: read %q, %v; want %q and EOF", i, b, err, fmt.Sprintf("fd %d", i))
		}
	}
}

// checkCloexec checks a received fd is close-on-exec (MSG_CMSG_CLOEXEC).
func checkCloexec(t *testing.T, fd int) {
	t.Helper()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received fd flags %#x, %v: want FD_CLOEXEC", flags, err)
	}
}

// Too many fds, or a truncated control message: every fd is closed, the
// request gets 400 and the connection is closed.
func TestTooManyFDs(t *testing.T) {
	h := startServer(t, nil)
	for _, n := range []int{4, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rs, ws, wfds := pipes(t, n)
			c := h.dial(t)
			resp := roundTrip(t, c, postJobs(`{"argv":["cat"]}`), wfds)
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Errorf("POST /v1/jobs with %d fds = %d (close %v), want 400 and close", n, resp.StatusCode, resp.Close)
			}
			expectEOF(t, rs, ws)
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("connection after 400: read %v, want EOF", err)
			}
			select {
			case req := <-h.jobs.submitted:
				t.Errorf("Submit called with %d files", len(req.Files))
			default:
			}
		})
	}
}

// Fds passed with a request that does not claim them wait for the next
// POST /v1/jobs, and are closed when the connection closes.
func TestUnclaimedFDsClosed(t *testing.T) {
	h := startServer(t, nil)
	rs, ws, wfds := pipes(t, 2)
	c := h.dial(t)
	if resp := roundTrip(t, c, []byte("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"), wfds); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET with fds = %d, want 200", resp.StatusCode)
	}
	for _, w := range ws {
		w.Close()
	}
	rs[0].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := rs[0].Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Fatalf("pending fd: read %v, want a timeout (tend holds the write end)", err)
	}
	c.Close()
	expectEOF(t, rs, nil)
}

func TestPendingFDsClaimedByNextPost(t *testing.T) {
	h := startServer(t, nil)
	rs, ws, wfds := pipes(t, 1)
	c := h.dial(t)
	roundTrip(t, c, []byte("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"), wfds)
	if resp := roundTrip(t, c, postJobs(`{"argv":["cat"]}`), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d", resp.StatusCode)
	}
	req := <-h.jobs.submitted
	if len(req.Files) != 1 {
		t.Fatalf("Submit got %d files, want the 1 pending", len(req.Files))
	}
	unix.Write(req.Files[0], []byte("fd 0"))
	unix.Close(req.Files[0])
	expectEOFWith(t, rs, ws)
}

// A refused job request closes the fds it carried.
func TestRefusedJobClosesFDs(t *testing.T) {
	h := startServer(t, nil)
	for _, body := range []string{`{"argv":[]}`, `{"argv":["x"],"stdio":[1,2]}`, `{"argv":["full"]}`, `{`} {
		rs, ws, wfds := pipes(t, 1)
		if resp := roundTrip(t, h.dial(t), postJobs(body), wfds); resp.StatusCode/100 != 4 {
			t.Errorf("POST %s = %d, want 4xx", body, resp.StatusCode)
		}
		expectEOF(t, rs, ws)
	}
}

// More than maxPendingBatches unclaimed batches: all closed, 400.
func TestPendingBatchesCapped(t *testing.T) {
	h := startServer(t, nil)
	rs, ws, wfds := pipes(t, 3)
	c := h.dial(t)
	get := []byte("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n")
	for i := range 2 {
		if resp := roundTrip(t, c, get, wfds[i:i+1]); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %d = %d", i, resp.StatusCode)
		}
	}
	if resp := roundTrip(t, c, get, wfds[2:]); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("third batch = %d, want 400", resp.StatusCode)
	}
	expectEOF(t, rs, ws)
}
