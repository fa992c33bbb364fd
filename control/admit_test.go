//go:build linux

package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tendinit/tend/internal/ratelog"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// asUID runs fn on an OS thread of its own whose credentials are uid, gid
// and no groups: connections it makes carry them (SO_PEERCRED is the
// connecting thread's). setresuid is called raw, so it changes that thread
// only; the thread is never unlocked, so it dies with the goroutine.
func asUID(t *testing.T, uid, gid int, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		for _, c := range [][4]uintptr{{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)},
			{unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)}} {
			if _, _, errno := unix.RawSyscall(c[0], c[1], c[2], c[3]); errno != 0 {
				t.Errorf("syscall %d for uid %d: %v", c[0], uid, errno)
				return
			}
		}
		fn()
	}()
	<-done
}

// limitServer serves on a socket anyone may connect to, in a directory
// anyone may enter, with the given connection limits.
func limitServer(t *testing.T, max, perUID int) *harness {
	t.Helper()
	dir := sharedDir(t)
	h := startServer(t, func(c *Config) {
		c.Path = filepath.Join(dir, "s")
		c.Mode, c.Group = 0o666, "4242"
		c.MaxConnections, c.MaxConnectionsPerUID = max, perUID
	})
	h.path = h.srv.Path()
	return h
}

// probe opens a connection, sends GET /v1/health and returns the status
// and error message of the answer, and the connection (open).
func probe(t *testing.T, path string) (int, string, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Errorf("dial: %v", err)
		return 0, "", nil
	}
	c.Write([]byte("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"))
	resp, body := answer(t, c, bufio.NewReader(c), 5*time.Second)
	var e api.Error
	json.Unmarshal([]byte(body), &e)
	return resp.StatusCode, e.Error, c
}

// openAs opens n connections as uid, each answered 200, and returns them.
func openAs(t *testing.T, h *harness, uid, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	asUID(t, uid, 4242, func() {
		for i := range n {
			code, msg, c := probe(t, h.path)
			if code != 200 {
				t.Errorf("uid %d's connection %d of %d: %d %q, want 200", uid, i+1, n, code, msg)
			}
			conns = append(conns, c)
		}
	})
	return conns
}

// refusedAs expects a connection of uid to be answered 503 with want and
// then closed, at once.
func refusedAs(t *testing.T, h *harness, uid int, want string) {
	t.Helper()
	asUID(t, uid, 4242, func() {
		start := time.Now()
		code, msg, c := probe(t, h.path)
		if code != 503 || !strings.Contains(msg, want) {
			t.Errorf("uid %d over the limit: %d %q, want 503 with %q", uid, code, msg, want)
		}
		if c == nil {
			return
		}
		if !closedWithin(c, bufio.NewReader(c), 2*time.Second) {
			t.Errorf("uid %d over the limit: the connection is still open after the 503", uid)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("uid %d over the limit: answered after %v, want at once", uid, d)
		}
		c.Close()
	})
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// Connections are counted per uid and overall from accept to close; one
// over a limit gets a 503 naming the limit and its setting and is closed,
// at once; root counts too (its per-uid limit holds) but has a reserve
// beyond the overall limit; a closed connection gives its place back.
func TestConnectionLimits(t *testing.T) {
	h := limitServer(t, 6, 4)
	a := openAs(t, h, 1000, 4)
	refusedAs(t, h, 1000, "uid 1000 has 4 connections open: the limit is 4 ([control] max_connections_per_uid)")
	b := openAs(t, h, 1001, 2)
	refusedAs(t, h, 1001, "6 connections open: the limit is 6 ([control] max_connections)")
	mine := openAs(t, h, 0, 4) // over max_connections: root's reserve
	refusedAs(t, h, 0, "uid 0 has 4 connections open: the limit is 4 ([control] max_connections_per_uid)")
	closeAll(mine)

	// uid 1000's places come back once its connections close.
	closeAll(a)
	deadline := time.Now().Add(5 * time.Second)
	for {
		total, of1000 := h.srv.ln.admit.open(1000)
		if total == 2 && of1000 == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the closes: %d connections counted (%d of uid 1000), want 2 (0)", total, of1000)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b = append(b, openAs(t, h, 1001, 2)...)
	refusedAs(t, h, 1001, "uid 1001 has 4 connections open")
	closeAll(b)
}

// Root's reserve: [control] reserved_connections beyond max_connections, then a
// 503 like anyone's, which a Go client (api.Client) reads as an answer.
func TestConnectionRootReserve(t *testing.T) {
	h := limitServer(t, 2, 100)
	a := openAs(t, h, 1000, 2)
	defer closeAll(a)
	refusedAs(t, h, 1000, "2 connections open: the limit is 2 ([control] max_connections)")
	mine := openAs(t, h, 0, config.DefaultReservedConnections)
	defer closeAll(mine)
	_, err := api.NewClient(h.path).Status(context.Background())
	var se *api.StatusError
	want := fmt.Sprintf("%d connections open: the limit is 2 ([control] max_connections) and %d more for root and tend's uid ([control] reserved_connections)",
		2+config.DefaultReservedConnections, config.DefaultReservedConnections)
	if !errors.As(err, &se) || se.Code != 503 || !strings.Contains(se.Msg, want) {
		t.Errorf("root past its reserve, through api.Client: %v, want a 503 with %q", err, want)
	}
}

// A flood over the limits: every connection is answered 200 or 503, none
// waits, and tend holds no more connections than the limits allow.
func TestConnectionFlood(t *testing.T) {
	h := limitServer(t, 1024, 20)
	var mu sync.Mutex
	codes := map[int]int{}
	var conns []net.Conn
	asUID(t, 1000, 4242, func() {
		var wg sync.WaitGroup
		for range 300 {
			c, err := net.Dial("unix", h.path)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			conns = append(conns, c)
			c.Write([]byte("GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"))
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				code := -1
				if resp, err := readResponse(c); err == nil {
					code = resp
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			})
		}
		wg.Wait()
	})
	defer closeAll(conns)
	total, _ := h.srv.ln.admit.open(1000)
	t.Logf("300 connections of one uid, limit 20: answers %v; %d counted", codes, total)
	if codes[200] != 20 || codes[503] != 280 || total != 20 {
		t.Errorf("answers %v with %d counted, want 20 times 200, 280 times 503, 20 counted", codes, total)
	}
}

func readResponse(c net.Conn) (int, error) {
	var code int
	_, err := fmt.Fscanf(bufio.NewReader(c), "HTTP/1.1 %d", &code)
	return code, err
}

// EMFILE from accept(2): Accept waits and retries (5 ms doubling to 100
// ms), and says so once per 10 s with the count of what it did not say,
// where net/http would log every retry.
func TestAcceptOutOfFDs(t *testing.T) {
	l, err := Listen(filepath.Join(privateDir(t), "s"), 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs strings.Builder
	l.log = slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Unix(1000, 0)
	l.acceptLog.Now = func() time.Time { return now }
	var delays []time.Duration
	l.wait = func(d time.Duration) bool {
		now = now.Add(d)
		delays = append(delays, d)
		return true
	}
	const fails = 400
	calls := 0
	l.accept = func() (*net.UnixConn, error) {
		if calls++; calls <= fails {
			return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", unix.EMFILE)}
		}
		return nil, net.ErrClosed
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) || len(delays) != fails {
		t.Fatalf("Accept() = %v after %d waits, want the listener's next error, net.ErrClosed, after %d", err, len(delays), fails)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var waited time.Duration
	for _, d := range delays {
		waited += d
	}
	t.Logf("%d EMFILE over %v: %d log lines: %q", fails, waited, len(lines), lines)
	wantLines := 1 + int((waited-1)/ratelog.Interval)
	if delays[0] != acceptRetryMin || delays[1] != 2*acceptRetryMin || delays[fails-1] != acceptRetryMax {
		t.Errorf("waits %v..., want %d of them from %v doubling to %v", delays[:6], fails, acceptRetryMin, acceptRetryMax)
	}
	if len(lines) != wantLines || !strings.Contains(lines[0], "too many open files") ||
		strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=") {
		t.Errorf("log lines %q, want %d: the first at once, the others with the count suppressed", lines, wantLines)
	}

	// Any other error is net/http's to see, at once.
	calls = fails
	l.accept = func() (*net.UnixConn, error) { return nil, os.NewSyscallError("accept4", unix.EINVAL) }
	if _, err := l.Accept(); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Accept() = %v, want EINVAL passed on", err)
	}
}
