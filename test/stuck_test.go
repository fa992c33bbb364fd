//go:build linux

package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// stuckRequests is how many spawns with a lingering socket the test makes.
const stuckRequests = 100

// stuckMaxThreads bounds tend's OS threads with every close and lookup
// stuck: what tend makes at start (the Go runtime's few, the lookup pool's
// 4 workers and 4 spares, the closer's 2), with room, and far below one
// thread per stuck request.
const stuckMaxThreads = 40

// TestStuckCallsDoNotStall (DESIGN.md §1.9, §1.10): nothing slow runs on
// the loop, the reaper or under the reaper lock. Service stuckdir's `dir`
// is under a FUSE mount whose server never answers after FUSE_INIT, so its
// start hangs in a path lookup; then 100 spawn requests each pass a TCP
// socket whose last close lingers 120 s (SO_LINGER {1,120}, unsent data
// the peer never reads) with a command that cannot be executed, so tend
// closes the socket, the last reference, after answering 422. While all of
// that is stuck: each 422 comes within 1 s; tend's thread count stays
// under stuckMaxThreads; `tend status` answers within 1 s; service victim,
// killed with SIGKILL, is reaped and running again within 1 s; the
// orphans of a job are all reaped within 1 s (no zombie under tend).
func TestStuckCallsDoNotStall(t *testing.T) {
	needRoot(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	needOrSkip(t, err, "/dev/fuse")
	lg := newLingerer(t)
	// The lingering close lingers: a control, in the test itself.
	if d := <-closeTime(lg.socket(t), 500*time.Millisecond); d < 500*time.Millisecond {
		t.Fatalf("the last close of a socket with SO_LINGER {1,120} and unsent data returned in %v: the test's stand-in does not block", d)
	}

	dir := hDir(t)
	cfg := fmt.Sprintf(`
[control]
socket = %s

[[service]]
name = "victim"
command = ["/bin/sleep", "100000"]
restart = "always"
backoff = "100ms"

[[service]]
name = "stuckdir"
command = ["/bin/sleep", "100000"]
dir = %s
restart = "always"
backoff = "100ms"
`, svQuote(filepath.Join(dir, "s")), svQuote(filepath.Join(dir, "fuse", "sub")))
	r, sock := hConfig(t, opts{argv0: fuseSetup(dir)}, dir, cfg)
	t.Cleanup(func() { fuseAbort(t, r, dir) }) // runs before the namespace is killed
	c := hClient(t, sock)
	ctx := hCtx(t)
	status := func() api.Status {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatalf("status: %v; tend's stderr:\n%s", err, r.stderrNow())
		}
		return st
	}
	svc := func(st api.Status, name string) api.Service {
		for _, s := range st.Services {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("no service %s in %+v", name, st.Services)
		return api.Service{}
	}
	svPoll(t, r, hWait, "victim running", func() bool { return svc(status(), "victim").State == "running" })
	// stuckdir's lookup hangs in FUSE: a thread of tend waits for an answer.
	svPoll(t, r, hWait, "a tend thread waiting on the FUSE server", func() bool {
		return wchans(r.pid())["request_wait_answer"] > 0
	})
	if s := svc(status(), "stuckdir"); s.State != "starting" {
		t.Errorf("stuckdir = %+v, want starting (its lookup hangs)", s)
	}

	tendLast := 0
	var slowest time.Duration
	for i := range stuckRequests {
		fd := lg.socket(t)
		code, took, ours := lingerSpawn(t, sock, fd)
		if code != 422 {
			t.Fatalf("spawn %d with a lingering socket: answer %d, want 422 (cannot execute)", i, code)
		}
		if took > time.Second {
			t.Errorf("spawn %d: the 422 took %v, want it within 1s (a close on the request's path?)", i, took)
		}
		slowest = max(slowest, took)
		if d := <-ours; d < 100*time.Millisecond {
			tendLast++ // our close was not the last: tend's copy was still open
		}
	}
	t.Logf("%d spawns with a lingering socket: slowest 422 in %v; tend's copy was the last reference in %d", stuckRequests, slowest, tendLast)
	if tendLast < stuckRequests*9/10 {
		t.Fatalf("tend's close was the last one (the lingering one) in only %d of %d requests: the test proves too little", tendLast, stuckRequests)
	}
	// The closer's threads wait in sk_stream_wait_close, which sleeps in
	// wait_woken; tend's idle threads sleep in futex or epoll waits.
	svPoll(t, r, hWait, "a tend thread lingering in close (wchan wait_woken)", func() bool {
		return wchans(r.pid())["wait_woken"] > 0
	})
	t.Logf("tend's threads' wchans: %v", wchans(r.pid()))

	if n := tendThreads(t, r); n >= stuckMaxThreads {
		t.Errorf("tend has %d threads after %d stuck closes and a stuck lookup, want fewer than %d", n, stuckRequests, stuckMaxThreads)
	} else {
		t.Logf("tend has %d threads (bound %d)", n, stuckMaxThreads)
	}

	// The API answers: tend status, the CLI.
	t0 := time.Now()
	cmd := tendCmdAt(t, sock, "status")
	out, err := cmd.CombinedOutput()
	if d := time.Since(t0); err != nil || d > time.Second {
		t.Errorf("tend status: %v after %v, want an answer within 1s\n%s", err, d, out)
	}

	// A killed service is reaped and restarted.
	v := svc(status(), "victim")
	if v.PID == nil {
		t.Fatalf("victim has no pid: %+v", v)
	}
	old := *v.PID
	host := svHostPid(t, r, old)
	t0 = time.Now()
	if err := unix.Kill(host, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	svPoll(t, r, hWait, "victim restarted", func() bool {
		s := svc(status(), "victim")
		return s.State == "running" && s.PID != nil && *s.PID != old
	})
	if d := time.Since(t0); d > time.Second {
		t.Errorf("victim killed with SIGKILL ran again after %v, want within 1s (backoff 100ms)", d)
	}

	// Orphans are reaped. A group job: its orphans are tend's to reap (a
	// subreaper job's would be its helper's).
	j, err := c.Spawn(ctx, api.JobRequest{Track: "group", Argv: []string{"/bin/sh", "-c",
		"i=0; while [ $i -lt 20 ]; do (/bin/sleep 0.05 &); i=$((i+1)); done"}}, nil)
	if err != nil {
		t.Fatalf("spawn the orphan maker: %v", err)
	}
	hWaitJob(t, c, j.ID)
	// Each orphan sleeps 50ms: all 20 must be reaped within 1s after that,
	// and no zombie be left under tend.
	t0 = time.Now()
	var st api.Status
	for {
		st = status()
		z := zombiesUnder(r.pid())
		if st.Counters.OrphansReaped >= 20 && len(z) == 0 {
			break
		}
		if time.Since(t0) > 1050*time.Millisecond {
			t.Errorf("1s after the orphans' 50ms: %d orphans reaped (want at least 20), zombies under tend %v", st.Counters.OrphansReaped, z)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := tendThreads(t, r); n >= stuckMaxThreads {
		t.Errorf("tend has %d threads at the end, want fewer than %d", n, stuckMaxThreads)
	}
	if s := svc(st, "stuckdir"); s.State == "running" {
		t.Errorf("stuckdir = %+v: running, although its dir cannot be looked up", s)
	}
}

// lingerSpawn sends POST /v1/jobs for a command that cannot be executed,
// passing fd as the job's stdin, and closes its own copy right after the
// send: tend's is then the last reference. It returns the answer's status,
// how long it took, and how long the test's own close took.
func lingerSpawn(t *testing.T, sock string, fd int) (int, time.Duration, <-chan time.Duration) {
	t.Helper()
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(hWait))
	req := jobsPost("/v1/jobs", `{"argv":["/nonexistent/tend-test-command"]}`)
	t0 := time.Now()
	if _, _, err := conn.WriteMsgUnix([]byte(req), unix.UnixRights(fd), nil); err != nil {
		t.Fatalf("send the request: %v", err)
	}
	ours := closeTime(fd, 100*time.Millisecond)
	rep := jobsReadReply(t, bufio.NewReader(conn))
	return rep.code, time.Since(t0), ours
}

// tendCmdAt is `tend ARGS...` against sock, killed after hWait.
func tendCmdAt(t *testing.T, sock string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), hWait)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, tendBin, args...)
	cmd.Env = childEnv([]string{"TEND_SOCKET=" + sock})
	return cmd
}

// wchans counts the kernel wait channels of pid's threads.
func wchans(pid int) map[string]int {
	out := map[string]int{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, task.Name()))
		if err == nil {
			out[strings.TrimSpace(string(b))]++
		}
	}
	return out
}
