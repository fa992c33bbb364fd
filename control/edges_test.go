//go:build linux

package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// answer reads one HTTP answer from br within d.
func answer(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// closedWithin says whether the server closes c within d (EOF or reset).
func closedWithin(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// RFC 9112 §6.3: a request with both Transfer-Encoding and Content-Length
// is answered, then its connection is closed: the pipelined request behind
// it is never answered. Without both, the connection stays open.
func TestTransferEncodingAndContentLengthClose(t *testing.T) {
	h := startServer(t, nil)
	const smuggled = "GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"
	const job = `{"argv":["a"]}`
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(job), job)
	for _, tc := range []struct {
		name, req string
		closes    bool
	}{
		// The CL of 4 would end the body inside the chunk: what follows
		// would be read as a request if the connection stayed open.
		{"TE and CL", "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunked, true},
		{"CL and TE", "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, true},
		{"CL only", fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: %d\r\n\r\n%s", len(job), job), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t)
			if _, err := c.Write([]byte(tc.req + smuggled)); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, body := answer(t, c, br, 5*time.Second)
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("%s: answer %d %s, want 201", tc.name, resp.StatusCode, body)
			}
			if tc.closes {
				if !resp.Close {
					t.Errorf("%s: the answer does not say Connection: close (header %v)", tc.name, resp.Header)
				}
				if !closedWithin(c, br, 2*time.Second) {
					t.Errorf("%s: the connection is still open 2s after the answer (the request behind it may be answered)", tc.name)
				}
			} else {
				if resp, _ := answer(t, c, br, 5*time.Second); resp.StatusCode != http.StatusOK {
					t.Errorf("%s: the second request got %d, want 200", tc.name, resp.StatusCode)
				}
			}
			select {
			case s := <-h.jobs.submitted:
				closeNow(s.Files...)
			case <-time.After(5 * time.Second):
				t.Errorf("%s: no job submitted", tc.name)
			}
		})
	}
}

// A URL over maxURLBytes gets 414 naming the limit; one just under it is
// served. A header section over maxHeaderBytes gets net/http's 431.
func TestURLAndHeaderLimits(t *testing.T) {
	h := startServer(t, nil)
	pad := func(n int) string { return "/v1/health?p=" + strings.Repeat("x", n-len("/v1/health?p=")) }
	for _, tc := range []struct {
		name, req string
		code      int
		msg       string
	}{
		{"URL at the limit", "GET " + pad(maxURLBytes) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 200, ""},
		{"URL over the limit", "GET " + pad(maxURLBytes+1) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 414, "URL is 8193 bytes: the limit is 8192"},
		{"URL of 60 KiB", "GET " + pad(60<<10) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 414, "the limit is 8192"},
		{"headers under the limit", "GET /v1/health HTTP/1.1\r\nHost: tend\r\nX-Pad: " + strings.Repeat("y", 60<<10) + "\r\n\r\n", 200, ""},
		{"headers over the limit", "GET /v1/health HTTP/1.1\r\nHost: tend\r\nX-Pad: " + strings.Repeat("y", maxHeaderBytes+8<<10) + "\r\n\r\n", 431, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t)
			go c.Write([]byte(tc.req)) // net/http may answer 431 before reading it all
			resp, body := answer(t, c, bufio.NewReader(c), 5*time.Second)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.code)
			}
			if tc.msg != "" {
				var e api.Error
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tc.msg) {
					t.Errorf("%s: body %q, want a JSON error with %q", tc.name, body, tc.msg)
				}
			}
		})
	}
}

// A keep-alive connection left idle is closed after IdleTimeout, not
// before; a busy one is not.
func TestIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	h := startServer(t, func(c *Config) { c.IdleTimeout = idle })
	c := h.dial(t)
	br := bufio.NewReader(c)
	get := "GET /v1/health HTTP/1.1\r\nHost: tend\r\n\r\n"
	for range 5 { // busy: a request every idle/2 keeps it open
		c.Write([]byte(get))
		if resp, _ := answer(t, c, br, 5*time.Second); resp.StatusCode != 200 {
			t.Fatalf("health = %d", resp.StatusCode)
		}
		time.Sleep(idle / 2)
	}
	// The loop's last sleep already spent idle/2: another idle/4 stays
	// short of the timeout.
	start := time.Now()
	if closedWithin(c, br, idle/4) {
		t.Fatalf("closed %v after the last answer, before the idle timeout of %v", time.Since(start), idle)
	}
	if !closedWithin(c, br, 10*idle) {
		t.Fatalf("still open %v after the last answer, idle timeout %v", time.Since(start), idle)
	}
	t.Logf("idle connection closed %v after its last answer (idle timeout %v)", time.Since(start)+idle/2, idle)
}
