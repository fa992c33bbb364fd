//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tendinit/tend/api"
)

// TestSupervisorReload: tend reload, POST /v1/reload and SIGHUP ([control]
// reload_on) as PID 1, under job load. A changed service restarts with its
// new keys, a removed one stops (nothing of it left) and is forgotten, an
// added one starts after what it names in after, an unchanged one keeps
// its process; [jobs] max_running is applied and said. A bad file is
// refused with every error, a change of [control] refused naming the key,
// and neither changes anything. 300 jobs run meanwhile: every one's record
// is exact, none touched.
func TestSupervisorReload(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	sock := filepath.Join(dir, "s")
	head := "[control]\nsocket = " + svQuote(sock) + "\nreload_on = \"SIGHUP\"\n"
	// Each run says its version.
	svc := func(name, v string, extra ...string) string {
		return svShell(name, dir, fmt.Sprintf(`echo "%s $$" >> "$D/%s.runs"; exec sleep 1000`, v, name), extra...)
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "tend.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slow := svShell("slow", dir, `trap '' TERM; touch "$D/slow.up"; while :; do sleep 0.05; done`, `stop_timeout = "2s"`)
	v1 := head + svc("keep", "1") + svc("change", "1") + svc("gone", "1") + slow
	r, _ := hConfig(t, opts{}, dir, v1)
	c := hClient(t, sock)
	status := func(name string) (api.Service, bool) {
		t.Helper()
		st, err := c.Status(hCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st.Services {
			if s.Name == name {
				return s, true
			}
		}
		return api.Service{}, false
	}
	for _, n := range []string{"keep", "change", "gone"} {
		svWaitLines(t, r, filepath.Join(dir, n+".runs"), 1)
	}
	svPoll(t, r, svWait, "slow up", func() bool { return svExists(filepath.Join(dir, "slow.up")) })
	svPoll(t, r, svWait, "every service running", func() bool {
		for _, n := range []string{"keep", "change", "gone"} {
			if s, ok := status(n); !ok || s.PID == nil {
				return false
			}
		}
		return true
	})
	keepPID := *must(status("keep")).PID
	goneHost := svHostPid(t, r, *must(status("gone")).PID)

	// Jobs all along: each exits with its own code.
	ctx, stopJobs := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	jobs := 0
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 100; i++ {
				code := (w*100 + i) % 50
				j, err := c.Spawn(context.Background(), api.JobRequest{Argv: []string{"sh", "-c", fmt.Sprintf("sleep 0.1; exit %d", code)}}, nil)
				if err == nil {
					j, err = c.Wait(context.Background(), j.ID, 0)
				}
				mu.Lock()
				jobs++
				if err != nil || j.ExitCode == nil || *j.ExitCode != code || j.Reason != api.ReasonExited {
					bad = append(bad, fmt.Sprintf("job %d: %+v %v", code, j, err))
				}
				mu.Unlock()
			}
		}()
	}

	count := func() int { mu.Lock(); defer mu.Unlock(); return jobs }
	svPoll(t, r, svWait, "jobs under way", func() bool { return count() >= 15 })

	// v2: change restarts, gone goes, added starts after keep, max_running 8.
	write(head + "[jobs]\nmax_running = 8\n" + svc("keep", "1") + svc("change", "2") + svc("added", "1", `after = ["keep"]`))
	res := cliRun(t, []string{"TEND_SOCKET=" + sock}, "reload", "--json")
	if res.code() != 0 {
		t.Fatalf("tend reload: %d %s %s", res.code(), res.stdout, res.stderr)
	}
	var rep api.Reload
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Added, []string{"added"}) || !slices.Equal(rep.Removed, []string{"gone", "slow"}) || !slices.Equal(rep.Changed, []string{"change"}) ||
		!slices.Contains(rep.Settings, "[jobs] max_running: 64 -> 8") {
		t.Errorf("reload answer %+v", rep)
	}
	runs := svWaitLines(t, r, filepath.Join(dir, "change.runs"), 2)
	if !strings.HasPrefix(runs[1], "2 ") {
		t.Errorf("change's second run: %q, want V=2", runs[1])
	}
	svWaitLines(t, r, filepath.Join(dir, "added.runs"), 1)
	svPoll(t, r, svWait, "gone forgotten", func() bool { _, ok := status("gone"); return !ok })
	if slices.Contains(descendants(r.pid()), goneHost) {
		t.Errorf("the removed service's process %d is still there", goneHost)
	}
	if k := must(status("keep")); *k.PID != keepPID || k.Runs != 1 {
		t.Errorf("keep: %+v; want untouched (pid %d, one run)", k, keepPID)
	}
	if !strings.Contains(r.stderrNow(), `msg=reloaded added=[added] removed="[gone slow]" changed=[change]`) {
		t.Errorf("the reload is not logged with its diff:\n%s", r.stderrNow())
	}

	// slow, removed, ignores its SIGTERM for 2 s: adding it back meanwhile
	// would make two services of one name.
	write(head + "[jobs]\nmax_running = 8\n" + svc("keep", "1") + svc("change", "2") + svc("added", "1", `after = ["keep"]`) + slow)
	res = cliRun(t, []string{"TEND_SOCKET=" + sock}, "reload")
	if res.code() != 1 || !strings.Contains(res.stderr, `service "slow", removed by the last reload, is still stopping`) {
		t.Errorf("re-adding a service still stopping: exit %d, stderr %q", res.code(), res.stderr)
	}
	svPoll(t, r, svWait, "slow killed at its stop_timeout and forgotten", func() bool { _, ok := status("slow"); return !ok })

	// A bad file: every error, nothing changed.
	write(head + svc("keep", "1") + "\n[[service]]\nname = \"x\"\n" + svc("more", "1", "restrat = \"always\""))
	res = cliRun(t, []string{"TEND_SOCKET=" + sock}, "reload")
	if res.code() != 1 || !strings.Contains(res.stderr, "config refused, nothing changed") ||
		!strings.Contains(res.stderr, `service "x": command: missing`) || !strings.Contains(res.stderr, `restrat: unknown key`) {
		t.Errorf("a bad file: exit %d, stderr %q; want 1 naming both errors", res.code(), res.stderr)
	}
	// A [control] change: refused by name, nothing changed (added is kept).
	write(strings.Replace(head, "reload_on", "idle_timeout = \"5m\"\nreload_on", 1) + svc("keep", "1"))
	res = cliRun(t, []string{"TEND_SOCKET=" + sock}, "reload")
	if res.code() != 1 || !strings.Contains(res.stderr, "[control] idle_timeout: changing it needs a restart of tend") {
		t.Errorf("a [control] change: exit %d, stderr %q", res.code(), res.stderr)
	}
	if _, ok := status("added"); !ok {
		t.Errorf("a refused reload removed a service")
	}

	// SIGHUP: reload_on.
	write(head + "[jobs]\nmax_running = 8\n" + svc("keep", "1") + svc("change", "2") + svc("added", "3", `after = ["keep"]`))
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	runs = svWaitLines(t, r, filepath.Join(dir, "added.runs"), 2)
	if !strings.HasPrefix(runs[1], "3 ") {
		t.Errorf("added after SIGHUP: %q, want V=3", runs[1])
	}

	at := count()
	svPoll(t, r, svWait, "jobs after the reloads", func() bool { return count() >= at+15 })
	stopJobs()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d jobs across the reloads", jobs)
	if len(bad) > 0 || jobs < 30 {
		t.Errorf("%d jobs, %d wrong: %q", jobs, len(bad), bad)
	}
	if k := must(status("keep")); *k.PID != keepPID || k.Runs != 1 {
		t.Errorf("keep after every reload: %+v; want untouched", k)
	}
	svTermAndExit(t, r)
}

func must(s api.Service, ok bool) api.Service {
	if !ok {
		panic("no such service")
	}
	return s
}
