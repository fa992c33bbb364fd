//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// TestSupervisorOneshot: type = "oneshot" as PID 1. A critical migration
// that exits 0 holds its dependent back until it has ended, and does not
// stop the container: it is ready (done) and counts as up in /v1/health. A
// oneshot that fails once restarts (on-failure) and its dependent starts
// after the run that succeeds. One that fails for good (never) fails its
// dependent, which never starts, and status says why.
func TestSupervisorOneshot(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	cfg := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" +
		svShell("migrate", dir, `sleep 0.5; date +%s%N > "$D/migrate.done"`, `type = "oneshot"`, "critical = true") +
		svShell("web", dir, `date +%s%N > "$D/web.start"; exec sleep 1000`, `after = ["migrate"]`, "critical = true") +
		svShell("flaky", dir, `[ -e "$D/flaky.tried" ] || { touch "$D/flaky.tried"; exit 4; }; date +%s%N > "$D/flaky.done"`,
			`type = "oneshot"`, `backoff = "100ms"`) +
		svShell("after-flaky", dir, `date +%s%N > "$D/after-flaky.start"; exec sleep 1000`, `after = ["flaky"]`) +
		svShell("bad", dir, "exit 3", `type = "oneshot"`, `restart = "never"`) +
		svShell("after-bad", dir, `touch "$D/after-bad.start"; exec sleep 1000`, `after = ["bad"]`)
	r, sock := hConfig(t, opts{}, dir, cfg)
	c := hClient(t, sock)
	svWaitLines(t, r, filepath.Join(dir, "web.start"), 1)
	svWaitLines(t, r, filepath.Join(dir, "after-flaky.start"), 1)
	if d := svStamp(t, filepath.Join(dir, "web.start")).Sub(svStamp(t, filepath.Join(dir, "migrate.done"))); d < 0 {
		t.Errorf("web started %v before the migration ended", -d)
	}
	if d := svStamp(t, filepath.Join(dir, "after-flaky.start")).Sub(svStamp(t, filepath.Join(dir, "flaky.done"))); d < 0 {
		t.Errorf("after-flaky started %v before flaky's good run ended", -d)
	}
	st, err := c.Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		state string
		ready bool
		runs  int
	}{"migrate": {"stopped", true, 1}, "web": {"running", true, 1}, "flaky": {"stopped", true, 2}, "bad": {"failed", false, 1}, "after-bad": {"failed", false, 0}} {
		s := svcStatus(t, st, name)
		if s.State != want.state || s.Ready != want.ready || s.Runs != want.runs {
			t.Errorf("%s: %+v; want %s, ready %v, %d runs", name, s, want.state, want.ready, want.runs)
		}
	}
	if svExists(filepath.Join(dir, "after-bad.start")) {
		t.Errorf("after-bad started although bad failed for good")
	}
	if !strings.Contains(r.stderrNow(), `service=after-bad from=pending reason="dependency bad failed"`) {
		t.Errorf("the log does not say why after-bad failed:\n%s", r.stderrNow())
	}
	if h, err := c.HealthAt(hCtx(t), api.HealthReady); err != nil || !h.Healthy {
		t.Errorf("health with the critical migration done: %+v, %v", h, err)
	}
	if !r.running() {
		t.Fatalf("tend stopped when the critical oneshot ended: %v", r.cmd.ProcessState)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit %d, want 143", code)
	}
}

// TestPostgresOneshotMigration: examples/postgres with a oneshot migration
// in front of an application: migrate (after postgres, ready) creates and
// fills a table with psql and exits 0; app (after migrate) starts only then
// and reads the row; the migration's run is done, postgres and app run.
func TestPostgresOneshotMigration(t *testing.T) {
	t.Parallel()
	pc := newPgCluster(t)
	dir, port, sock := pc.dir, pc.port, pc.sock
	psql := filepath.Join(pgBin, "psql") + " -X -q -h 127.0.0.1 -p " + strconv.Itoa(port) + " -U postgres -d postgres"
	cfg := pc.config +
		svShell("migrate", dir, psql+` -v ON_ERROR_STOP=1 -c "create table items(x int); insert into items values (42)"; date +%s%N > "$D/migrate.done"`,
			`type = "oneshot"`, `after = ["postgres"]`, "critical = true") +
		svShell("app", dir, `date +%s%N > "$D/app.start"; `+psql+` -Atc "select x from items" > "$D/app.out"; exec sleep 1000`,
			`after = ["migrate"]`)
	r := pc.start(t, cfg)
	svPoll(t, r, time.Minute, "app read the migrated row", func() bool {
		return strings.TrimSpace(readFileQuiet(filepath.Join(dir, "app.out"))) == "42"
	})
	if d := svStamp(t, filepath.Join(dir, "app.start")).Sub(svStamp(t, filepath.Join(dir, "migrate.done"))); d < 0 {
		t.Errorf("app started %v before the migration ended", -d)
	}
	c := api.NewClient(sock)
	t.Cleanup(c.CloseIdle)
	st, err := c.Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if m := svcStatus(t, st, "migrate"); m.State != "stopped" || !m.Ready || m.Runs != 1 {
		t.Errorf("migrate: %+v; want done (stopped, ready) after one run", m)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit %d, want 143", code)
	}
}

// readFileQuiet is path's content, "" when it cannot be read.
func readFileQuiet(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
