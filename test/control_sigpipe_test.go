//go:build linux

package test

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlHangupRaisesNoSIGPIPE: API clients that hang up while tend
// writes to them (a big answer, an event stream) must cost tend an EPIPE
// only. A SIGPIPE raised by tend's own socket write looks exactly like one
// sent with kill, so it would be forwarded and would kill the main process.
func TestControlHangupRaisesNoSIGPIPE(t *testing.T) {
	t.Parallel()
	needRoot(t)
	sock := filepath.Join(t.TempDir(), "tend.sock")
	r := startTend(t, opts{pid1: true, stdin: true}, append([]string{"--socket", sock, "--"}, helperArgv("sigreport", "main", "0")...)...)
	r.expect("main ready")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Events: subscribe, read nothing, hang up while jobs make events.
	for i := 0; i < 20; i++ {
		c := dial()
		fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: tend\r\n\r\n")
		c.(*net.UnixConn).SetReadBuffer(1024)
		c.Close()
	}
	for i := 0; i < 300; i++ {
		c := dial()
		fmt.Fprintf(c, "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			len(`{"argv":["true"],"labels":{"pad":"`+strings.Repeat("x", 1000)+`"}}`),
			`{"argv":["true"],"labels":{"pad":"`+strings.Repeat("x", 1000)+`"}}`)
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}
	// Big answers (300 records of 1 KiB): ask, then hang up unread.
	for i := 0; i < 50; i++ {
		c := dial()
		fmt.Fprintf(c, "GET /v1/jobs HTTP/1.1\r\nHost: tend\r\n\r\n")
		c.(*net.UnixConn).CloseRead()
		c.Close()
	}
	r.closeStdin()
	r.expect("main bye")
	if code := r.wait(); code != 0 {
		t.Errorf("tend exit code = %d, want 0", code)
	}
	for _, l := range r.rest() {
		if strings.Contains(l, "sig 13") {
			t.Errorf("the main process got SIGPIPE: %q", l)
		}
	}
}
