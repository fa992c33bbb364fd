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
	"github.com/tendinit/tend/config"
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

// A URL over [control] max_url_bytes gets 414 naming the limit and its
// setting; one at it is served. A request head over max_header_bytes gets
// a JSON 431 naming the setting, not net/http's plain text. Both with the
// defaults and with smaller settings.
func TestURLAndHeaderLimits(t *testing.T) {
	pad := func(n int) string { return "/v1/health?p=" + strings.Repeat("x", n-len("/v1/health?p=")) }
	for _, lim := range []Limits{{}, {MaxURLBytes: 2000, MaxHeaderBytes: 3000}} {
		h := startServer(t, func(c *Config) { c.Limits = lim })
		url, head := config.DefaultMaxURLBytes, config.DefaultMaxHeaderBytes
		if lim.MaxURLBytes != 0 {
			url, head = lim.MaxURLBytes, lim.MaxHeaderBytes
		}
		for _, tc := range []struct {
			name, req string
			code      int
			msg       string
		}{
			{"URL at the limit", "GET " + pad(url) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 200, ""},
			{"URL over the limit", "GET " + pad(url+1) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 414,
				fmt.Sprintf("URL is %d bytes, over the limit of %d ([control] max_url_bytes)", url+1, url)},
			{"URL near the header limit", "GET " + pad(head-100) + " HTTP/1.1\r\nHost: tend\r\n\r\n", 414,
				fmt.Sprintf("URL is %d bytes, over the limit of %d ([control] max_url_bytes)", head-100, url)},
			{"headers under the limit", "GET /v1/health HTTP/1.1\r\nHost: tend\r\nX-Pad: " + strings.Repeat("y", head-100) + "\r\n\r\n", 200, ""},
			// net/http reads 4 KiB beyond MaxHeaderBytes before it refuses.
			{"headers over the limit", "GET /v1/health HTTP/1.1\r\nHost: tend\r\nX-Pad: " + strings.Repeat("y", head+8<<10) + "\r\n\r\n", 431,
				fmt.Sprintf("request line and headers over %d bytes ([control] max_header_bytes)", head)},
		} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, url), func(t *testing.T) {
				c := h.dial(t)
				go c.Write([]byte(tc.req)) // net/http may answer 431 before reading it all
				resp, body := answer(t, c, bufio.NewReader(c), 5*time.Second)
				if resp.StatusCode != tc.code {
					t.Fatalf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.code)
				}
				if tc.msg != "" {
					var e api.Error
					if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != tc.msg {
						t.Errorf("%s: body %q, want the JSON error %q", tc.name, body, tc.msg)
					}
				}
			})
		}
	}
}

// A body over [control] max_body_bytes is a 413 naming the setting,
// whether its Content-Length says so or it is chunked; one at the limit is
// read (and refused only for what it says).
func TestBodyLimit(t *testing.T) {
	const limit = 2048
	h := startServer(t, func(c *Config) { c.Limits = DefaultLimits(); c.Limits.MaxBodyBytes = limit })
	job := func(n int) string { // a job request of n bytes
		return `{"argv":["` + strings.Repeat("a", n-len(`{"argv":[""]}`)) + `"]}`
	}
	for _, tc := range []struct {
		name, req string
		code      int
		msg       string
	}{
		{"at the limit", fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: %d\r\n\r\n%s", limit, job(limit)), 201, ""},
		{"over, by its length", fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: %d\r\n\r\n%s", limit+1, job(limit+1)), 413,
			"request body is 2049 bytes, over the limit of 2048 ([control] max_body_bytes)"},
		{"over, chunked", fmt.Sprintf("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", limit+1, job(limit+1)), 413,
			"request body over 2048 bytes ([control] max_body_bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t)
			go c.Write([]byte(tc.req))
			resp, body := answer(t, c, bufio.NewReader(c), 5*time.Second)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.code)
			}
			if tc.code == 201 {
				closeNow((<-h.jobs.submitted).Files...)
				return
			}
			var e api.Error
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != tc.msg {
				t.Errorf("%s: body %q, want the JSON error %q", tc.name, body, tc.msg)
			}
		})
	}
}

// A request head that does not arrive within [control] read_header_timeout
// is a 408 naming the setting (net/http's own answer is a bare 400), and
// its connection is closed; a malformed head is still net/http's 400.
func TestReadHeaderTimeoutSetting(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := startServer(t, func(c *Config) { c.ReadHeaderTimeout = timeout })
	c := h.dial(t)
	c.Write([]byte("GET /v1/hea"))
	start := time.Now()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(timeout / 2))
	if _, err := br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered or closed %v after half a request head (%v), before read_header_timeout %v", time.Since(start), err, timeout)
	}
	resp, body := answer(t, c, br, 10*timeout)
	want := "request line and headers not received within 300ms ([control] read_header_timeout)"
	var e api.Error
	if resp.StatusCode != http.StatusRequestTimeout || json.Unmarshal([]byte(body), &e) != nil || e.Error != want || !resp.Close {
		t.Errorf("half a request head: %d %q (close %v) after %v, want 408 %q and the connection closed", resp.StatusCode, body, resp.Close, time.Since(start), want)
	}
	if !closedWithin(c, br, 10*timeout) {
		t.Errorf("still open %v after the 408", time.Since(start))
	}

	// After a request answered (net/http ends its background read of the
	// connection with a deadline in the past) and with nothing slow.
	c = h.dial(t)
	br = bufio.NewReader(c)
	c.Write([]byte("POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: 14\r\n\r\n{\"argv\":[\"a\"]}"))
	if resp, body := answer(t, c, br, 5*time.Second); resp.StatusCode != http.StatusCreated {
		t.Fatalf("a job: %d %q", resp.StatusCode, body)
	}
	closeNow((<-h.jobs.submitted).Files...)
	c.Write([]byte("GET /v1/health HTTP/1.1\r\nHost tend\r\n\r\n"))
	if resp, body := answer(t, c, br, 5*time.Second); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed head: %d %q, want net/http's 400", resp.StatusCode, body)
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
