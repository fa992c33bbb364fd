//go:build linux

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tendinit/tend/api"
)

// neverWaits is the seed's gateway: it forks workers that exit at once and
// never waits for them, then says how many and goes on living.
const neverWaits = `
import os, sys, time
for i in range(8):
    if os.fork() == 0:
        os._exit(0)
open(os.environ["D"] + "/forked", "w").write(str(os.getpid()))
time.sleep(1000)
`

// TestZombiesNamed: zombies whose parent is alive are not PID 1's to reap,
// but tend names them. A service that never waits for its 8 children and
// a job (as uid 1000) whose shell left 3 to an exec'd sleep: GET
// /v1/zombies names both parents with their counts, pids and units; uid
// 1000 sees only its own; the [zombies] scan warns once of the parent over
// warn_at (5), with a zombie.held event, and not of the one under it;
// health_max (6) fails /v1/health naming it; the metrics count them; tend
// zombies prints them.
func TestZombiesNamed(t *testing.T) {
	t.Parallel()
	r, sock, dir := hZombieTend(t)
	c := hClient(t, sock)
	ev, err := c.Events(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	held := make(chan api.Event, 16)
	go func() {
		for {
			e, err := ev.Next()
			if err != nil {
				return
			}
			if e.Type == api.EventZombieHeld {
				held <- e
			}
		}
	}()
	j, err := c.Spawn(hCtx(t), api.JobRequest{User: "1000:1000", Argv: []string{"sh", "-c", "(exit 0) & (exit 0) & (exit 0) & exec sleep 1000"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svPoll(t, r, svWait, "the gateway's pid written", func() bool { b, _ := os.ReadFile(filepath.Join(dir, "forked")); return len(b) > 0 })
	gwPid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "forked"))))
	var zs []api.ZombieParent
	svPoll(t, r, svWait, "both parents named", func() bool {
		zs, err = c.Zombies(hCtx(t))
		return err == nil && len(zs) == 2 && zs[0].Zombies == 8 && zs[1].Zombies == 3 // the children exit as they please
	})
	gw, job := zs[0], zs[1]
	if gw.PID != gwPid || gw.Zombies != 8 || len(gw.ZombiePIDs) != 8 || gw.Owner != "service gw" || gw.UID != 0 || gw.Command != "python3" {
		t.Errorf("the gateway: %+v; want pid %d, 8 zombies, service gw, uid 0, python3", gw, gwPid)
	}
	if job.Zombies != 3 || job.Owner != "job "+j.ID || job.UID != 1000 || job.Command != "sleep" || job.FirstSeen.IsZero() {
		t.Errorf("the job: %+v; want 3 zombies held by sleep, job %s, uid 1000", job, j.ID)
	}
	if out := hAs(t, 1000, 1000, []int{1000, hGroup}, sock, "zombies"); len(out) != 1 || out[0] != fmt.Sprintf("zombies %d:3:job %s", job.PID, j.ID) {
		t.Errorf("uid 1000's GET /v1/zombies: %q, want only its job's sleep", out)
	}
	svWaitLog(t, r, "a process holds zombies it never waited for: only it can reap them (PID 1 cannot)", "")
	e := <-held
	if e.Zombie == nil || e.Zombie.Owner != "service gw" || e.Zombie.Zombies < 5 {
		t.Errorf("zombie.held: %+v", e.Zombie)
	}
	var h api.Health
	svPoll(t, r, svWait, "health failing over health_max", func() bool {
		h, err = c.HealthAt(hCtx(t), api.HealthAlive)
		return err == nil && !h.Healthy && downHas(h.Down, "gw", "holds 8 zombies (health_max 6)")
	})
	res := cliRun(t, []string{"TEND_SOCKET=" + sock}, "zombies")
	if res.code() != 0 || !strings.Contains(res.stdout, "service gw") || !strings.Contains(res.stdout, "job "+j.ID) {
		t.Errorf("tend zombies: %d %q %q", res.code(), res.stdout, res.stderr)
	}
	_, body := rawGet(t, sock, "/v1/metrics")
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics with zombies held: %v\n%s", err, out)
		}
	}
	if !strings.Contains(body, "\ntend_zombies_held 11\n") || !strings.Contains(body, "\ntend_zombie_parents 2\n") ||
		!strings.Contains(body, fmt.Sprintf("\ntend_zombies_held_by{pid=\"%d\",command=\"python3\",owner=\"service gw\"} 8\n", gwPid)) {
		t.Errorf("metrics: %s", body)
	}
	select {
	case e := <-held:
		t.Errorf("a second zombie.held: %+v (the job's 3 are under warn_at, the gateway's were warned of)", e.Zombie)
	default:
	}
	if n := strings.Count(r.stderrNow(), "a process holds zombies"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}

// hZombieTend is tend (PID 1) with a socket uid 1000 may use, the gateway
// that never waits, and a [zombies] scan every 200 ms.
func hZombieTend(t *testing.T) (*tendRun, string, string) {
	t.Helper()
	dir := hDir(t)
	if err := os.WriteFile(filepath.Join(dir, "gw.py"), []byte(neverWaits), 0o644); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("[control]\nsocket = %s\nmode = \"0666\"\ngroup = \"%d\"\n", svQuote(filepath.Join(dir, "s")), hGroup) +
		"[zombies]\nscan = \"200ms\"\nwarn_at = 5\nhealth_max = 6\n" +
		svShell("gw", dir, `exec python3 "$D/gw.py"`)
	r, sock := hConfig(t, opts{}, dir, body)
	return r, sock, dir
}
