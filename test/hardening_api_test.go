//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// Abuse of the control socket: tend as PID 1 keeps serving real requests,
// and its memory stays bounded, whatever a client sends.

const (
	hMaxRssAnonKB = 16 << 10 // 16 MiB
	hMaxFDs       = 40
)

// hAlive fails unless tend still runs a job to its exact exit status.
func hAlive(t *testing.T, r *tendRun, c *api.Client) {
	t.Helper()
	if !r.running() {
		t.Fatalf("tend exited: %v; stderr:\n%s", r.cmd.ProcessState, r.stderrNow())
	}
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", "exit 42"}}, nil)
	if err != nil {
		t.Fatalf("spawn after the abuse: %v", err)
	}
	if j = hWaitJob(t, c, j.ID); j.ExitCode == nil || *j.ExitCode != 42 {
		t.Fatalf("job after the abuse: %+v, want exit 42", j)
	}
}

func TestHardeningGarbageRequests(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	rng := rand.New(rand.NewPCG(1, 2))
	sends := [][]byte{
		[]byte("\x00\x01\x02\xff\xfe garbage\r\n\r\n"),
		[]byte("GET / HTTP/9.9\r\n\r\n"),
		[]byte("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: -1\r\n\r\n"),
		[]byte("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
		[]byte("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n"),
		[]byte("GET /v1/jobs/../../etc/passwd HTTP/1.1\r\nHost: tend\r\n\r\n"),
		[]byte("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: 12\r\n\r\n{\"argv\":[1]}"),
	}
	for range 20 {
		b := make([]byte, 1+rng.IntN(4096))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		sends = append(sends, b)
	}
	for i, b := range sends {
		conn := hDial(t, sock)
		conn.Write(b)
		conn.CloseWrite()
		conn.SetReadDeadline(time.Now().Add(hWait))
		resp, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("send %d: %v after %q", i, err, resp)
		}
		ok := bytes.HasPrefix(resp, []byte("HTTP/1.1 4")) || bytes.HasPrefix(resp, []byte("HTTP/1.1 3")) ||
			bytes.HasPrefix(resp, []byte("HTTP/1.1 505")) // net/http's answer to HTTP/9.9
		if len(resp) > 0 && !ok {
			t.Errorf("send %d %q: answer %q, want a 4xx (or a redirect of an unclean path)", i, b[:min(len(b), 60)], resp[:min(len(resp), 80)])
		}
		conn.Close()
	}
	hAlive(t, r, c)
}

// A request cut anywhere, the connection then closed: nothing is started.
func TestHardeningTruncatedRequests(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	body := `{"argv":["sh","-c","echo started > /dev/null; exit 9"],"labels":{"cut":"yes"}}`
	full := fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for cut := 1; cut < len(full); cut += 7 {
		conn := hDial(t, sock)
		conn.Write([]byte(full[:cut]))
		conn.Close()
	}
	hAlive(t, r, c)
	if js, err := c.Jobs(hCtx(t), map[string]string{"cut": "yes"}); err != nil || len(js) != 0 {
		t.Errorf("jobs of truncated requests: %v, %v; want none", js, err)
	}
}

// 100 requests in one write on one connection: 100 answers, in order.
func TestHardeningPipelined(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	var b bytes.Buffer
	for i := range 100 {
		if i%2 == 0 {
			b.WriteString("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n")
		} else {
			b.WriteString("GET /v1/jobs/j-nope HTTP/1.1\r\nHost: tend\r\n\r\n")
		}
	}
	conn := hDial(t, sock)
	go conn.Write(b.Bytes())
	codes := hReadResponses(t, conn, 100)
	for i, code := range codes {
		want := http.StatusOK
		if i%2 == 1 {
			want = http.StatusNotFound
		}
		if code != want {
			t.Fatalf("pipelined answer %d = %d, want %d", i, code, want)
		}
	}
	hAlive(t, r, c)
}

// A body declared at 1 GiB is refused (413) before it is read: stalled
// after the headers, or streamed as fast as tend will take it, tend's
// RssAnon does not grow by more than a few MiB.
func TestHardeningOversizedBody(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	base := hRssAnon(t, r)
	head := fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<30)
	for _, stream := range []bool{false, true} {
		conn := hDial(t, sock)
		conn.Write([]byte(head))
		var sent atomic.Int64
		done := make(chan struct{})
		if stream {
			go func() {
				defer close(done)
				chunk := bytes.Repeat([]byte("a"), 1<<20)
				conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				for sent.Load() < 1<<30 {
					n, err := conn.Write(chunk)
					sent.Add(int64(n))
					if err != nil {
						return // tend closed the connection
					}
				}
			}()
		} else {
			close(done)
		}
		codes := hReadResponses(t, conn, 1)
		if codes[0] != http.StatusRequestEntityTooLarge {
			t.Errorf("1 GiB body (stream %v) = %d, want 413", stream, codes[0])
		}
		select {
		case <-done:
		case <-time.After(hWait):
			t.Fatalf("tend still reading the 1 GiB body after %v (%d bytes)", hWait, sent.Load())
		}
		conn.Close()
		if rss := hRssAnon(t, r); rss > base+4<<10 || rss > hMaxRssAnonKB {
			t.Errorf("RssAnon %d KiB after a 1 GiB body (stream %v, %d bytes sent), was %d", rss, stream, sent.Load(), base)
		}
		t.Logf("1 GiB body, stream %v: 413 after %d bytes sent; RssAnon %d KiB (before %d)", stream, sent.Load(), hRssAnon(t, r), base)
	}
	hAlive(t, r, c)
}

// hPipes returns n pipes' read ends and write-end fds; all closed with the test.
func hPipes(t *testing.T, n int) ([]*os.File, []*os.File) {
	t.Helper()
	var rs, ws []*os.File
	for range n {
		pr, pw := mustPipe(t)
		t.Cleanup(func() { pr.Close(); pw.Close() })
		rs, ws = append(rs, pr), append(ws, pw)
	}
	return rs, ws
}

// More than 3 fds, or more than fit (a truncated control message): 400,
// the connection closed, and tend keeps no copy of any fd.
func TestHardeningTooManyFDs(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	before := hFDs(t, r)
	body := `{"argv":["true"]}`
	req := fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for _, n := range []int{4, 5, 64} {
		rs, ws := hPipes(t, n)
		fds := make([]int, n)
		for i, w := range ws {
			fds[i] = int(w.Fd())
		}
		conn := hDial(t, sock)
		if _, _, err := conn.WriteMsgUnix([]byte(req), unix.UnixRights(fds...), nil); err != nil {
			t.Fatalf("sendmsg with %d fds: %v", n, err)
		}
		if codes := hReadResponses(t, conn, 1); codes[0] != http.StatusBadRequest {
			t.Errorf("POST /v1/jobs with %d fds = %d, want 400", n, codes[0])
		}
		for _, w := range ws {
			w.Close()
		}
		for i, pr := range rs {
			pr.SetReadDeadline(time.Now().Add(hWait))
			if _, err := io.ReadAll(pr); err != nil {
				t.Errorf("%d fds: pipe %d: %v: tend kept its write end", n, i, err)
			}
		}
		conn.Close()
	}
	svPoll(t, r, hWait, "tend's fds back to their number", func() bool { return hFDs(t, r) <= before })
	hAlive(t, r, c)
}

// 500 idle connections held open: real requests still succeed, and the
// idle ones cost tend no more than their fds. (They are root's: the
// per-uid limit is raised above them.)
func TestHardeningIdleConnections(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	body := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\nmax_connections_per_uid = 600\n"
	r, sock := hConfig(t, opts{}, dir, body, "--", "sleep", "100000")
	c := hClient(t, sock)
	base := hRssAnon(t, r)
	var idle []net.Conn
	for i := range 500 {
		conn := hDial(t, sock)
		if i%2 == 1 {
			conn.Write([]byte("GET /v1/hea")) // half a request line
		}
		idle = append(idle, conn)
	}
	for range 20 {
		hAlive(t, r, c)
	}
	fds, rss := hFDs(t, r), hRssAnon(t, r)
	t.Logf("500 idle connections: tend has %d fds, RssAnon %d KiB (before %d)", fds, rss, base)
	if fds < 500 {
		t.Errorf("tend has %d fds with 500 connections open: they were not accepted", fds)
	}
	if rss > hMaxRssAnonKB {
		t.Errorf("RssAnon %d KiB with 500 idle connections", rss)
	}
	for _, conn := range idle {
		conn.Close()
	}
	svPoll(t, r, hWait, "tend's fds after the idle connections closed", func() bool { return hFDs(t, r) < hMaxFDs })
}

// A subscriber to the event stream that never reads: tend keeps serving,
// its memory stays bounded, and the stream is cut.
func TestHardeningStalledEventReader(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	c := hClient(t, sock)
	conn := hDial(t, sock)
	conn.Write([]byte("GET /v1/events HTTP/1.1\r\nHost: tend\r\n\r\n"))
	// The smallest receive buffer: the stream backs up at once.
	raw, _ := conn.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1) })
	base := hRssAnon(t, r)
	jobs := 1500
	ctx := hCtx(t)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < jobs; i += 8 {
				code := i % 256
				j, err := c.Spawn(ctx, api.JobRequest{Track: "group", Argv: []string{"sh", "-c", fmt.Sprintf("exit %d", code)}, Labels: map[string]string{"x": strings.Repeat("y", 200)}}, nil)
				if err == nil {
					j, err = c.Wait(ctx, j.ID, 0)
				}
				if err != nil || j.ExitCode == nil || *j.ExitCode != code {
					failed.Add(1)
					t.Errorf("job %d: %+v, %v; want exit %d", i, j, err, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	rss := hRssAnon(t, r)
	t.Logf("%d jobs with a stalled event reader: RssAnon %d KiB (before %d), %d fds", jobs, rss, base, hFDs(t, r))
	if rss > hMaxRssAnonKB {
		t.Errorf("RssAnon %d KiB with a stalled event reader", rss)
	}
	// The stream has ended: the subscriber that fell behind was dropped
	// (the chunked body ends) or its write timed out (the connection is
	// cut). Either way reading it now ends, within tend's 10s write timeout.
	conn.SetReadDeadline(time.Now().Add(hWait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the event stream's answer: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("the stalled event stream did not end: %v after %d bytes", err, n)
	}
	hAlive(t, r, c)
}

// 10,000 jobs from 16 clients, each with its own exit status: every status
// exact; afterwards tend's RssAnon and open fds are small.
func TestHardeningTenThousandJobs(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{}, hDir(t), nil)
	const jobs, clients = 10000, 16
	start := time.Now()
	var wg sync.WaitGroup
	var peakRss atomic.Int64
	stop := make(chan struct{})
	go func() { // sample RssAnon during the run
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid())); err == nil {
					for _, l := range strings.Split(string(b), "\n") {
						var kb int64
						if _, err := fmt.Sscanf(l, "RssAnon: %d kB", &kb); err == nil && kb > peakRss.Load() {
							peakRss.Store(kb)
						}
					}
				}
			}
		}
	}()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := api.NewClient(sock) // one client, one connection pool, each
			defer c.CloseIdle()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			for i := w; i < jobs; i += clients {
				code := (i * 7) % 256
				j, err := c.Spawn(ctx, api.JobRequest{Track: "group", Argv: []string{"sh", "-c", fmt.Sprintf("exit %d", code)}}, nil)
				if err == nil {
					j, err = c.Wait(ctx, j.ID, 0)
				}
				if err != nil || j.ExitCode == nil || *j.ExitCode != code || j.Reason != api.ReasonExited {
					t.Errorf("job %d: %+v, %v; want exit %d", i, j, err, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	elapsed := time.Since(start)
	rss, fds := hRssAnon(t, r), hFDs(t, r) // before GET /v1/status lists 10,000 records
	st, err := hClient(t, sock).Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Counters.JobsStarted != jobs {
		t.Errorf("jobs_started = %d, want %d", st.Counters.JobsStarted, jobs)
	}
	t.Logf("%d jobs from %d clients in %v (%.0f jobs/s): RssAnon %d KiB after (peak %d), %d fds; reaped %d, orphans %d",
		jobs, clients, elapsed.Round(time.Millisecond), float64(jobs)/elapsed.Seconds(), rss, peakRss.Load(), fds,
		st.Counters.Reaped, st.Counters.OrphansReaped)
	if rss > hMaxRssAnonKB {
		t.Errorf("RssAnon %d KiB after %d jobs, want under %d", rss, jobs, hMaxRssAnonKB)
	}
	if fds >= hMaxFDs {
		t.Errorf("%d fds open after %d jobs, want under %d", fds, jobs, hMaxFDs)
	}
}
