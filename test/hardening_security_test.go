//go:build linux

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// Security: the peer's credentials decide everything, nobody gets more than
// they had, and nothing of tend's leaks into its children.

const hGroup = 4242 // the socket's group in these tests

// hSecure starts tend (supervisor mode, PID 1) with a socket any member of
// hGroup may use, a secret in its environment, and a service.
func hSecure(t *testing.T) (*tendRun, string, string) {
	t.Helper()
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\nmode = \"0666\"\ngroup = \"%d\"\n", svQuote(filepath.Join(dir, "s")), hGroup) +
		svShell("svc", dir, "ls /proc/self/fd > $D/svcfds; exec sleep 1000") +
		svShell("svc2", dir, "exec sleep 1000")
	r, sock := hConfig(t, opts{env: []string{"TEND_HARDENING_SECRET=hunter2"}}, dir, body)
	return r, sock, dir
}

func hSpawnJSON(req api.JobRequest) string {
	b, _ := json.Marshal(req)
	return string(b)
}

// A caller in two groups: its job runs with its uid, its gid and both
// groups, never root's; it may not name another user; it gets only PATH,
// HOME and TEND_SOCKET of an environment, never tend's.
func TestHardeningCallerIdentity(t *testing.T) {
	t.Parallel()
	r, sock, _ := hSecure(t)
	out := hAs(t, 1000, 1000, []int{1000, hGroup}, sock, "spawn", hSpawnJSON(api.JobRequest{Argv: []string{"sh", "-c", "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' /proc/self/status"}}))
	t.Logf("job of uid 1000 in groups 1000,%d: %q", hGroup, out)
	if len(out) < 4 || out[0] != "1000" || out[1] != "1000" {
		t.Fatalf("job output %q, want uid 1000 gid 1000", out)
	}
	groups := strings.Fields(out[2])
	slices.Sort(groups)
	if want := []string{"1000", fmt.Sprint(hGroup)}; !slices.Equal(groups, want) {
		t.Errorf("job's id -G = %v, want %v", groups, want)
	}
	for _, l := range out[3:] {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "Uid:" || f[0] == "Gid:") && slices.ContainsFunc(f[1:], func(s string) bool { return s != "1000" }) {
			t.Errorf("job's %q: some id is not 1000", l)
		}
	}
	if f := strings.Fields(out[len(out)-1]); len(f) != 3 || f[0] != "job" || f[2] != "0" {
		t.Errorf("job record line %q, want exit 0", out[len(out)-1])
	}
	out = hAs(t, 1000, 1000, []int{1000, hGroup}, sock, "spawn", hSpawnJSON(api.JobRequest{Argv: []string{"env"}}))
	for _, l := range out[:len(out)-1] {
		k, _, _ := strings.Cut(l, "=")
		if k != "PATH" && k != "HOME" && k != "TEND_SOCKET" {
			t.Errorf("a non-root caller's job got %q in its environment (only PATH, HOME, TEND_SOCKET)", l)
		}
	}
	if out := hAs(t, 1000, 1000, []int{1000, hGroup}, sock, "spawn", hSpawnJSON(api.JobRequest{Argv: []string{"id"}, User: "root"})); out[0] != "code 403" {
		t.Errorf("uid 1000 naming user root: %q, want 403", out)
	}
	if out := hAs(t, 1000, 1000, []int{1000, hGroup}, sock, "spawn", hSpawnJSON(api.JobRequest{Argv: []string{"id"}, User: "0:0"})); out[0] != "code 403" {
		t.Errorf("uid 1000 naming user 0:0: %q, want 403", out)
	}
	hAlive(t, r, hClient(t, sock))
}

// Another uid's jobs are invisible (404, not 403: ids do not leak) and
// untouchable; services are for root and tend's uid only; a caller outside
// the socket's group is refused on every request, whatever it asks.
func TestHardeningCallerIsolation(t *testing.T) {
	t.Parallel()
	r, sock, _ := hSecure(t)
	c := hClient(t, sock)
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sleep", "1000"}}, nil) // root's job
	if err != nil {
		t.Fatal(err)
	}
	mine := hAs(t, 1000, 1000, []int{hGroup}, sock, "spawn", hSpawnJSON(api.JobRequest{Argv: []string{"true"}}))
	id1000 := strings.Fields(mine[len(mine)-1])[1]
	for _, tc := range []struct {
		uid    int
		groups []int
		action []string
		want   string
	}{
		{1001, []int{hGroup}, []string{"job", j.ID}, "code 404"},
		{1001, []int{hGroup}, []string{"job", id1000}, "code 404"},
		{1001, []int{hGroup}, []string{"signal", j.ID}, "code 404"},
		{1001, []int{hGroup}, []string{"signal", id1000}, "code 404"},
		{1001, []int{hGroup}, []string{"list"}, "ids"},
		{1000, []int{hGroup}, []string{"list"}, "ids " + id1000},
		{1001, []int{hGroup}, []string{"service", "restart", "svc"}, "code 403"},
		{1001, []int{hGroup}, []string{"service", "stop", "svc"}, "code 403"},
		{1001, []int{hGroup}, []string{"service", "signal", "svc"}, "code 403"},
		{1001, []int{hGroup}, []string{"service", "restart", "nosuch"}, "code 403"},
		{1002, nil, []string{"status"}, "code 403"},
		{1002, nil, []string{"list"}, "code 403"},
		{1002, nil, []string{"spawn", hSpawnJSON(api.JobRequest{Argv: []string{"true"}})}, "code 403"},
		{1002, nil, []string{"job", j.ID}, "code 403"},
		{1002, nil, []string{"signal", j.ID}, "code 403"},
	} {
		out := hAs(t, tc.uid, tc.uid, tc.groups, sock, tc.action...)
		if strings.Join(out, "|") != tc.want {
			t.Errorf("uid %d groups %v %v: %q, want %q", tc.uid, tc.groups, tc.action, out, tc.want)
		}
	}
	if got, err := c.Job(hCtx(t), j.ID); err != nil || got.State != api.StateRunning {
		t.Errorf("root's job after the others' attempts: %+v, %v; want still running", got, err)
	}
	st, err := c.Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Runs != 1 || s.State != "running" {
			t.Errorf("service %s after the others' attempts: %+v, want run 1 still running", s.Name, s)
		}
	}
	hAlive(t, r, c)
}

// hInheritedFDs lists the fds above 2 this test process would pass to any
// child (not close-on-exec): whatever started `go test` left them open.
func hInheritedFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			out = append(out, e.Name())
		}
	}
	return out
}

// hFDSet is a listing of /proc/self/fd, sorted, as one string.
func hFDSet(fds []string) string {
	fds = slices.Clone(fds)
	slices.SortFunc(fds, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return strings.Join(fds, " ")
}

// No fd of tend's own leaks into a job, a service or the main process: each
// lists /proc/self/fd and sees 0, 1, 2 and the one ls opens to list it. The
// main process and services also get what tend itself inherited (as with
// tini); a job gets only its stdio (DESIGN.md §5: "Jobs inherit only their
// stdio"), whatever tend inherited.
func TestHardeningNoFDLeaks(t *testing.T) {
	t.Parallel()
	inherited := hInheritedFDs(t)
	r, sock, dir := hSecure(t)
	c := hClient(t, sock)
	// Hold a few connections open, so that tend has fds to leak.
	for range 5 {
		hDial(t, sock)
	}
	ls := "0 1 2 3"
	passed := hFDSet(append([]string{"0", "1", "2", "3"}, inherited...))
	if len(inherited) > 0 {
		t.Logf("this test inherited fds %v: tend, the main process and services get them too", inherited)
		// ls's own fd comes after the inherited ones when they take 3.
		passed = ""
	}
	lines := svWaitLines(t, r, filepath.Join(dir, "svcfds"), 1)
	if got := hFDSet(lines); got != ls && (passed == "" && len(lines) != 4+len(inherited) || passed != "" && got != passed) {
		t.Errorf("service's fds: %q, want %q plus what tend inherited (%v)", got, ls, inherited)
	}
	out := hAs(t, 1000, 1000, []int{hGroup}, sock, "spawn", hSpawnJSON(api.JobRequest{Argv: []string{"ls", "/proc/self/fd"}}))
	if got := hFDSet(out[:len(out)-1]); got != ls {
		t.Errorf("job's fds: %q, want %q (tend inherited %v)", got, ls, inherited)
	}
	// A job with no fds passed: its output goes to a file it opens itself.
	list := filepath.Join(dir, "jobfds")
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", "exec ls /proc/self/fd > " + list}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hWaitJob(t, c, j.ID)
	if got := hFDSet(svLines(list)); got != ls {
		t.Errorf("job without passed fds: fds %q, want %q (tend inherited %v)", got, ls, inherited)
	}
	main := filepath.Join(hDir(t), "mainfds")
	r2 := startTend(t, opts{pid1: true}, "--socket", filepath.Join(hDir(t), "s"), "--", "sh", "-c", "exec ls /proc/self/fd > "+main)
	r2.expectExit(0)
	if got := svLines(main); hFDSet(got) != ls && len(got) != 4+len(inherited) {
		t.Errorf("main process's fds: %q, want %q plus what tend inherited (%v)", hFDSet(got), ls, inherited)
	}
}

// tend started with an extra open fd (3, not close-on-exec): a job still
// gets only its stdio.
func TestHardeningJobInheritsOnlyStdio(t *testing.T) {
	t.Parallel()
	r, sock := hServe(t, opts{extra: true}, hDir(t), nil)
	c := hClient(t, sock)
	list := filepath.Join(hDir(t), "jobfds")
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", "exec ls /proc/self/fd > " + list}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hWaitJob(t, c, j.ID)
	if got := hFDSet(svLines(list)); got != "0 1 2 3" {
		t.Errorf("job of a tend that inherited fd 3 (and %v): fds %q, want only stdio and ls's own (0 1 2 3)", hInheritedFDs(t), got)
	}
	r.closeExtra()
}

// The socket never exists with a wider mode than configured: watched from
// before tend starts until it serves.
func TestHardeningSocketModeNeverWider(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o600, 0o660} {
		dir := hDir(t)
		sock := filepath.Join(dir, "s")
		var seen, wider atomic.Int64
		var widest atomic.Uint32
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				// The final path, and any private directory it is bound in.
				paths := []string{sock}
				if ents, err := os.ReadDir(dir); err == nil {
					for _, e := range ents {
						if e.IsDir() {
							paths = append(paths, filepath.Join(dir, e.Name(), "s"))
						}
					}
				}
				for _, p := range paths {
					fi, err := os.Lstat(p)
					if err != nil || fi.Mode().Type() != os.ModeSocket {
						continue
					}
					seen.Add(1)
					if fi.Mode().Perm()&^mode != 0 && p == sock {
						wider.Add(1)
						widest.Store(uint32(fi.Mode().Perm()))
					}
				}
			}
		}()
		body := fmt.Sprintf("[control]\nsocket = %s\nmode = \"%04o\"\n", svQuote(sock), mode)
		if mode&0o070 != 0 {
			body += fmt.Sprintf("group = \"%d\"\n", hGroup)
		}
		r, _ := hConfig(t, opts{}, dir, body, "--", "sleep", "100000")
		time.Sleep(50 * time.Millisecond) // keep watching a little after it serves
		close(stop)
		<-done
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("mode %04o: socket seen %d times while starting, final mode %04o", mode, seen.Load(), fi.Mode().Perm())
		if wider.Load() > 0 {
			t.Errorf("mode %04o: the socket was seen %d times with a wider mode (%04o)", mode, wider.Load(), widest.Load())
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("socket mode %04o, want %04o", fi.Mode().Perm(), mode)
		}
		r.signal(unix.SIGTERM)
		r.wait()
	}
}

// The other side of the same line: the main process and the services get
// the fds tend inherited, each at its number, as tini passes them on (socket
// activation relies on it), while jobs and ready probes do not.
func TestHardeningMainAndServicesKeepInheritedFDs(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	mainOut, svcOut := filepath.Join(dir, "mainfd3"), filepath.Join(dir, "svcfd3")
	// The shell's own fd 3 (not ls's directory fd): the pipe tend inherited.
	show := func(out string) string {
		return "readlink /proc/$$/fd/3 > " + out + ".tmp; mv " + out + ".tmp " + out
	}
	r := startTend(t, opts{pid1: true, extra: true}, "--", "sh", "-c", show(mainOut)+"; exec sleep 100000")
	svPoll(t, r, svWait, "main looked at its fd 3", func() bool { return svExists(mainOut) })
	if got := strings.Join(svLines(mainOut), ""); !strings.HasPrefix(got, "pipe:") {
		t.Errorf("main process of a tend that inherited fd 3 (a pipe): fd 3 is %q, want the pipe", got)
	}
	r.closeExtra()
	r.kill()

	r = svStart(t, opts{pid1: true, extra: true}, dir, svShell("s", dir, show(svcOut)+"; exec sleep 100000"))
	svPoll(t, r, svWait, "service looked at its fd 3", func() bool { return svExists(svcOut) })
	if got := strings.Join(svLines(svcOut), ""); !strings.HasPrefix(got, "pipe:") {
		t.Errorf("service of a tend that inherited fd 3 (a pipe): fd 3 is %q, want the pipe", got)
	}
	r.closeExtra()
}
