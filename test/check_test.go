//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// TestSupervisorChecks: [[service.check]] as PID 1, each kind and each
// on_failure. web's http check fails twice (503) and then passes: below
// its threshold, it never fails. hung's check command never ends: each
// probe is killed at its timeout (with nothing of it left), and two in a
// row restart hung although its policy is never, until max_restarts gives
// up. stopper's failing check stops it for good (failed, one run). flaky's
// check (on_failure = "ignore") fails, which fails /v1/health at both
// levels naming it, until it passes again. Each change of a check's state
// is a service.check event, and status shows every check.
func TestSupervisorChecks(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	if err := os.WriteFile(filepath.Join(dir, "srv.py"), []byte(netServer), 0o644); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freePort(t))
	check := func(probe string, keys ...string) string {
		return "[[service.check]]\nprobe = " + svQuote(probe) + "\n" + strings.Join(keys, "\n") + "\n"
	}
	cfg := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" +
		svShell("web", dir, `exec python3 "$D/srv.py" `+port+` http 200`, `ready = "tcp:127.0.0.1:`+port+`"`, `critical = true`,
			check("http://127.0.0.1:"+port+"/healthz", `name = "http"`, `period = "100ms"`, `threshold = 3`)) +
		svShell("hung", dir, `exec sleep 2000`, `restart = "never"`, `max_restarts = 1`, `backoff = "100ms"`,
			check("exec:sleep 1000", `timeout = "300ms"`, `period = "100ms"`, `threshold = 2`)) +
		svShell("stopper", dir, `exec sleep 2000`, check("exec:false", `period = "100ms"`, `threshold = 1`, `on_failure = "stop"`)) +
		svShell("flaky", dir, `exec sleep 2000`, `critical = true`,
			check(`exec:sh -c "test -e $D/ok"`, `name = "ok"`, `period = "100ms"`, `threshold = 2`, `on_failure = "ignore"`))
	r, sock := hConfig(t, opts{}, dir, cfg)
	c := hClient(t, sock)
	ev, err := c.Events(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close() })
	var mu sync.Mutex
	var changes []string // "service/check:state"
	go func() {
		for {
			e, err := ev.Next()
			if err != nil {
				return
			}
			if e.Type != api.EventServiceCheck || e.Service == nil {
				continue
			}
			for _, ch := range e.Service.Checks {
				if ch.Name == e.Check {
					mu.Lock()
					changes = append(changes, e.Service.Name+"/"+ch.Name+":"+ch.State)
					mu.Unlock()
				}
			}
		}
	}()
	status := func(name string) api.Service {
		t.Helper()
		st, err := c.Status(hCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		return svcStatus(t, st, name)
	}
	checkOf := func(name string) api.Check {
		t.Helper()
		s := status(name)
		if len(s.Checks) != 1 {
			t.Fatalf("%s has checks %+v, want 1", name, s.Checks)
		}
		return s.Checks[0]
	}

	svPoll(t, r, svWait, "flaky's check failing", func() bool { return checkOf("flaky").State == api.CheckFailing })
	for _, level := range []string{api.HealthAlive, api.HealthReady} {
		h, err := c.HealthAt(hCtx(t), level)
		if err != nil || h.Healthy || !downHas(h.Down, "flaky", "check ok failing") {
			t.Errorf("health %s while flaky's ignored check fails: %+v, %v; want unhealthy naming flaky's check", level, h, err)
		}
	}
	touch(t, filepath.Join(dir, "ok"))
	svPoll(t, r, svWait, "flaky's check passing again", func() bool { return checkOf("flaky").State == api.CheckPassing })
	svPoll(t, r, svWait, "web's check passing", func() bool { return checkOf("web").State == api.CheckPassing })
	if h, err := c.HealthAt(hCtx(t), api.HealthReady); err != nil || !h.Healthy {
		t.Errorf("health once flaky's check passes: %+v, %v", h, err)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "gets"))); got < "3" {
		t.Errorf("web's check made %s GETs, want at least 3 (two 503s, then 200)", got)
	}
	if svLog(r.stderrNow(), "service check failing", "web") != 0 {
		t.Errorf("web's check failed although its two 503s were below its threshold of 3")
	}

	svPoll(t, r, svWait, "stopper failed", func() bool { return status("stopper").State == "failed" })
	if s := status("stopper"); s.Runs != 1 || s.Checks[0].State != api.CheckFailing {
		t.Errorf("stopper: %+v; want one run, its check failing", s)
	}
	svPoll(t, r, svWait, "hung failed after max_restarts", func() bool { return status("hung").State == "failed" })
	hung := status("hung")
	if hung.Runs != 2 || svLog(r.stderrNow(), "service failed while running: restarting it", "hung") != 2 {
		t.Errorf("hung: %d runs, %d restarts logged; want 2 runs (never policy, yet restarted once) and 2 failures", hung.Runs,
			svLog(r.stderrNow(), "service failed while running: restarting it", "hung"))
	}
	if !strings.Contains(hung.Checks[0].LastError, "timed out after 300ms: killed") {
		t.Errorf("hung's check: %+v; want the timeout as its last error", hung.Checks[0])
	}
	time.Sleep(200 * time.Millisecond)
	for _, pid := range descendants(r.pid()) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(b) == "sleep\x001000\x00" {
			t.Errorf("a check probe outlived its timeout: pid %d %q", pid, b)
		}
	}
	mu.Lock()
	got := strings.Join(changes, " ")
	mu.Unlock()
	for _, want := range []string{"flaky/ok:failing flaky/ok:passing", "web/http:passing", "stopper/check-1:failing", "hung/check-1:failing"} {
		if !strings.Contains(got, want) {
			t.Errorf("service.check events %q lack %q", got, want)
		}
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit %d, want 143", code)
	}
}

// downHas reports whether downs name service with a reason containing why.
func downHas(downs []api.Down, service, why string) bool {
	for _, d := range downs {
		if d.Service == service && strings.Contains(d.Reason, why) {
			return true
		}
	}
	return false
}

// TestSupervisorReadyProbeHangs: an exec ready probe that never ends is
// killed after config.ReadyProbeTimeout (5 s) with its children and tried
// again, so the second try makes the service ready well within its
// ready_timeout, instead of the hung one failing it there.
func TestSupervisorReadyProbeHangs(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	probe := `exec:sh -c "if [ -e $D/tried ]; then exit 0; fi; touch $D/tried; sleep 1001; exit 0"`
	cfg := svShell("a", dir, `date +%s%N > "$D/a.start"; exec sleep 1000`, `ready = `+svQuote(probe), `ready_timeout = "30s"`) +
		svShell("b", dir, `date +%s%N > "$D/b.start"; exec sleep 1000`, `after = ["a"]`)
	r := svStart(t, opts{pid1: true}, dir, cfg)
	svWaitLines(t, r, filepath.Join(dir, "b.start"), 1)
	took := svStamp(t, filepath.Join(dir, "b.start")).Sub(svStamp(t, filepath.Join(dir, "a.start")))
	t.Logf("a ready after %v", took)
	if took < 4500*time.Millisecond || took > 12*time.Second {
		t.Errorf("a was ready %v after its start; want about 5 s (the hung try killed, the next one passing)", took)
	}
	svWaitLog(t, r, "ready probe timed out: killed", "a")
	for _, pid := range descendants(r.pid()) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(b) == "sleep\x001001\x00" {
			t.Errorf("the hung probe's sleep (pid %d) outlived the probe", pid)
		}
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit %d, want 143", code)
	}
}
