//go:build linux

package test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// notifyService is a Python program speaking sd_notify with the standard
// library only, as services do without libsystemd. Run 1: STATUS= and a
// MAINPID= at once, READY=1 from a forked child once $D/go exists, then
// WATCHDOG=1 every 0.2 s until $D/stop exists, then silence. Later runs:
// READY=1 at once, pings until $D/bye exists, then STOPPING=1.
const notifyService = `
import os, socket, time
d, addr = os.environ["D"], os.environ["NOTIFY_SOCKET"]
with open(d + "/runs", "a") as f: f.write("x")
run = len(open(d + "/runs").read())
open(d + "/sock", "w").write(addr)
open(d + "/wd_usec", "w").write(os.environ.get("WATCHDOG_USEC", ""))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
send = lambda m: s.sendto(m.encode(), addr)
if run == 1:
    send("STATUS=warming up\nMAINPID=1")
    while not os.path.exists(d + "/go"): time.sleep(0.02)
    if os.fork() == 0:  # a process of the unit that is not its main
        send("READY=1\nSTATUS=serving")
        time.sleep(1)
        os._exit(0)
    os.wait()
    while not os.path.exists(d + "/stop"): send("WATCHDOG=1"); time.sleep(0.2)
    time.sleep(1000)
send("READY=1\nSTATUS=run %d" % run)
while not os.path.exists(d + "/bye"): send("WATCHDOG=1"); time.sleep(0.2)
send("STOPPING=1\nSTATUS=going")
while True: send("WATCHDOG=1"); time.sleep(0.2)
`

// notifyIntruder sends READY=1 and a STATUS= to the notify socket of
// another service, then says what sendto answered in $D/NAME.result.
const notifyIntruder = `
import os, socket, sys, time
d, name = os.environ["D"], sys.argv[1]
while not os.path.exists(d + "/sock"): time.sleep(0.02)
addr = open(d + "/sock").read()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    s.sendto(b"READY=1\nSTATUS=hijacked", addr)
    r = "sent"
except PermissionError:
    r = "EACCES"
open(d + "/w/" + name + ".result", "w").write(r)
time.sleep(1000)
`

// TestSupervisorNotify: ready = "notify" as PID 1 with a Python sender.
// The service is ready only when a process of its own run says READY=1:
// a root process of another service is refused (logged), a non-root one
// cannot even send (the socket is 0600, the service's uid's: a service of
// uid 1234 can, on its own); its dependent
// starts after it; STATUS= shows in status; MAINPID= is refused with a
// warning; a service that stops sending WATCHDOG=1 is restarted although
// its policy is never; STOPPING=1 makes /v1/health (ready) fail, naming it.
func TestSupervisorNotify(t *testing.T) {
	t.Parallel()
	for _, track := range []string{"auto", "cgroup"} {
		t.Run(track, func(t *testing.T) {
			t.Parallel()
			o := opts{}
			if track == "cgroup" {
				o = inCgroup(t, o) // a cgroup v2 of tend's own: units get theirs
			}
			notifyCase(t, o, track)
		})
	}
}

func notifyCase(t *testing.T, o opts, track string) {
	dir := hDir(t)
	if err := os.Mkdir(filepath.Join(dir, "w"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "w"), 0o777); err != nil { // the stranger writes its result here
		t.Fatal(err)
	}
	for name, prog := range map[string]string{"svc.py": notifyService, "intruder.py": notifyIntruder} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(prog), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n[health]\ninclude = \"all\"\n[defaults]\ntrack = " + svQuote(track) + "\n" +
		svShell("py", dir, `exec python3 "$D/svc.py"`, `ready = "notify"`, `watchdog = "1s"`, `restart = "never"`, `ready_timeout = "60s"`) +
		svShell("b", dir, `touch "$D/b.start"; exec sleep 1000`, `after = ["py"]`) +
		svShell("other", dir, `exec python3 "$D/intruder.py" other`) +
		svShell("stranger", dir, `exec python3 "$D/intruder.py" stranger`, `user = "1234:1234"`) +
		// A service of uid 1234 speaks on a socket that is its own.
		svShell("nonroot", dir, `exec python3 -c 'import os, socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b"READY=1\nSTATUS=uid %d" % os.getuid(), os.environ["NOTIFY_SOCKET"]); time.sleep(1000)'`,
			`user = "1234:1234"`, `ready = "notify"`)
	r, sock := hConfig(t, o, dir, cfg)
	c := hClient(t, sock)
	py := func() api.Service {
		t.Helper()
		st, err := c.Status(hCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		return svcStatus(t, st, "py")
	}

	svPoll(t, r, svWait, "both intruders tried", func() bool {
		return svExists(filepath.Join(dir, "w", "other.result")) && svExists(filepath.Join(dir, "w", "stranger.result"))
	})
	svPoll(t, r, svWait, "py's STATUS=", func() bool { return py().StatusText == "warming up" })
	svWaitLog(t, r, "notify datagrams refused", "py")
	svWaitLog(t, r, "MAINPID= refused: tend follows the process it started (run the daemon in the foreground)", "py")
	if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "w", "stranger.result"))); got != "EACCES" {
		t.Errorf("a process of uid 1234 sending to py's socket: %s, want EACCES", got)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "w", "other.result"))); got != "sent" {
		t.Errorf("a root process sending to py's socket: %s, want sent (and refused by tend)", got)
	}
	if s := py(); s.State != "starting" || s.Ready || s.StatusText != "warming up" || svExists(filepath.Join(dir, "b.start")) {
		t.Fatalf("after the intruder's READY=1: py %+v, b started %v; want starting, not hijacked", s, svExists(filepath.Join(dir, "b.start")))
	}
	path := strings.TrimSpace(readFile(t, filepath.Join(dir, "sock")))
	var stt syscall.Stat_t
	if err := syscall.Stat(path, &stt); err != nil || stt.Mode&0o777 != 0o600 || stt.Uid != 0 {
		t.Errorf("NOTIFY_SOCKET %s: mode %o uid %d (%v), want 0600 and py's uid 0", path, stt.Mode&0o777, stt.Uid, err)
	}

	st, err := c.Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if s := svcStatus(t, st, "nonroot"); !s.Ready || s.StatusText != "uid 1234" {
		svPoll(t, r, svWait, "nonroot ready by its own READY=1", func() bool {
			st, err := c.Status(hCtx(t))
			return err == nil && svcStatus(t, st, "nonroot").Ready && svcStatus(t, st, "nonroot").StatusText == "uid 1234"
		})
	}

	touch(t, filepath.Join(dir, "go"))
	svPoll(t, r, svWait, "py ready", func() bool { s := py(); return s.Ready && s.StatusText == "serving" })
	svPoll(t, r, svWait, "b started after py", func() bool { return svExists(filepath.Join(dir, "b.start")) })
	if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "wd_usec"))); got != "1000000" {
		t.Errorf("WATCHDOG_USEC = %q, want 1000000", got)
	}

	touch(t, filepath.Join(dir, "stop"))
	svWaitLog(t, r, "service failed while running: restarting it", "py")
	if !strings.Contains(r.stderrNow(), "watchdog: no WATCHDOG=1 for 1s") {
		t.Errorf("the restart does not say the watchdog expired:\n%s", r.stderrNow())
	}
	svPoll(t, r, svWait, "py's second run ready", func() bool { s := py(); return s.Runs == 2 && s.Ready && s.StatusText == "run 2" })

	h, err := c.HealthAt(hCtx(t), api.HealthReady)
	if err != nil || !h.Healthy {
		t.Errorf("health before STOPPING=1: %+v, %v", h, err)
	}
	touch(t, filepath.Join(dir, "bye"))
	svPoll(t, r, svWait, "STOPPING=1 seen", func() bool { return py().NotifyStopping })
	h, err = c.HealthAt(hCtx(t), api.HealthReady)
	if err != nil || h.Healthy || len(h.Down) != 1 || h.Down[0].Service != "py" || !strings.Contains(h.Down[0].Reason, "STOPPING=1") {
		t.Errorf("health (ready) after STOPPING=1: %+v, %v; want py down for STOPPING=1", h, err)
	}
	if h, err := c.HealthAt(hCtx(t), api.HealthAlive); err != nil || !h.Healthy {
		t.Errorf("health (alive) after STOPPING=1: %+v, %v; want alive", h, err)
	}
	if s := py(); s.Runs != 2 {
		t.Errorf("py ran %d times: the pings after STOPPING=1 keep the watchdog fed", s.Runs)
	} else {
		t.Logf("py's second run, track %s, still up after STOPPING=1", s.Track)
		if track == "cgroup" && s.Track != "cgroup" && os.Getenv("TEND_TRACK") == "" {
			t.Errorf("py's track is %s, want cgroup", s.Track)
		}
	}
	resp, err := httpGet(sock, "/v1/health?level=sideways")
	if err != nil || resp != http.StatusBadRequest {
		t.Errorf("GET /v1/health?level=sideways: %d, %v; want 400", resp, err)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit %d, want 143 (SIGTERM, no main)", code)
	}
	if svExists(path) || svExists(filepath.Dir(path)) {
		t.Errorf("the NOTIFY_SOCKET directory %s outlived tend", filepath.Dir(path))
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// httpGet is the status code of GET path on sock.
func httpGet(sock, path string) (int, error) {
	resp, err := rHTTP(sock).Get("http://tend" + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// notifyFlood sends 100,000 STATUS= datagrams as fast as it can, with a
// 64 KiB one among them (too long: ignored), then READY=1.
const notifyFlood = `
import os, socket
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
for i in range(100000):
    s.sendto(b"STATUS=n %d" % i, addr)
    if i == 5000:
        s.sendto(b"READY=1\nSTATUS=" + b"x" * 65000, addr)
s.sendto(b"STATUS=done\nREADY=1", addr)
open(os.environ["D"] + "/sent", "w").close()
import time; time.sleep(1000)
`

// TestSupervisorNotifyFlood: a service that floods its NOTIFY_SOCKET
// (100,000 datagrams, one of 64 KiB) cannot make tend slow to answer or
// grow: status answers within a second throughout, the oversized datagram
// (with a READY=1 in it) is ignored, the last STATUS= wins, and tend's
// RssAnon stays under 32 MiB.
func TestSupervisorNotifyFlood(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	if err := os.WriteFile(filepath.Join(dir, "flood.py"), []byte(notifyFlood), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" +
		svShell("flood", dir, `exec python3 "$D/flood.py"`, `ready = "notify"`)
	r, sock := hConfig(t, opts{}, dir, cfg)
	c := hClient(t, sock)
	worst, maxRSS := time.Duration(0), 0
	var last api.Service
	for !svExists(filepath.Join(dir, "sent")) || !last.Ready || last.StatusText != "done" {
		t0 := time.Now()
		st, err := c.Status(hCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
		maxRSS = max(maxRSS, hRssAnon(t, r))
		last = svcStatus(t, st, "flood")
		if last.Ready && last.StatusText != "done" {
			// The only READY=1 before "done" is in the oversized datagram.
			t.Fatalf("ready at status %q: the 64 KiB datagram was honoured", last.StatusText)
		}
		if time.Since(r.start) > time.Minute {
			t.Fatalf("not ready with status done after a minute: %+v", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("slowest status during the flood %v, RssAnon at most %d KiB", worst, maxRSS)
	if worst > time.Second || maxRSS > 32<<10 {
		t.Errorf("during the flood: slowest status %v (want < 1s), RssAnon %d KiB (want < 32 MiB)", worst, maxRSS)
	}
	if n := svLog(r.stderrNow(), "notify datagrams refused", "flood"); n != 1 || !strings.Contains(r.stderrNow(), "longer than 4096 bytes") {
		t.Errorf("%d refusal warnings (want 1, for the 64 KiB datagram); stderr:\n%s", n, r.stderrNow())
	}
}
