//go:build linux

package control

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

func TestBadInput(t *testing.T) {
	h := startServer(t, nil)
	big := `{"argv":["` + strings.Repeat("a", config.DefaultMaxBodyBytes) + `"]}`
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		msg                      string // in the error message
	}{
		{"malformed", "POST", "/v1/jobs", `{argv}`, 400, "malformed JSON at byte 2"},
		{"truncated", "POST", "/v1/jobs", `{"argv":["ls"`, 400, "JSON ends early"},
		{"wrong type", "POST", "/v1/jobs", `{"argv":"ls"}`, 400, "argv must be []string, not a JSON string"},
		{"wrong top type", "POST", "/v1/jobs", `[1]`, 400, "must be api.JobRequest"},
		{"unknown field", "POST", "/v1/jobs", `{"argv":["ls"],"cmd":1}`, 400, `unknown field "cmd"`},
		{"trailing data", "POST", "/v1/jobs", `{"argv":["ls"]} {}`, 400, "trailing data"},
		{"trailing garbage", "POST", "/v1/jobs", `{"argv":["ls"]}x`, 400, "trailing data"},
		{"empty body", "POST", "/v1/jobs", ``, 400, "empty"},
		{"empty argv", "POST", "/v1/jobs", `{"argv":[]}`, 400, "argv is empty"},
		{"no argv", "POST", "/v1/jobs", `{}`, 400, "argv is empty"},
		{"empty argv0", "POST", "/v1/jobs", `{"argv":[""]}`, 400, "argv[0] is empty"},
		{"bad timeout", "POST", "/v1/jobs", `{"argv":["ls"],"timeout":"soon"}`, 400, `timeout "soon"`},
		{"stdio without fds", "POST", "/v1/jobs", `{"argv":["ls"],"stdio":[1]}`, 400, "stdio names 1 fds but 0"},
		{"too big", "POST", "/v1/jobs", big, 413, "request body is 1048589 bytes, over the limit of 1048576 ([control] max_body_bytes)"},
		{"bad job signal", "POST", "/v1/jobs/j-1/signal", `{"signal":"SIGFOO"}`, 400, "SIGFOO"},
		{"signal wrong type", "POST", "/v1/jobs/j-1/signal", `{"signal":15}`, 400, "signal must be string"},
		{"bad wait timeout", "GET", "/v1/jobs/j-1/wait?timeout=-1s", ``, 400, "timeout"},
		{"bad label", "GET", "/v1/jobs?label=nokey", ``, 400, `label "nokey": want key=value`},
		{"bad query", "GET", "/v1/jobs?label=%zz", ``, 400, "query"},
		{"unknown endpoint", "GET", "/v1/nope", ``, 404, "no endpoint GET /v1/nope"},
		{"trailing slash", "GET", "/v1/jobs/", ``, 404, "no endpoint"},
		{"too deep", "GET", "/v1/jobs/j-1/wait/x", ``, 404, "no endpoint"},
		{"unknown service op", "POST", "/v1/services/gateway/frob", ``, 404, "signal, restart, stop and start"},
		{"wrong method", "DELETE", "/v1/jobs", ``, 405, "method DELETE not allowed on /v1/jobs (allowed: GET, HEAD, POST)"},
		{"GET a POST endpoint", "GET", "/v1/services/gateway/stop", ``, 405, "allowed: POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.do(t, tc.method, tc.path, tc.body)
			var e api.Error
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("%s %s = %d %q: not an api.Error: %v", tc.method, tc.path, code, body, err)
			}
			if code != tc.code || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("%s %s = %d %q, want %d and %q", tc.method, tc.path, code, e.Error, tc.code, tc.msg)
			}
		})
	}
	select {
	case req := <-h.jobs.submitted:
		t.Errorf("a bad request reached Submit: %+v", req)
	default:
	}
}

// A declared length over the limit is refused before any of the body is
// read: the client sends only headers and still gets its 413.
func TestHugeBodyRefusedUnread(t *testing.T) {
	h := startServer(t, nil)
	c := h.dial(t)
	fmt.Fprintf(c, "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Length: %d\r\n\r\n{", 100<<20)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("100 MiB body = %d (close %v), want 413 and close", resp.StatusCode, resp.Close)
	}
}

// A chunked body has no declared length: MaxBytesReader stops it.
func TestHugeChunkedBody(t *testing.T) {
	h := startServer(t, nil)
	req, _ := http.NewRequest("POST", "http://tend/v1/jobs", io.MultiReader(strings.NewReader(`{"argv":["`), neverEnding('a')))
	resp, err := h.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("endless chunked body = %d, want 413", resp.StatusCode)
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestHugeHeader(t *testing.T) {
	h := startServer(t, nil)
	c := h.dial(t)
	go fmt.Fprintf(c, "GET /v1/health HTTP/1.1\r\nHost: tend\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 2*config.DefaultMaxHeaderBytes))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("128 KiB header = %d, want 431", resp.StatusCode)
	}
}

// A client that connects and sends nothing, or half a header, is closed.
func TestSilentClientClosed(t *testing.T) {
	h := startServer(t, func(c *Config) { c.ReadHeaderTimeout = 100 * time.Millisecond })
	for _, sent := range []string{"", "GET /v1/hea"} {
		c := h.dial(t)
		c.Write([]byte(sent))
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil || time.Since(start) > 2*time.Second {
			t.Errorf("after sending %q: %v after %v, want EOF within the header timeout", sent, err, time.Since(start))
		}
	}
}

// A body that never completes is cut by IOTimeout, whether the handler
// reads it or not (net/http discards an unread body before answering).
func TestSlowBody(t *testing.T) {
	h := startServer(t, func(c *Config) { c.IOTimeout = 100 * time.Millisecond })
	for _, tc := range []struct {
		head string
		code int
	}{
		{"POST /v1/jobs", http.StatusRequestTimeout},
		{"POST /v1/services/gateway/frob", http.StatusNotFound},
		{"POST /v1/nope", http.StatusNotFound},
		{"GET /v1/health", http.StatusBadRequest},
		{"GET /v1/jobs/j-1/wait", http.StatusBadRequest},
	} {
		c := h.dial(t)
		fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: tend\r\nContent-Length: 100\r\n\r\n{\"argv\":", tc.head)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s with a stalled body: %v", tc.head, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s with a stalled body = %d, want %d", tc.head, resp.StatusCode, tc.code)
		}
	}
}
