//go:build linux

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// A non-root job cannot spend the pids that tend and root need (issue 13):
// it gets RLIMIT_NPROC, set before its exec by the exec trampoline (group
// track) or by its unit helper (subreaper). With [jobs] nproc = "auto" (the
// default) the limit is tend's own pids limit less a reserve for root; the
// kernel never applies it to root, whose jobs run as before.

// npUID is the uid the jobs of these tests run as: used by no other test,
// since RLIMIT_NPROC counts every process of the uid.
const npUID = 4711

// npCount is how many processes uid npUID has now, and whether one of them
// runs `sleep 6003` (the job's main process, once its fork loop has ended).
func npCount(t *testing.T) (n int, settled bool) {
	t.Helper()
	pids, settled := npPids(t)
	return len(pids), settled
}

// npPids lists uid npUID's processes; settled as for npCount.
func npPids(t *testing.T) (pids []int, settled bool) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !strings.Contains(string(st), fmt.Sprintf("\nUid:\t%d\t", npUID)) {
			continue
		}
		pids = append(pids, pid)
		if cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); string(cmd) == "sleep\x006003\x00" {
			settled = true
		}
	}
	return pids, settled
}

// npEat runs uid npUID's job that forks sleeps until it cannot (at most
// 400), then becomes `sleep 6003` without a fork, holding what it got. It
// returns the job's id and the uid's process count once it holds them.
func npEat(t *testing.T, r *tendRun, c *api.Client, track string) (string, int) {
	t.Helper()
	j, err := c.Spawn(hCtx(t), api.JobRequest{User: strconv.Itoa(npUID), Track: track, Argv: []string{"sh", "-c",
		"(i=0; while [ $i -lt 400 ]; do sleep 6001 & i=$((i+1)); done) 2>/dev/null; exec sleep 6003"}}, nil)
	if err != nil {
		t.Fatalf("uid %d's job: %v", npUID, err)
	}
	var n int
	svPoll(t, r, hWait, "the fork loop to end", func() bool {
		var settled bool
		n, settled = npCount(t)
		return settled
	})
	time.Sleep(200 * time.Millisecond) // the loop's last sleeps are forked before its subshell dies
	n, _ = npCount(t)
	return j.ID, n
}

// npEnd kills job id and waits until uid npUID has no process left.
func npEnd(t *testing.T, r *tendRun, c *api.Client, id string) {
	t.Helper()
	if err := c.Signal(hCtx(t), id, api.SignalRequest{Signal: "KILL", Tree: true}); err != nil {
		t.Errorf("kill uid %d's job: %v", npUID, err)
	}
	svPoll(t, r, hWait, fmt.Sprintf("uid %d's processes gone", npUID), func() bool {
		pids, _ := npPids(t)
		for _, pid := range pids {
			// The group track's sleeps whose subshell died: orphans in
			// the job's session, which a signal to its group misses.
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		n, _ := npCount(t)
		return n == 0
	})
}

func TestJobNProcUnderPidsLimit(t *testing.T) {
	const pidsMax = 220
	// 124: NProcFor of the units' pids.max, 165 (NProcFor of 220).
	nproc := config.NProcFor(int64(config.NProcFor(pidsMax)))
	for _, track := range []string{"group", "subreaper"} {
		for _, setting := range []string{"auto", "off"} {
			t.Run(track+"/"+setting, func(t *testing.T) {
				if n, _ := npCount(t); n != 0 {
					t.Fatalf("uid %d has %d processes before the test", npUID, n)
				}
				cg := hCgroup(t, "pids")
				hWrite(t, filepath.Join(cg, "pids.max"), strconv.Itoa(pidsMax))
				// tend is in the pids cgroup from its start: "auto" reads
				// its limit there.
				o := opts{argv0: []string{"/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", cg, tendBin}}
				body := ""
				if setting == "off" {
					body = "[jobs]\nnproc = \"off\"\n"
				}
				dir := hDir(t)
				body = fmt.Sprintf("[control]\nsocket = %s\n%s", svQuote(filepath.Join(dir, "s")), body) + svShell("svc", dir, "exec sleep 100000")
				r, sock := hConfig(t, o, dir, body)
				c := hClient(t, sock)
				said := strings.Contains(r.stderrNow(), fmt.Sprintf(`jobs of non-root users get RLIMIT_NPROC" nproc=%d pids_max=%d`, nproc, pidsMax))
				if said != (setting == "auto") {
					t.Errorf("nproc %s: tend said RLIMIT_NPROC %d: %v, want %v; stderr:\n%s", setting, nproc, said, setting == "auto", r.stderrNow())
				}
				threads := watchThreads(r)
				id, n := npEat(t, r, c, track)
				// Root's job needs 11 processes of the cgroup's room.
				rootJob, err := c.Spawn(hCtx(t), api.JobRequest{Track: track, Argv: []string{"sh", "-c",
					"for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2 & done; wait"}}, nil)
				code := -1
				if err == nil {
					code = npCode(hWaitJob(t, c, rootJob.ID))
				}
				t.Logf("pids.max %d, nproc %s (%d): uid %d's job holds %d processes; root's job: %v, exit %d", pidsMax, setting, nproc, npUID, n, err, code)
				if setting == "auto" {
					if n > nproc || n < nproc-8 {
						t.Errorf("uid %d's job holds %d processes: want at most RLIMIT_NPROC %d (and near it: its loop wanted 400)", npUID, n, nproc)
					}
					if err != nil || code != 0 {
						t.Errorf("root's job beside it: %v, exit %d: want it to run, exit 0", err, code)
					}
				} else {
					if n <= nproc {
						t.Errorf("nproc off: uid %d's job holds only %d processes: want more than %d (up to the units' pids.max)", npUID, n, nproc)
					}
					if err == nil && code == 0 {
						t.Errorf("nproc off: root's job ran beside a job at pids.max: the limit this test relies on was not reached")
					} else if err != nil && (hCode(err) != 503 || !strings.Contains(err.Error(), "EAGAIN") && !strings.Contains(err.Error(), "pids.max")) {
						t.Errorf("nproc off: root's job refused with %v, want a 503 naming EAGAIN or pids.max", err)
					}
				}
				npEnd(t, r, c, id)
				threads.done(t, "uid "+strconv.Itoa(npUID)+"'s job at the pids limit")
				if !r.running() {
					t.Fatalf("tend died: stderr:\n%s", r.stderrNow())
				}
				// tend moves back out before its cgroup is removed.
				hWrite(t, "/sys/fs/cgroup/pids/cgroup.procs", strconv.Itoa(r.pid()))
			})
		}
	}
}

func TestJobNProcSetting(t *testing.T) {
	for _, track := range []string{"group", "subreaper"} {
		t.Run(track, func(t *testing.T) {
			dir := hDir(t)
			body := fmt.Sprintf("[control]\nsocket = %s\n[jobs]\nnproc = 30\n", svQuote(filepath.Join(dir, "s"))) + svShell("svc", dir, "exec sleep 100000")
			r, sock := hConfig(t, opts{}, dir, body)
			c := hClient(t, sock)
			id, n := npEat(t, r, c, track)
			// Root's job is not limited: 60 sleeps of its own.
			root, err := c.Spawn(hCtx(t), api.JobRequest{Track: track, Argv: []string{"sh", "-c",
				"n=0; while [ $n -lt 60 ]; do sleep 0.5 & n=$((n+1)); done; echo $n; wait"}}, nil)
			if err != nil {
				t.Fatalf("root's job: %v", err)
			}
			code := npCode(hWaitJob(t, c, root.ID))
			t.Logf("nproc = 30: uid %d's job holds %d processes; root's job exit %d", npUID, n, code)
			if n > 30 || n < 22 {
				t.Errorf("uid %d's job holds %d processes: want at most 30 and near it", npUID, n)
			}
			if code != 0 {
				t.Errorf("root's job of 60 sleeps: exit %d, want 0 (root has no RLIMIT_NPROC)", code)
			}
			npEnd(t, r, c, id)
		})
	}
}

// npCode is a record's exit code; -1 for a signal.
func npCode(j api.Job) int {
	if j.ExitCode == nil {
		return -1
	}
	return *j.ExitCode
}
