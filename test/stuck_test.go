//go:build linux

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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

// stuckRequests is how many spawns with a lingering socket the test makes:
// the 400, after which the code before it had 407 threads.
const stuckRequests = 400

// stuckMaxThreads bounds tend's OS threads with every close and lookup
// stuck: what tend makes at start (the Go runtime's few, the lookup pool's
// 4 workers and 4 spares, the closer's 2), with room, and far below one
// thread per stuck request.
const stuckMaxThreads = 40

// stuckGrace is the test's stop budget ([shutdown] grace); stuckTeardown is
// README's bound on what follows the budget: tend is gone within 1 s. The
// 3 s README adds for a process in D state does not apply: every child
// here dies of SIGTERM.
const (
	stuckGrace    = 5 * time.Second
	stuckTeardown = time.Second
)

// slowPathHops is how many components the target of each entry of the
// 1 MiB PATH walks (see slowLookup): enough for the one lookup to take
// seconds (2-7 s on 2 shared cores), so that a kill, its restart and the
// orphans' reaping all happen while it runs. One that outlives tend's 10 s
// lookup timeout is answered then, which proves as much.
const slowPathHops = 120

// TestStuckCallsDoNotStall (DESIGN.md §1.9, §1.10): nothing slow runs on
// the loop, the reaper or under the reaper lock. Service stuckdir's `dir`
// is under a FUSE mount whose server never answers after FUSE_INIT, so its
// start hangs in a path lookup; then 400 spawn requests each pass a TCP
// socket whose last close lingers 120 s (SO_LINGER {1,120}, unsent data
// the peer never reads) with a command that cannot be executed, so tend
// closes the socket, the last reference, after answering 422. While all of
// that is stuck: each 422 comes within 1 s; tend's thread count stays
// under stuckMaxThreads; `tend status` answers within 1 s; GET /v1/health
// answers within 1 s and tells the truth (critical service crit, killed
// with SIGKILL, is reported down within 1 s and healthy again once it
// runs); then, while a job request whose PATH is nearly the 1 MiB body
// limit is being looked up, service victim, killed with SIGKILL, is reaped
// and running again within 1 s and the orphans of a job are all reaped
// within 1 s (no zombie under tend); last, with the closes still stuck,
// SIGTERM stops tend within its 5 s budget plus the 1 s teardown.
//
// What the code before issue 10 did, each of which fails here: it closed
// passed fds under the jobs lock, on the request's own thread, so answers
// waited for the close, each request pinned a thread (11 -> 407 after 400
// requests), nothing was reaped (the killed service and the orphans stayed
// <defunct>), health kept saying healthy (no exit was seen, so crit stayed
// "running"), and a 5 s stop took 111 s; and it looked PATH up under the
// reaper lock, so no exit could be reaped before the lookup ended: the
// victim's restart and the orphans' reaping came after the lookup's answer.
func TestStuckCallsDoNotStall(t *testing.T) {
	needRoot(t)
	t0 := time.Now()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	needOrSkip(t, err, "/dev/fuse")
	lg := newLingerer(t)
	// The lingering close lingers: a control, in the test itself. About 2
	// in 100 of these sockets close at once all the same (measured: 4 of
	// 200), hence the 90% asked of the requests below and up to 3 tries
	// here.
	for try := 1; ; try++ {
		d := <-closeTime(lg.socket(t), 500*time.Millisecond)
		if d >= 500*time.Millisecond {
			break
		}
		if try == 3 {
			t.Fatalf("the last close of 3 sockets with SO_LINGER {1,120} and unsent data returned at once (last in %v): the test's stand-in does not block", d)
		}
	}

	dir := hDir(t)
	cfg := fmt.Sprintf(`
[control]
socket = %s

[shutdown]
grace = %s

[jobs]
# A PATH of nearly 1 MiB: the default 64 KiB would refuse it before any lookup.
max_env_bytes = %d

[[service]]
name = "victim"
command = ["/bin/sleep", "100000"]
restart = "always"
backoff = "100ms"

[[service]]
name = "crit"
command = ["/bin/sleep", "100000"]
critical = true
restart = "always"
# Long enough for health to be seen down, short enough for the test.
backoff = "1s"

[[service]]
name = "stuckdir"
command = ["/bin/sleep", "100000"]
dir = %s
restart = "always"
backoff = "100ms"
`, svQuote(filepath.Join(dir, "s")), svQuote(stuckGrace.String()), 2<<20, svQuote(filepath.Join(dir, "fuse", "sub")))
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
	// kill sends SIGKILL to service name's process and returns its pid
	// (tend's namespace) and when.
	kill := func(name string) (int, time.Time) {
		t.Helper()
		v := svc(status(), name)
		if v.PID == nil {
			t.Fatalf("%s has no pid: %+v", name, v)
		}
		host := svHostPid(t, r, *v.PID)
		killed := time.Now()
		if err := unix.Kill(host, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return *v.PID, killed
	}
	for _, name := range []string{"victim", "crit"} {
		svPoll(t, r, hWait, name+" running", func() bool { return svc(status(), name).State == "running" })
	}
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
	t1 := time.Now()
	cmd := tendCmdAt(t, sock, "status")
	out, err := cmd.CombinedOutput()
	if d := time.Since(t1); err != nil || d > time.Second {
		t.Errorf("tend status: %v after %v, want an answer within 1s\n%s", err, d, out)
	}

	// Health answers, and tells the truth: healthy (stuckdir and victim
	// are not critical), down naming crit once crit is killed, healthy
	// again once it runs.
	health := func() (int, string) {
		t.Helper()
		t1 := time.Now()
		code, body := rawGet(t, sock, "/v1/health")
		if d := time.Since(t1); d > time.Second {
			t.Errorf("GET /v1/health took %v, want within 1s", d)
		}
		return code, body
	}
	if code, body := health(); code != 200 || !strings.Contains(body, `"healthy":true`) {
		t.Errorf("GET /v1/health with closes stuck = %d %s, want 200 healthy", code, body)
	}
	oldCrit, killed := kill("crit")
	var body string
	for code := 200; code == 200; {
		code, body = health()
		if time.Since(killed) > time.Second {
			t.Errorf("GET /v1/health still %d %s 1s after critical crit was killed, want 503 naming it", code, body)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(body, `"service":"crit"`) || !strings.Contains(body, `"not_ready":["crit"]`) {
		t.Errorf("GET /v1/health after crit was killed = %s, want crit down and not ready", body)
	}
	svPoll(t, r, hWait, "GET /v1/health healthy again", func() bool {
		code, body := health()
		return code == 200 && strings.Contains(body, `"healthy":true`)
	})
	if s := svc(status(), "crit"); s.State != "running" || s.PID == nil || *s.PID == oldCrit {
		t.Errorf("health is back but crit = %+v, want running again with a new pid", s)
	}
	t.Logf("crit killed: health down, then healthy again %v later (backoff 1s)", time.Since(killed))

	// A PATH of nearly 1 MiB is looked up (on the lookup pool) while a
	// service is killed and restarted and orphans are reaped: all of that
	// must be done before its answer comes.
	looked := slowLookup(t, c, dir)

	// A killed service is reaped and restarted.
	old, killed := kill("victim")
	svPoll(t, r, hWait, "victim restarted", func() bool {
		s := svc(status(), "victim")
		return s.State == "running" && s.PID != nil && *s.PID != old
	})
	if d := time.Since(killed); d > time.Second {
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
	t1 = time.Now()
	var st api.Status
	for {
		st = status()
		z := zombiesUnder(r.pid())
		if st.Counters.OrphansReaped >= 20 && len(z) == 0 {
			break
		}
		if time.Since(t1) > 1050*time.Millisecond {
			t.Errorf("1s after the orphans' 50ms: %d orphans reaped (want at least 20), zombies under tend %v", st.Counters.OrphansReaped, z)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	reaped := time.Now()
	lk := <-looked
	if !lk.start.Before(killed) || !lk.end.After(reaped) {
		// With the lookup under the reaper lock, the restart and the
		// reaping wait for its end (the code before issue 10 did).
		t.Errorf("the 1 MiB PATH's lookup ran %v-%v (%v), want it to span the kill (%v) and the orphans' reaping (%v): held up by it, or (if everything above passed) too short a lookup (raise slowPathHops)",
			lk.start.Format("15:04:05.000"), lk.end.Format("15:04:05.000"), lk.took, killed.Format("15:04:05.000"), reaped.Format("15:04:05.000"))
	}
	var se *api.StatusError
	if !errors.As(lk.err, &se) || se.Code < 400 || !strings.Contains(se.Msg, "tend-nx-command") {
		t.Errorf("the 1 MiB PATH's answer: %v, want an error naming tend-nx-command (422 not found, or the lookup's timeout)", lk.err)
	}
	t.Logf("the 1 MiB PATH's lookup took %v: %v", lk.took, lk.err)

	if n := tendThreads(t, r); n >= stuckMaxThreads {
		t.Errorf("tend has %d threads at the end, want fewer than %d", n, stuckMaxThreads)
	}
	if s := svc(st, "stuckdir"); s.State == "running" {
		t.Errorf("stuckdir = %+v: running, although its dir cannot be looked up", s)
	}

	// A stop with the closes still stuck: within the budget and teardown.
	if wchans(r.pid())["wait_woken"] == 0 {
		t.Fatalf("no tend thread lingers in close any more: the stop would prove nothing; wchans %v", wchans(r.pid()))
	}
	code, took := svTermAndExit(t, r)
	if took > stuckGrace+stuckTeardown {
		t.Errorf("SIGTERM with closes stuck: tend exited %d after %v, want within the %v budget plus %v", code, took, stuckGrace, stuckTeardown)
	}
	t.Logf("SIGTERM with closes stuck: tend exited %d after %v; the whole test took %v", code, took, time.Since(t0))
}

// lookup is how a request's lookup went: when it was sent and answered,
// and its error.
type lookup struct {
	start, end time.Time
	took       time.Duration
	err        error
}

// slowLookup sends, on a goroutine, a job request whose PATH is nearly the
// 1 MiB body limit, each entry a directory that does not exist, and
// reports how it went on the channel once its answer (an error) came.
// Each entry is "l", a dangling symlink in dir (the job's dir) whose target
// walks slowPathHops components before reaching a name that does not
// exist: a plain "/n" entry is looked up in about 0.4 µs, so 1 MiB of them
// would take 0.14 s, too short to see anything happen during it.
func slowLookup(t *testing.T, c *api.Client, dir string) <-chan lookup {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("d/../", slowPathHops)+"nx", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	req := api.JobRequest{Argv: []string{"tend-nx-command"}, Dir: dir}
	b, _ := json.Marshal(req)
	// The body's JSON plus the env: "PATH=l:l:...:l" within 1 KiB of 1 MiB.
	n := (1<<20 - 1024 - len(b) - len(`,"env":["PATH="]`)) / 2
	req.Env = []string{"PATH=" + strings.Repeat("l:", n) + "l"}
	out := make(chan lookup, 1)
	ctx := hCtx(t)
	go func() {
		lk := lookup{start: time.Now()}
		_, lk.err = c.Spawn(ctx, req, nil)
		lk.end = time.Now()
		lk.took = lk.end.Sub(lk.start)
		out <- lk
	}()
	return out
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

// TestStuckHungExec pins the one limit of DESIGN.md §1.9 that remains: an
// executable on a hung filesystem stalls the fork under the reaper lock.
// prog is on a FUSE file system whose server answers LOOKUP, GETATTR and
// ACCESS (so the lookup before the lock passes) but never OPEN or READ.
//
// A job request for prog, track group (as with cgroup, tend forks prog
// itself): the lookup succeeds; under the lock, the vfork'd child's execve
// blocks in FUSE_OPEN (request_wait_answer), and with it tend's forking
// thread (kernel_clone, waiting for the vfork to end). That thread is the
// loop's and holds the reaper lock, so while it lasts: the request gets no
// answer; `GET /v1/status` and `GET /v1/health` get none (the loop answers
// them); a service killed with SIGKILL stays <defunct> (the reap pass
// needs the lock). Track subreaper: the unit helper, tend's child, forks
// prog, so the helper is what hangs: the request waits, but the API
// answers and the killed service is reaped and runs again within 1 s.
// Either way, aborting the FUSE connection (what `umount -f`, or the
// server's end, does) fails the open (ENOTCONN; ECONNABORTED on Linux
// 6.18): within 1 s the request gets a 422 naming prog and the errno, the
// killed service runs again, the API answers. If the group case starts
// failing because tend stays responsive, the limit is gone: update
// README's "Nothing slow under the lock" and docs/GUARANTEES.md §0.
func TestStuckHungExec(t *testing.T) {
	needRoot(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	needOrSkip(t, err, "/dev/fuse")
	for _, tc := range []struct {
		track  string
		stalls bool // tend's loop and reaper stall
	}{{"group", true}, {"subreaper", false}} {
		t.Run(tc.track, func(t *testing.T) { hungExec(t, tc.track, tc.stalls) })
	}
}

func hungExec(t *testing.T, track string, stalls bool) {
	dir := hDir(t)
	cfg := fmt.Sprintf(`
[control]
socket = %s

[[service]]
name = "victim"
command = ["/bin/sleep", "100000"]
restart = "always"
backoff = "100ms"
# tend's own child (whatever TEND_TRACK says): its exit is tend's to reap.
track = "group"
`, svQuote(filepath.Join(dir, "s")))
	r, sock := hConfig(t, opts{argv0: fuseServed(dir)}, dir, cfg)
	t.Cleanup(func() { fuseAbort(t, r, dir) }) // runs before the namespace is killed
	c := hClient(t, sock)
	// within calls f with a context of d and reports its error.
	within := func(d time.Duration, f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return f(ctx)
	}
	status := func() api.Status {
		t.Helper()
		var st api.Status
		if err := within(time.Second, func(ctx context.Context) (err error) { st, err = c.Status(ctx); return err }); err != nil {
			t.Fatalf("status: %v; tend's stderr:\n%s", err, r.stderrNow())
		}
		return st
	}
	victim := func() api.Service {
		t.Helper()
		for _, s := range status().Services {
			if s.Name == "victim" {
				return s
			}
		}
		t.Fatal("no service victim")
		return api.Service{}
	}
	svPoll(t, r, hWait, "victim running", func() bool { return victim().State == "running" })
	old := *victim().PID

	// The control: prog is there, an executable regular file, for the
	// test itself (through tend's mount namespace) as for tend's lookup.
	prog := filepath.Join(dir, "fuse", "prog")
	seen := fmt.Sprintf("/proc/%d/root%s", r.pid(), prog)
	if st, err := os.Stat(seen); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o755 {
		t.Fatalf("stat %s: %v, %v; want a regular file, 0755 (the FUSE server's LOOKUP answer)", seen, st, err)
	}
	if err := unix.Access(seen, unix.X_OK); err != nil {
		t.Fatalf("access(%s, X_OK): %v, want it executable (the FUSE server's ACCESS answer)", seen, err)
	}

	type answer struct {
		err error
		at  time.Time
	}
	answered := make(chan answer, 1)
	go func() {
		_, err := c.Spawn(hCtx(t), api.JobRequest{Track: track, Argv: []string{prog}}, nil)
		answered <- answer{err, time.Now()}
	}()
	svPoll(t, r, hWait, "the FUSE server got prog's OPEN", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "fuselog"))
		return strings.Contains(string(b), "OPEN 2 (never answered)")
	})
	// The exec hangs in FUSE_OPEN in a vfork'd child (its cmdline still
	// its parent's: tend's, or the helper's), whose parent waits in
	// kernel_clone.
	svPoll(t, r, hWait, "a descendant of tend waiting on the FUSE server", func() bool {
		for _, p := range descendants(r.pid()) {
			if w, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", p)); string(w) == "request_wait_answer" {
				return true
			}
		}
		return false
	})
	if n := wchans(r.pid())["kernel_clone"]; (n > 0) != stalls {
		t.Errorf("track %s: %d tend threads wait in kernel_clone (a vfork), want them %v", track, n, map[bool]string{true: "1", false: "none: the helper forks"}[stalls])
	}
	b, _ := os.ReadFile(filepath.Join(dir, "fuselog"))
	t.Logf("the FUSE server's requests:\n%s", b)

	// What stalls: the API, and reaping (or, through a helper, nothing).
	for _, call := range []struct {
		name string
		f    func(ctx context.Context) error
	}{
		{"GET /v1/status", func(ctx context.Context) error { _, err := c.Status(ctx); return err }},
		{"GET /v1/health", func(ctx context.Context) error { _, err := c.Health(ctx); return err }},
	} {
		err := within(time.Second, call.f)
		if stalls && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s during the hung exec: %v, want no answer within 1s (the limit: the loop forks under the reaper lock)", call.name, err)
		}
		if !stalls && err != nil {
			t.Errorf("%s during the helper's hung exec: %v, want an answer within 1s", call.name, err)
		}
	}
	host := svHostPid(t, r, old)
	killed := time.Now()
	if err := unix.Kill(host, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if stalls {
		svPoll(t, r, hWait, "victim <defunct>", func() bool { st, _, _ := procStat(host); return st == 'Z' })
		time.Sleep(time.Second) // a wait that asserts nothing is reaped in it
		if st, _, _ := procStat(host); st != 'Z' {
			t.Errorf("victim, killed with SIGKILL %v ago during the hung exec, is in state %q, want still <defunct> (the reap pass waits for the lock)", time.Since(killed), st)
		}
	} else {
		svPoll(t, r, hWait, "victim running again", func() bool {
			s := victim()
			return s.State == "running" && s.PID != nil && *s.PID != old
		})
		if d := time.Since(killed); d > time.Second {
			t.Errorf("victim ran again %v after its SIGKILL during the helper's hung exec, want within 1s", d)
		}
	}
	select {
	case a := <-answered:
		t.Fatalf("the job request for prog was answered during the hung exec: %v", a.err)
	default:
	}

	// The abort ends it.
	aborted := time.Now()
	fuseAbort(t, r, dir)
	var a answer
	select {
	case a = <-answered:
	case <-time.After(hWait):
		t.Fatalf("no answer to the job request %v after the FUSE connection was aborted", hWait)
	}
	var se *api.StatusError
	if d := a.at.Sub(aborted); d > time.Second || !errors.As(a.err, &se) || se.Code != 422 || !strings.Contains(se.Msg, prog) ||
		!strings.Contains(se.Msg, "ENOTCONN") && !strings.Contains(se.Msg, "ECONNABORTED") {
		t.Errorf("the job request's answer %v after the abort: %v; want within 1s a 422 naming %s and the abort's errno", d, a.err, prog)
	}
	svPoll(t, r, hWait, "victim running again", func() bool {
		s := victim()
		return s.State == "running" && s.PID != nil && *s.PID != old
	})
	if d := time.Since(aborted); stalls && d > time.Second {
		t.Errorf("victim ran again %v after the abort, want within 1s (backoff 100ms)", d)
	}
	// The unit helper whose command failed ends then: reaped at once,
	// but not necessarily before this looks.
	svPoll(t, r, time.Second, "no zombie under tend after the abort", func() bool { return len(zombiesUnder(r.pid())) == 0 })
	t.Logf("after the abort: the answer in %v (%v)", a.at.Sub(aborted), a.err)
}
