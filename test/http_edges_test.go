//go:build linux

package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// TestHTTPEdgesAsPID1 (issue 13): the control API's HTTP edges, as PID 1
// with [control] request limits set smaller than their defaults, so the
// settings are seen to reach the server. A request with both
// Transfer-Encoding and Content-Length is answered and its connection
// closed (RFC 9112 §6.3): the request smuggled behind it is never answered.
// A URL, a request head, a body over their limits and a head that comes too
// slowly are refused with a JSON error naming the limit and its setting; a
// keep-alive connection left idle is closed after idle_timeout, not before.
func TestHTTPEdgesAsPID1(t *testing.T) {
	t.Parallel()
	const idle, headWait = 600 * time.Millisecond, 600 * time.Millisecond
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\nidle_timeout = %q\nread_header_timeout = %q\n"+
		"max_url_bytes = 2048\nmax_header_bytes = 4096\nmax_body_bytes = 4096\n",
		svQuote(filepath.Join(dir, "s")), idle.String(), headWait.String())
	r, sock := hConfig(t, opts{}, dir, body, "--", "sleep", "100000")
	c := hClient(t, sock)

	t.Run("TE and CL", func(t *testing.T) {
		const job = `{"argv":["true"]}`
		conn := hDial(t, sock)
		// The CL of 4 would end the body inside the chunk: what follows
		// would be read as a request if the connection stayed open.
		fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"+
			"GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n", len(job), job)
		br := bufio.NewReader(conn)
		resp, got := edgeAnswer(t, conn, br)
		if resp.StatusCode != http.StatusCreated || !resp.Close {
			t.Errorf("TE+CL: %d %q (Connection: close %v), want 201 and close", resp.StatusCode, got, resp.Close)
		}
		if !edgeClosed(conn, br, hWait) {
			t.Errorf("TE+CL: the connection is open %v after the answer: the smuggled request may be answered", hWait)
		}
	})
	for _, tc := range []struct {
		name, req string
		code      int
		msg       string
		closes    bool // the rest of the request may still be coming: never read as one
	}{
		{"URL over max_url_bytes", "GET /v1/health?p=" + strings.Repeat("x", 2048) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 414,
			"URL is 2061 bytes, over the limit of 2048 ([control] max_url_bytes)", false},
		// net/http reads 4 KiB beyond MaxHeaderBytes before it refuses.
		{"head over max_header_bytes", "GET /v1/health HTTP/1.1\r\nHost: tend\r\nX-Pad: " + strings.Repeat("y", 12<<10) + "\r\n\r\n", 431,
			"request line and headers over 4096 bytes ([control] max_header_bytes)", true},
		{"body over max_body_bytes", fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: 5000\r\n\r\n{\"argv\":[\"%s\"]}", strings.Repeat("a", 5000-13)), 413,
			"request body is 5000 bytes, over the limit of 4096 ([control] max_body_bytes)", true},
		{"head slower than read_header_timeout", "GET /v1/heal", 408,
			"request line and headers not received within 600ms ([control] read_header_timeout)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := hDial(t, sock)
			go io.WriteString(conn, tc.req) // tend may answer before reading it all
			br := bufio.NewReader(conn)
			resp, got := edgeAnswer(t, conn, br)
			var e api.Error
			if resp.StatusCode != tc.code || json.Unmarshal([]byte(got), &e) != nil || e.Error != tc.msg {
				t.Errorf("%d %q, want %d and the JSON error %q", resp.StatusCode, got, tc.code, tc.msg)
			}
			if tc.closes && (!resp.Close || !edgeClosed(conn, br, hWait)) {
				t.Errorf("the connection stays open after a %d", resp.StatusCode)
			}
		})
	}
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := hDial(t, sock)
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n")
		if resp, got := edgeAnswer(t, conn, br); resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("health: %d %q (close %v), want 200 kept alive", resp.StatusCode, got, resp.Close)
		}
		start := time.Now()
		if edgeClosed(conn, br, idle/2) {
			t.Fatalf("closed %v after the answer, before idle_timeout %v", time.Since(start), idle)
		}
		if !edgeClosed(conn, br, 10*idle) {
			t.Fatalf("still open %v after the answer, idle_timeout %v", time.Since(start), idle)
		}
		t.Logf("idle connection closed %v after its answer (idle_timeout %v)", time.Since(start), idle)
	})
	hAlive(t, r, c)
}

// edgeAnswer reads one answer from conn, within hWait.
func edgeAnswer(t *testing.T, conn net.Conn, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(hWait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, strings.TrimSpace(string(b))
}

// edgeClosed says whether tend closes conn within d (EOF or reset, not
// more bytes).
func edgeClosed(conn net.Conn, br *bufio.Reader, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}
