//go:build linux

package test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// netServer is a python3 program on 127.0.0.1:PORT: a bare TCP listener
// (http false) or an HTTP server answering 503 to its first two GETs and
// then code, counting the GETs in $D/gets.
const netServer = `
import http.server, os, socket, socketserver, sys
port, mode, code = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
d = os.environ["D"]
if mode == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(16)
    open(d + "/listening", "w").close()
    while True:
        s.accept()[0].close()
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        n += 1
        open(d + "/gets", "w").write(str(n))
        self.send_response(503 if n <= 2 else code); self.end_headers()
    def log_message(self, *a): pass
class S(socketserver.TCPServer):  # HTTPServer's bind waits for a reverse DNS lookup
    allow_reuse_address = True
srv = S(("127.0.0.1", port), H)
open(d + "/listening", "w").close()
srv.serve_forever()
`

// TestSupervisorReadyNet: ready = "tcp:HOST:PORT" and "http://..." hold a
// dependent back until the listener accepts (tcp) or answers 200-399
// (http: the two 503s before do not count); an http probe that only ever
// gets a 404 fails the service at its ready_timeout; a probe of an
// address that is not the container's own is refused at start, exit 2.
func TestSupervisorReadyNet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mode  string // tcp | http
		code  int    // the http answer after the two 503s
		ready bool
	}{
		{"tcp", "tcp", 0, true},
		{"http 200 after 503s", "http", 200, true},
		{"http 302 counts", "http", 302, true},
		{"http 404 never ready", "http", 404, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "srv.py"), []byte(netServer), 0o644); err != nil {
				t.Fatal(err)
			}
			port := strconv.Itoa(freePort(t))
			ready := "tcp:127.0.0.1:" + port
			if tc.mode == "http" {
				ready = "http://127.0.0.1:" + port + "/healthz"
			}
			cfg := svShell("a", dir, `sleep 0.3; exec python3 "$D/srv.py" `+port+` `+tc.mode+` `+strconv.Itoa(tc.code),
				`ready = `+svQuote(ready), `ready_timeout = `+map[bool]string{true: `"30s"`, false: `"8s"`}[tc.ready], `restart = "never"`) +
				svShell("b", dir, `date +%s%N > "$D/b.start"; exec sleep 1000`, `after = ["a"]`)
			r := svStart(t, opts{pid1: true}, dir, cfg)
			if !tc.ready {
				svWaitLog(t, r, "service failed", "a")
				if svExists(filepath.Join(dir, "b.start")) {
					t.Errorf("b started although a's probe only got 404s")
				}
				b, _ := os.ReadFile(filepath.Join(dir, "gets"))
				if n, _ := strconv.Atoi(string(b)); n < 3 {
					t.Errorf("a's server got %q GETs, want the probe repeated past the 503s", b)
				}
				if code := r.wait(); code != 1 { // b failed with its dependency: every service ended
					t.Errorf("tend exit code = %d, want 1", code)
				}
				return
			}
			svWaitLines(t, r, filepath.Join(dir, "b.start"), 1)
			listening, err := os.Stat(filepath.Join(dir, "listening"))
			if err != nil {
				t.Fatalf("b started, but a never listened: %v", err)
			}
			if b := svStamp(t, filepath.Join(dir, "b.start")); !b.After(listening.ModTime()) {
				t.Errorf("b started %v before a listened", listening.ModTime().Sub(b))
			}
			if tc.mode == "http" {
				if n, _ := os.ReadFile(filepath.Join(dir, "gets")); string(n) != "3" {
					t.Errorf("a's server got %q GETs when b started, want 3 (two 503s, then %d)", n, tc.code)
				}
			}
			if code, _ := svTermAndExit(t, r); code != 143 {
				t.Errorf("tend exit code = %d, want 143", code)
			}
		})
	}
	t.Run("not the container's address", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		r := svStart(t, opts{pid1: true}, dir, svShell("a", dir, `exec sleep 1000`, `ready = "tcp:192.0.2.1:80"`))
		code := r.wait()
		if stderr := r.stderrAll(); code != 2 || !strings.Contains(stderr, "192.0.2.1 is not loopback nor an address of this container") {
			t.Errorf("exit %d, want 2 naming the address; stderr:\n%s", code, stderr)
		}
	})
}

// TestSupervisorReadyFD: ready = "fd:N" (s6's notification fd): a
// dependent starts only after the newline on fd N; fds 3..N-1 are closed in
// the service; a service that closes fd N without a newline is never ready
// (a warning names the fd) and fails at its ready_timeout.
func TestSupervisorReadyFD(t *testing.T) {
	t.Parallel()
	t.Run("newline", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cfg := svShell("a", dir, `ls /proc/self/fd > "$D/a.fds"; sleep 0.3; date +%s%N > "$D/said"; echo >&5; exec sleep 1000`,
			`ready = "fd:5"`) +
			svShell("b", dir, `date +%s%N > "$D/b.start"; exec sleep 1000`, `after = ["a"]`)
		r := svStart(t, opts{pid1: true}, dir, cfg)
		svWaitLines(t, r, filepath.Join(dir, "b.start"), 1)
		if said, b := svStamp(t, filepath.Join(dir, "said")), svStamp(t, filepath.Join(dir, "b.start")); !b.After(said) {
			t.Errorf("b started %v before a wrote its newline", said.Sub(b))
		}
		fds := strings.Fields(strings.Join(svLines(filepath.Join(dir, "a.fds")), " "))
		if !slices.Contains(fds, "5") || slices.Contains(fds, "4") {
			t.Errorf("a's fds %v: want 5 (the notification fd) and not 4", fds)
		}
		if code, _ := svTermAndExit(t, r); code != 143 {
			t.Errorf("tend exit code = %d, want 143", code)
		}
	})
	t.Run("closed without a newline", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cfg := svShell("a", dir, `printf x >&3; exec 3>&-; exec sleep 1000`, `ready = "fd:3"`, `ready_timeout = "1s"`, `restart = "never"`) +
			svShell("b", dir, `: > "$D/b.start"; exec sleep 1000`, `after = ["a"]`)
		r := svStart(t, opts{pid1: true}, dir, cfg)
		svWaitLog(t, r, "service failed", "a")
		stderr := r.stderrNow()
		if svExists(filepath.Join(dir, "b.start")) || !strings.Contains(stderr, `msg="the notification fd was closed without a newline: not ready" service=a fd=3`) {
			t.Errorf("b started, or no warning naming fd 3; stderr:\n%s", stderr)
		}
		if code := r.wait(); code != 1 { // b failed with its dependency: every service ended
			t.Errorf("tend exit code = %d, want 1", code)
		}
	})
}
