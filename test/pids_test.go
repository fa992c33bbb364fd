//go:build linux

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// PID 1 never dies at the pids limit (issue 13). The Go runtime aborts the
// whole process when it cannot make an OS thread (fatal error: newosproc);
// tend makes its spare threads at start (blocking.Spare), so a flood at
// pids.max finds them there. Each case puts tend in a v1 pids cgroup, lets
// a job eat what room is left, and fires 600 concurrent POST /v1/jobs:
// tend answers each (201 or a 503 naming EAGAIN), keeps its thread count,
// answers status, and runs a job to its exact code once room is made.

// pidsThreads is tend's thread count now.
func pidsThreads(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Threads:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}

func TestPidsLimitFlood(t *testing.T) {
	for _, tc := range []struct {
		name string
		room int // pids.max beyond tend's own tasks
	}{
		{"40 pids of room, a job taking them", 40},
		{"pids.max exactly tend's tasks", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := hCgroup(t, "pids")
			// No units' reserve (TestPidsReserveRootForkBomb has it): a
			// job may eat tend's room, as where cgroups are read-only,
			// and tend itself meets pids.max.
			dir := hDir(t)
			cfg := filepath.Join(dir, "units.toml")
			hWrite(t, cfg, "[jobs]\nunits_pids = \"off\"\n")
			r, sock := hServe(t, opts{}, dir, []string{"--config", cfg})
			c := hClient(t, sock)
			hWrite(t, filepath.Join(cg, "cgroup.procs"), strconv.Itoa(r.pid()))
			t.Cleanup(func() { _ = os.WriteFile("/sys/fs/cgroup/pids/cgroup.procs", []byte(strconv.Itoa(r.pid())), 0) })
			time.Sleep(100 * time.Millisecond) // settle: tend's threads made at start
			base := pidsThreads(t, r.pid())
			cur, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
			n, _ := strconv.Atoi(strings.TrimSpace(string(cur)))
			hWrite(t, filepath.Join(cg, "pids.max"), strconv.Itoa(n+tc.room))
			var eater string
			if tc.room > 0 {
				// The job forks until it can't: 100 sleepers in 40 pids.
				// Not a shell: dash exits when a fork fails, and its
				// unit's leftovers are then stopped, giving the room back.
				j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"python3", "-c",
					"import os, time\nfor i in range(100):\n    try:\n        if os.fork() == 0:\n            time.sleep(600)\n            os._exit(0)\n    except OSError:\n        pass\ntime.sleep(600)\n"}}, nil)
				if err != nil {
					t.Fatalf("the eating job: %v", err)
				}
				eater = j.ID
				// Until it has eaten the room (under load its forks take
				// a while, and jobs started meanwhile would take it).
				svPoll(t, r, 20*time.Second, "the eating job at pids.max", func() bool {
					cur, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
					k, _ := strconv.Atoi(strings.TrimSpace(string(cur)))
					return k >= n+tc.room
				})
			}

			threads := watchThreads(r)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			codes := map[int]int{}
			var firstRefusal, other string
			var mu sync.Mutex
			var wg sync.WaitGroup
			// 600 requests from 150 at once: under root's own connection
			// limit, and under the listen backlog (a full one makes the
			// client's connect fail with EAGAIN, before tend sees it).
			for w := range 150 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 4 {
						_, err := c.Spawn(ctx, api.JobRequest{Argv: []string{"true"}}, nil)
						code := 201
						if err != nil {
							code = hCode(err)
						}
						mu.Lock()
						codes[code]++
						if code == 503 && firstRefusal == "" {
							firstRefusal = err.Error()
						}
						if code != 201 && code != 503 && other == "" {
							other = fmt.Sprintf("worker %d: %v", w, err)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			c.CloseIdle() // the flood's kept-alive connections count against root's limit
			statusStart := time.Now()
			_, statusErr := c.Status(hCtx(t))
			took := time.Since(statusStart)
			peak := threads.done(t, "600 job starts at pids.max")
			t.Logf("pids.max %d (room %d): codes %v; first 503 %q; tend's threads %d at start, at most %d in the flood; status in %v",
				n+tc.room, tc.room, codes, firstRefusal, base, peak, took)
			if !r.running() {
				t.Fatalf("tend died at pids.max: %v; stderr:\n%s", r.cmd.ProcessState, r.stderrNow())
			}
			if statusErr != nil {
				t.Errorf("root's status at pids.max: %v", statusErr)
			}
			for code, k := range codes {
				if code != 201 && code != 503 {
					t.Errorf("%d requests answered %d (0: no answer): want 201 or 503; one: %s", k, code, other)
				}
			}
			if codes[503] == 0 {
				t.Errorf("no request refused at pids.max: the limit was not reached")
			} else if !strings.Contains(firstRefusal, "EAGAIN") {
				t.Errorf("refusal %q does not name EAGAIN", firstRefusal)
			}
			if peak > base+2 {
				t.Errorf("tend made threads in the flood: %d at start, %d at most, want at most %d", base, peak, base+2)
			}
			// Said once per 10 s (ratelog), not once per refusal.
			if logs := strings.Count(r.stderrNow(), "job start refused: tend is at a limit"); logs < 1 || logs > 2 {
				t.Errorf("tend said %d times that job starts were refused, for one flood of %d refusals: want 1 (or 2 across an interval)", logs, codes[503])
			}
			hWrite(t, filepath.Join(cg, "pids.max"), "max")
			if eater != "" {
				// sh gives up at its first failed fork (409: it has
				// exited); its sleeps stay until tend's namespace ends.
				if err := c.Signal(hCtx(t), eater, api.SignalRequest{Signal: "SIGKILL", Tree: true}); err != nil && hCode(err) != 409 {
					t.Fatalf("kill the eating job: %v", err)
				}
				hWaitJob(t, c, eater)
			}
			hAlive(t, r, c)
		})
	}
}
