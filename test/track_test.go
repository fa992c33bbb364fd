//go:build linux

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// Unit tracking (DESIGN.md §1.11): what a service run or a job starts dies
// with it, however it forks. Each run of the service below starts a plain
// background child and an escaper: a double fork and setsid, ignoring
// SIGTERM. With track = "cgroup" (tend in a delegated cgroup v2 of its
// own) and "subreaper" neither survives a restart, a crash of the main
// process or an API stop; with track = "group" the escaper does, and the
// test pins that too: it is what group cannot catch.

// trackScript records the main's, the child's and the escaper's pids (in
// tend's namespace), then says the run is ready once all three are known.
const trackScript = `echo $$ >> $D/main
sleep 1000 & echo $! >> $D/kids
( setsid sh -c 'trap "" TERM; echo $$ >> $D/esc; exec sleep 1002' & )
while [ "$(wc -l < $D/esc)" -lt "$(wc -l < $D/main)" ]; do sleep 0.01; done
echo ready >> $D/runs
wait`

// nsAlive reports whether a descendant of tend has pid nsPid in tend's
// namespace (a zombie counts as gone).
func nsAlive(r *tendRun, nsPid int) bool {
	for _, p := range descendants(r.pid()) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		var ns, state string
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) > 1 && f[0] == "NSpid:":
				ns = f[len(f)-1]
			case len(f) > 1 && f[0] == "State:":
				state = f[1]
			}
		}
		if ns == strconv.Itoa(nsPid) {
			return state != "Z"
		}
	}
	return false
}

// trackOpts are the opts of a track test's tend: for cgroup modes in a
// delegated cgroup of its own, and with clone3 refused for -noclone3.
func trackOpts(t *testing.T, mode string, o opts) opts {
	if strings.HasPrefix(mode, "cgroup") {
		o = inCgroup(t, o)
	}
	if strings.HasSuffix(mode, "-noclone3") {
		o = noClone3(o)
	}
	return o
}

// svcStatus is name's entry in st.
func svcStatus(t *testing.T, st api.Status, name string) api.Service {
	t.Helper()
	for _, s := range st.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("status has no service %q: %+v", name, st.Services)
	return api.Service{}
}

// nthPid is line n (1-based) of a pid file.
func nthPid(t *testing.T, r *tendRun, path string, n int) int {
	t.Helper()
	lines := svWaitLines(t, r, path, n)
	pid, err := strconv.Atoi(lines[n-1])
	if err != nil {
		t.Fatalf("%s line %d: %q", path, n, lines[n-1])
	}
	return pid
}

func TestTrackLeftoversDieWithTheirService(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cgroup", "cgroup-noclone3", "subreaper", "group"} {
		track, _, _ := strings.Cut(mode, "-")
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			o := trackOpts(t, mode, opts{pid1: true})
			dir := hDir(t)
			sock := filepath.Join(dir, "s")
			body := "[defaults]\ntrack = \"" + track + "\"\n[control]\nsocket = \"" + sock + "\"\n" +
				svShell("svc", dir, trackScript, `restart = "always"`, `backoff = "100ms"`, `stop_timeout = "1s"`) +
				svShell("idle", dir, "exec sleep 100000") // keeps tend up once svc is stopped
			for _, f := range []string{"main", "kids", "esc", "runs"} {
				hWrite(t, filepath.Join(dir, f), "")
			}
			r := svStart(t, o, dir, body)
			c := api.NewClient(sock)
			t.Cleanup(c.CloseIdle)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			escapes := track == "group"

			// run n's processes, once its runs line is there.
			run := func(n int) (main, kid, esc int) {
				svWaitLines(t, r, filepath.Join(dir, "runs"), n)
				return nthPid(t, r, filepath.Join(dir, "main"), n), nthPid(t, r, filepath.Join(dir, "kids"), n),
					nthPid(t, r, filepath.Join(dir, "esc"), n)
			}
			// after: run n+1 has started, so run n's unit is over: its
			// child is gone, its escaper too unless the track lets it go.
			after := func(what string, n, kid, esc int, kidMayLive bool) {
				t.Helper()
				run(n + 1)
				if !kidMayLive && nsAlive(r, kid) {
					t.Errorf("%s: run %d's child %d outlived its run", what, n, kid)
				}
				if got := nsAlive(r, esc); got != escapes {
					t.Errorf("%s: run %d's escaper %d alive = %v, want %v with track %s", what, n, esc, got, escapes, track)
				}
			}

			_, kid1, esc1 := run(1)
			st, err := c.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sv := svcStatus(t, st, "svc")
			if sv.Track != track || sv.Processes == nil {
				t.Fatalf("status: track %q processes %v, want %q and a count", sv.Track, sv.Processes, track)
			}
			// cgroup, subreaper: main, child and escaper at least; group: main and child.
			if want := map[string]int{"cgroup": 3, "subreaper": 3, "group": 2}[track]; *sv.Processes < want {
				t.Errorf("status: %d processes, want >= %d", *sv.Processes, want)
			}
			if strings.HasSuffix(mode, "noclone3") && !strings.Contains(r.stderrNow(), "clone3=false") {
				t.Errorf("tend under the clone3 filter does not say it uses the trampoline:\n%s", r.stderrNow())
			}

			if err := c.ServiceOp(ctx, "svc", "restart", ""); err != nil {
				t.Fatal(err)
			}
			after("restart", 1, kid1, esc1, false)

			main2, kid2, esc2 := run(2)
			if err := unix.Kill(svHostPid(t, r, main2), unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// group: the leader is gone, its group is no longer reachable
			// through a handle, so its child may outlive it.
			after("crash", 2, kid2, esc2, escapes)
			if !escapes {
				svWaitLog(t, r, "service svc: 2 leftovers killed", "svc")
			}

			_, kid3, esc3 := run(3)
			if err := c.ServiceOp(ctx, "svc", "stop", ""); err != nil {
				t.Fatal(err)
			}
			svPoll(t, r, svWait, "svc stopped", func() bool {
				st, err := c.Status(ctx)
				return err == nil && svcStatus(t, st, "svc").State == "stopped"
			})
			if nsAlive(r, kid3) {
				t.Errorf("stop: the child %d outlived its run", kid3)
			}
			if got := nsAlive(r, esc3); got != escapes {
				t.Errorf("stop: the escaper %d alive = %v, want %v with track %s", esc3, got, escapes, track)
			}
		})
	}
}

// A job's timeout ends all of the job with the subreaper: the escaper too,
// counted in leftovers_killed; with group the escaper lives on.
func TestTrackJobTimeoutEndsTheUnit(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cgroup", "cgroup-noclone3", "subreaper", "group"} {
		track, _, _ := strings.Cut(mode, "-")
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			o := trackOpts(t, mode, opts{})
			jt := startJobsTend(t, o, "")
			f := filepath.Join(jt.dir, "esc-"+track)
			j := jt.spawn(t, api.JobRequest{
				Argv:    []string{"sh", "-c", `( setsid sh -c 'trap "" TERM; echo $$ > ` + f + `.tmp; mv ` + f + `.tmp ` + f + `; exec sleep 1002' & ); sleep 1000`},
				Timeout: "1s",
				Track:   track,
			})
			// Another user's job in the same unit kind: its identity and,
			// for cgroup units, its own cgroup (the trampoline joins it as
			// root, then drops to the user).
			r, w := mustPipe(t)
			defer r.Close()
			who := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "id -u; cat /proc/self/cgroup"}, User: "nobody",
				Track: track, Stdio: []int{1}}, w)
			w.Close()
			out := readAllWithin(t, r)
			if rec := jt.waitJob(t, who.ID); jobsExact(rec, 0) != nil || rec.Track != track {
				t.Errorf("nobody's job: %v, track %q", jobsExact(rec, 0), rec.Track)
			}
			if !strings.HasPrefix(out, "65534\n") || (track == "cgroup") != strings.Contains(out, "/job-"+who.ID) {
				t.Errorf("nobody's job printed %q; want uid 65534 and, with cgroup, its own cgroup", out)
			}

			rec := jt.waitJob(t, j.ID)
			if rec.Reason != api.ReasonTimeout || rec.Track != track {
				t.Fatalf("job: reason %q track %q, want %q and %q", rec.Reason, rec.Track, api.ReasonTimeout, track)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			esc, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			switch track {
			case "subreaper", "cgroup":
				// The record has the command's end at once; the leftovers
				// are counted once the unit is empty (after stop_grace, 5s:
				// the escaper ignores SIGTERM).
				svPoll(t, jt.tendRun, 15*time.Second, "leftovers_killed >= 1", func() bool {
					rec, err := jt.client.Job(context.Background(), j.ID)
					return err == nil && rec.LeftoversKilled >= 1
				})
				if nsAlive(jt.tendRun, esc) {
					t.Errorf("escaper %d alive once leftovers were counted", esc)
				}
			case "group":
				if !nsAlive(jt.tendRun, esc) {
					t.Errorf("escaper %d gone with track group: the test cannot tell the tracks apart", esc)
				}
			}
		})
	}
}

// A track asked for by name that this machine cannot give is refused with
// a message naming it, never silently downgraded: in a config, before
// anything starts (exit 2); in a job request, with 422, and tend goes on.
func TestTrackUnavailableRefused(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	r := svStart(t, opts{pid1: true}, dir, svShell("svc", dir, "exec sleep 1000", `track = "cgroup"`))
	if code := r.wait(); code != 2 {
		t.Errorf("tend with track = \"cgroup\" exited %d, want 2", code)
	}
	if want := `service "svc": track "cgroup": not available`; !strings.Contains(r.stderrNow(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderrNow())
	}

	jt := startJobsTend(t, opts{}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ track, want string }{
		{"cgroup", `track "cgroup": not available`},
		{"bogus", `track`},
	} {
		_, err := jt.client.Spawn(ctx, api.JobRequest{Argv: []string{"true"}, Track: tc.track}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("job with track %q: %v, want an error with %q", tc.track, err, tc.want)
		}
	}
	if code := hCode(errOf(jt.client.Spawn(ctx, api.JobRequest{Argv: []string{"true"}, Track: "cgroup"}, nil))); code != 422 {
		t.Errorf("track cgroup: HTTP %d, want 422", code)
	}
	j := jt.spawn(t, api.JobRequest{Argv: []string{"true"}})
	if rec := jt.waitJob(t, j.ID); rec.ExitCode == nil || *rec.ExitCode != 0 {
		t.Errorf("a job after the refusals: %+v", rec)
	}
}

// errOf drops a value, keeping the error.
func errOf[T any](_ T, err error) error { return err }
