//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// alloc200 allocates and touches 200 MiB (a bytes object of 200 MiB of
// 0x01: every page written), then says so.
var alloc200 = []string{"python3", "-c", "b = b'\\x01' * (200 << 20); print('allocated', len(b) >> 20)"}

// pipe200 is a shell whose pipeline holds 200 MiB in tail (a line with no
// newline): the OOM killer kills tail, and the shell, the job's main,
// exits 137.
var pipe200 = []string{"sh", "-c", "head -c 200M /dev/zero | tail > /dev/null"}

const mem32 = `"32M"`

// TestLimitsMemoryJobOOM: a job with memory_max = "32M" that allocates
// 200 MiB is killed by the OOM killer in its own v1 memory cgroup: exit
// 137, reason "oom", the log line; the same with track = "subreaper", and
// with cgroup tracking (its v2 cgroup has no memory controller here: the
// limit is in v1 beside it). A job with no limit allocating the same exits
// 0, reason exited. The unit's v1 directory is gone after each job. A
// job run as nobody is limited too (a subreaper helper joins as the job's
// user: its directory's cgroup.procs is given to that uid).
func TestLimitsMemoryJobOOM(t *testing.T) {
	for _, mode := range []string{"group", "subreaper", "cgroup"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			rel := v1Parent(t)
			jt := startJobsTend(t, inV1(t, rel, opts{}, mode == "cgroup"), "")
			for _, tc := range []struct {
				name     string
				argv     []string
				signaled bool   // the main itself was OOM-killed (else: its shell exited 137)
				user     string // "": root's
			}{{"python", alloc200, true, ""}, {"pipeline", pipe200, false, ""}, {"python as nobody", alloc200, true, "nobody"}} {
				start := time.Now()
				j := jt.spawn(t, api.JobRequest{Argv: tc.argv, Track: mode, MemoryMax: json.RawMessage(mem32), User: tc.user})
				waited := jobsRun(t, jt.tendCmd("wait", j.ID))
				rec := jt.waitJob(t, j.ID)
				t.Logf("%s %s: tend wait exit %d; record reason %q exit_code %v signal %v oom_kills %d memory_max %d track %s; %v",
					mode, tc.name, waited.code(), rec.Reason, ptrInt(rec.ExitCode), ptrStr(rec.Signal), rec.OOMKills, rec.MemoryMax, rec.Track, time.Since(start).Round(time.Millisecond))
				if waited.code() != 137 {
					t.Errorf("%s: tend wait exited %d, want 137", tc.name, waited.code())
				}
				if rec.Reason != api.ReasonOOM || rec.OOMKills < 1 {
					t.Errorf("%s: reason %q, oom_kills %d; want oom, >= 1", tc.name, rec.Reason, rec.OOMKills)
				}
				if tc.signaled && (rec.Signal == nil || *rec.Signal != "SIGKILL") {
					t.Errorf("%s: signal %v, want SIGKILL", tc.name, ptrStr(rec.Signal))
				}
				if !tc.signaled && (rec.ExitCode == nil || *rec.ExitCode != 137) {
					t.Errorf("%s: exit_code %v, want 137", tc.name, ptrInt(rec.ExitCode))
				}
				if rec.MemoryMax != 32<<20 || rec.Track != mode {
					t.Errorf("%s: record memory_max %d, track %q; want %d, %q", tc.name, rec.MemoryMax, rec.Track, 32<<20, mode)
				}
				want := fmt.Sprintf("job %s: killed by the OOM killer (memory_max 32M)", j.ID)
				svPoll(t, jt.tendRun, svWait, "the OOM log line", func() bool { return strings.Contains(jt.stderrNow(), want) })
				svPoll(t, jt.tendRun, svWait, "the unit's v1 directory removed", func() bool { return len(v1Units(t, "memory", rel)) == 0 })
			}
			j := jt.spawn(t, api.JobRequest{Argv: alloc200, Track: mode})
			rec := jt.waitJob(t, j.ID)
			t.Logf("%s no limit: reason %q exit_code %v memory_max %d", mode, rec.Reason, ptrInt(rec.ExitCode), rec.MemoryMax)
			if rec.Reason != api.ReasonExited || rec.ExitCode == nil || *rec.ExitCode != 0 || rec.MemoryMax != 0 || rec.OOMKills != 0 {
				t.Errorf("no limit: %+v; want exit 0, reason exited, no memory_max", rec)
			}
			if units := v1Units(t, "memory", rel); len(units) != 0 {
				t.Errorf("a job with no limit made v1 directories: %v", units)
			}
			if mode == "group" {
				// tend spawn's flag, and its re-raise of the job's SIGKILL.
				res := jobsRun(t, jt.tendCmd(append([]string{"spawn", "--memory-max", "32M", "--"}, alloc200...)...))
				t.Logf("tend spawn --memory-max 32M: exit %d", res.code())
				if res.code() != 137 || strings.Contains(res.stdout, "allocated") {
					t.Errorf("tend spawn --memory-max 32M: exit %d, stdout %q; want 137 and no allocation", res.code(), res.stdout)
				}
			}
			jt.expectHealthy(t)
		})
	}
}

// TestLimitsMemoryServiceOOM: a service with memory_max that allocates
// 200 MiB: status says last_reason "oom" (and the service event of its
// exit too), the log line is there, and the restart policy goes on as
// usual: it runs again.
func TestLimitsMemoryServiceOOM(t *testing.T) {
	t.Parallel()
	rel := v1Parent(t)
	cfg := fmt.Sprintf("[[service]]\nname = \"hog\"\ncommand = %s\nmemory_max = %s\nbackoff = \"1s\"\n", tomlArray(alloc200), mem32)
	jt := startJobsTend(t, inV1(t, rel, opts{}, false), cfg)
	ev, err := jt.client.Events(jobsCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	var oomEvent *api.Service
	for oomEvent == nil {
		e, err := ev.Next()
		if err != nil {
			t.Fatalf("events: %v; stderr:\n%s", err, jt.stderrNow())
		}
		if e.Service != nil && e.Service.Name == "hog" && e.Service.LastReason != "" {
			oomEvent = e.Service
		}
	}
	t.Logf("first event after a run: %s state %s last_reason %q last_code %v", "hog", oomEvent.State, oomEvent.LastReason, ptrInt(oomEvent.LastCode))
	if oomEvent.LastReason != api.ReasonOOM || oomEvent.LastCode == nil || *oomEvent.LastCode != 137 {
		t.Errorf("service event after the OOM kill: last_reason %q, last_code %v; want oom, 137", oomEvent.LastReason, ptrInt(oomEvent.LastCode))
	}
	svWaitLog(t, jt.tendRun, "service hog: killed by the OOM killer (memory_max 32M)", "")
	var svc api.Service
	svPoll(t, jt.tendRun, 30*time.Second, "hog's second run ended", func() bool {
		st, err := jt.client.Status(jobsCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		svc = svcStatus(t, st, "hog")
		return svc.Runs >= 2 && svc.LastReason != "" && svc.State == "backoff"
	})
	t.Logf("status: runs %d state %s last_reason %q last_code %v memory_max %d", svc.Runs, svc.State, svc.LastReason, ptrInt(svc.LastCode), svc.MemoryMax)
	if svc.LastReason != api.ReasonOOM || svc.MemoryMax != 32<<20 {
		t.Errorf("status: last_reason %q, memory_max %d; want oom, %d", svc.LastReason, svc.MemoryMax, 32<<20)
	}
	// The log line may land after the status said so: tend's stderr is
	// written through its outlet, off the loop.
	svPoll(t, jt.tendRun, 5*time.Second, "an OOM log line for each of the two runs", func() bool {
		return strings.Count(jt.stderrNow(), "service hog: killed by the OOM killer") >= 2
	})
	out := jobsRun(t, jt.tendCmd("status"))
	t.Logf("tend status:\n%s", out.stdout)
	if !strings.Contains(out.stdout, "oom") || !strings.Contains(out.stdout, "32M") {
		t.Errorf("tend status does not show the reason and the limit:\n%s", out.stdout)
	}
}

// pidsScript forks 100 children that sleep (each fork's failure counted
// with its errno), prints how many forks succeeded and the unit's own
// pids.current (the kernel's count for the v1 directory it runs in), then
// ends its children and exits 0.
const pidsScript = `
import errno, os, signal, time
ok, again = [], 0
for i in range(100):
    try:
        pid = os.fork()
    except OSError as e:
        if e.errno != errno.EAGAIN:
            raise
        again += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    ok.append(pid)
path = [l.split(":", 2)[2].strip() for l in open("/proc/self/cgroup") if l.split(":")[1] == "pids"][0]
cur = open("/sys/fs/cgroup/pids" + path + "/pids.current").read().strip()
procs = len(open("/sys/fs/cgroup/pids" + path + "/cgroup.procs").read().split())
print("forks=%d eagain=%d pids.current=%s procs=%d cgroup=%s" % (len(ok), again, cur, procs, path), flush=True)
for pid in ok:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
`

// TestLimitsPidsJob: a job with pids_max = 20 whose python forks 100
// sleepers: the forks beyond the limit fail with EAGAIN, at most 20 tasks
// are in the unit, the job ends normally (exit 0), and tend and root's
// next job are fine. The same job with no limit makes all 100.
func TestLimitsPidsJob(t *testing.T) {
	for _, mode := range []string{"group", "subreaper"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			rel := v1Parent(t)
			jt := startJobsTend(t, inV1(t, rel, opts{}, false), "")
			run := func(pids string) (api.Job, string) {
				out := filepath.Join(jt.dir, "out-"+strconv.Itoa(int(time.Now().UnixNano())))
				j := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "python3 -c \"$0\" > " + out, pidsScript}, Track: mode,
					PidsMax: json.RawMessage(pids)})
				rec := jt.waitJob(t, j.ID)
				return rec, strings.TrimSpace(readFile(t, out))
			}
			rec, line := run("20")
			t.Logf("%s pids_max 20: %s; exit %v reason %q pids_max %d", mode, line, ptrInt(rec.ExitCode), rec.Reason, rec.PidsMax)
			var forks, again, cur, procs int
			var cg string
			if _, err := fmt.Sscanf(line, "forks=%d eagain=%d pids.current=%d procs=%d cgroup=%s", &forks, &again, &cur, &procs, &cg); err != nil {
				t.Fatalf("job output %q: %v", line, err)
			}
			if forks < 1 || forks+1 > 20 || forks+again != 100 || cur > 20 || procs > 20 {
				t.Errorf("pids_max 20: %d forks, %d EAGAIN, pids.current %d, %d processes; want 1-19 forks, the rest EAGAIN, at most 20 in the unit", forks, again, cur, procs)
			}
			if !strings.HasPrefix(cg, rel+"/job-"+rec.ID+"-") {
				t.Errorf("the job ran in pids cgroup %s, want one of its own below %s", cg, rel)
			}
			if rec.ExitCode == nil || *rec.ExitCode != 0 || rec.Reason != api.ReasonExited || rec.PidsMax != 20 {
				t.Errorf("pids_max 20: %+v; want exit 0, reason exited, pids_max 20", rec)
			}
			svPoll(t, jt.tendRun, svWait, "the unit's v1 directory removed", func() bool { return len(v1Units(t, "pids", rel)) == 0 })
			rec, line = run("null")
			t.Logf("%s no limit: %s", mode, line)
			if !strings.HasPrefix(line, "forks=100 eagain=0 ") || rec.ExitCode == nil || *rec.ExitCode != 0 {
				t.Errorf("no limit: %q, exit %v; want 100 forks, exit 0", line, ptrInt(rec.ExitCode))
			}
			j := jt.spawn(t, api.JobRequest{Argv: []string{"true"}})
			if rec := jt.waitJob(t, j.ID); rec.ExitCode == nil || *rec.ExitCode != 0 {
				t.Errorf("root's next job: %+v", rec)
			}
			jt.expectHealthy(t)
		})
	}
}

// TestLimitsRefused: where no controller can be had (a cgroup2 of tend's
// own without controllers, every v1 hierarchy read-only), a service with
// memory_max or pids_max stops tend at start (exit 2, nothing started)
// naming the key, the controller and why; a job request with one gets 422
// naming the field; bad values are 400 (jobs) and exit 2 (config) naming
// the key; tend goes on.
func TestLimitsRefused(t *testing.T) {
	t.Parallel()
	ro := func() opts { return roV1(inCgroup(t, opts{})) }
	for _, tc := range []struct{ key, value, want string }{
		{"memory_max", mem32, `service "svc": memory_max: the memory controller is missing here: cgroup v2: memory is not enabled under `},
		{"pids_max", "20", `service "svc": pids_max: the pids controller is missing here: cgroup v2: pids is not enabled under `},
	} {
		dir := hDir(t)
		r := svStart(t, ro(), dir, svShell("svc", dir, "touch $D/started; exec sleep 1000", tc.key+" = "+tc.value))
		code := r.wait()
		stderr := r.stderrNow()
		t.Logf("%s: exit %d: %s", tc.key, code, lastLine(stderr))
		if code != 2 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "is read-only (cgroupfs mounted ro") {
			t.Errorf("%s where no controller is: exit %d, want 2 with %q and the v1 reason; stderr:\n%s", tc.key, code, tc.want, stderr)
		}
		if svExists(filepath.Join(dir, "started")) {
			t.Errorf("%s refused, yet the service started", tc.key)
		}
	}
	for _, tc := range []struct{ key, value, want string }{
		{"memory_max", `"12Q"`, `service "svc": memory_max: "12Q" is not a size`},
		{"memory_max", `"-1"`, `service "svc": memory_max: "-1" is not a size`},
		{"memory_max", `0`, `service "svc": memory_max: 0 is not a size in bytes`},
		{"memory_max", `""`, `service "svc": memory_max: "" is not a size`},
		{"pids_max", `0`, `service "svc": pids_max: 0 is not a number of tasks`},
		{"pids_max", `-1`, `service "svc": pids_max: -1 is not a number of tasks`},
		{"pids_max", `""`, `service "svc": pids_max: "" is not an integer`},
	} {
		dir := hDir(t)
		r := svStart(t, opts{pid1: true}, dir, svShell("svc", dir, "exec sleep 1000", tc.key+" = "+tc.value))
		if code := r.wait(); code != 2 || !strings.Contains(r.stderrNow(), tc.want) {
			t.Errorf("config %s = %s: exit %d, want 2 with %q; stderr:\n%s", tc.key, tc.value, code, tc.want, r.stderrNow())
		}
	}

	jt := startJobsTend(t, ro(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		mem, pids string
		code      int
		want      string
	}{
		{mem32, "", 422, "memory_max: the memory controller is missing here: cgroup v2: memory is not enabled under "},
		{"", "20", 422, "pids_max: the pids controller is missing here: cgroup v2: pids is not enabled under "},
		{`"12Q"`, "", 400, `memory_max: "12Q" is not a size`},
		{`"-1"`, "", 400, `memory_max: "-1" is not a size`},
		{"0", "", 400, "memory_max: 0 is not a size in bytes"},
		{`""`, "", 400, `memory_max: "" is not a size`},
		{"", "0", 400, "pids_max: 0 is not a number of tasks"},
		{"", `""`, 400, `pids_max: "" is not an integer`},
	} {
		req := api.JobRequest{Argv: []string{"true"}}
		if tc.mem != "" {
			req.MemoryMax = json.RawMessage(tc.mem)
		}
		if tc.pids != "" {
			req.PidsMax = json.RawMessage(tc.pids)
		}
		_, err := jt.client.Spawn(ctx, req, nil)
		t.Logf("job memory_max %s pids_max %s: %v", tc.mem, tc.pids, err)
		if hCode(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("job memory_max %s pids_max %s: %v (HTTP %d); want %d with %q", tc.mem, tc.pids, err, hCode(err), tc.code, tc.want)
		}
		if tc.code == 422 && !strings.Contains(fmt.Sprint(err), "is read-only (cgroupfs mounted ro") {
			t.Errorf("the 422 does not say why v1 is missing: %v", err)
		}
	}
	j := jt.spawn(t, api.JobRequest{Argv: []string{"true"}})
	if rec := jt.waitJob(t, j.ID); rec.ExitCode == nil || *rec.ExitCode != 0 {
		t.Errorf("a job after the refusals: %+v", rec)
	}
	jt.expectHealthy(t)
}

// tomlArray is argv as a TOML array of strings.
func tomlArray(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = svQuote(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func ptrInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func ptrStr(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// readFile is the content of path, or "" if it cannot be read.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("read %s: %v", path, err)
	}
	return string(b)
}
