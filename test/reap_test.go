//go:build linux

package test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// stormTimeout bounds a whole orphan storm.
const stormTimeout = 3 * time.Minute

// orphanRun runs tend with the orphans helper as its main process and
// checks what the helper saw: every orphan made, every own child's status
// exact, and nothing left (no zombie, no other child of tend) at the end.
// It returns the pids of tend's -w lines.
func orphanRun(t *testing.T, o opts, n, every, code int, flags ...string) []int {
	t.Helper()
	args := append(append(flags, "--"), helperArgv("orphans", strconv.Itoa(n), strconv.Itoa(every), strconv.Itoa(code))...)
	r := startTend(t, o, args...)
	own := 0
	if every > 0 {
		own = (n + every - 1) / every
	}
	allz := `\d+` // the host's /proc has others' zombies
	if o.pid1 {
		allz = "0"
	}
	want := fmt.Sprintf(`^made=%d own=%d bad=0 zombies=0 others=0 allz=%s$`, n-own, own, allz)
	// Thousands of forks under -race on a shared 2-core machine: a
	// storm's own deadline (the helper gives up waiting after 90s).
	r.expectMatchWithin(want, stormTimeout)
	r.expectExit(code)
	pids := reapedPids(t, r.stderrAll())
	if len(flags) > 0 && flags[0] == "-w" && len(pids) != n-own {
		t.Errorf("tend -w logged %d reaped orphans, want exactly %d", len(pids), n-own)
	}
	return pids
}

// TestWarnOnReap: -w logs each orphan reaped, with tini's words, exactly
// once; without -w nothing is logged at the default level.
func TestWarnOnReap(t *testing.T) {
	t.Parallel()
	needRoot(t)
	t.Run("-w", func(t *testing.T) {
		t.Parallel()
		pids := orphanRun(t, opts{pid1: true}, 25, 0, 3, "-w")
		seen := map[int]bool{}
		for _, pid := range pids {
			if seen[pid] || pid <= 1 {
				t.Errorf("reaped pid %d logged twice or impossible: %v", pid, pids)
			}
			seen[pid] = true
		}
	})
	// The main leaves three zombie children when it exits: they are
	// reparented to tend and reaped in the same pass as the main, after it.
	// Their lines must not be lost when tend exits right after.
	t.Run("at exit", func(t *testing.T) {
		t.Parallel()
		for i := 0; i < 20; i++ {
			r := startTend(t, opts{pid1: true, env: []string{"TEND_WARN_ON_REAP=1"}},
				"--", "sh", "-c", "true & true & true & exec sleep 0.05")
			r.expectExit(0)
			if got := len(reapedPids(t, r.stderrAll())); got != 3 {
				t.Fatalf("run %d: TEND_WARN_ON_REAP=1 logged %d reaped orphans, want 3", i, got)
			}
		}
	})
	t.Run("without", func(t *testing.T) {
		t.Parallel()
		if pids := orphanRun(t, opts{pid1: true}, 25, 0, 0); len(pids) != 0 {
			t.Errorf("without -w tend logged %d reaped orphans, want none", len(pids))
		}
	})
}

// TestOrphanStorm: 5,000 orphans made as fast as dash forks are all reaped:
// no zombie left, and -w counts them exactly.
func TestOrphanStorm(t *testing.T) {
	t.Parallel()
	needRoot(t)
	orphanRun(t, opts{pid1: true}, 5000, 0, 17, "-w")
}

// TestPidRecycling: with pid_max at 1000, 10,000 children (every tenth the
// main's own, its status checked; the rest orphans) wrap the pids many
// times. Every status reaches its owner, every orphan is reaped and logged
// once per exit, and the main's code comes back exactly.
func TestPidRecycling(t *testing.T) {
	t.Parallel()
	needRoot(t)
	pids := orphanRun(t, opts{pid1: true, pidMax: 1000}, 10000, 10, 77, "-w")
	distinct := map[int]bool{}
	for _, pid := range pids {
		if pid > 1000 {
			t.Fatalf("reaped pid %d above pid_max 1000: pid_max not lowered", pid)
		}
		distinct[pid] = true
	}
	if len(distinct) >= len(pids) {
		t.Errorf("%d orphans used %d distinct pids: no pid was recycled", len(pids), len(distinct))
	}
}

// TestSubreaper: not PID 1, tend is a child subreaper: the main's orphans
// are reparented to it and reaped (no zombie child of tend is left), and
// its exit code is the main's.
func TestSubreaper(t *testing.T) {
	t.Parallel()
	orphanRun(t, opts{}, 200, 0, 9, "-w")
}

// TestExitDuringStorm: the main exits (or dies of a signal) while orphans
// are made and reaped all around it; tend reports exactly its status.
func TestExitDuringStorm(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, tc := range []struct {
		how  string
		want int
	}{
		{"code:42", 42}, {"code:0", 0}, {"code:255", 255}, {"code:1", 1},
		{"sig:15", 143}, {"sig:9", 137}, {"sig:10", 138}, {"sig:11", 139}, {"sig:1", 129}, {"sig:50", 178},
	} {
		t.Run(strings.ReplaceAll(tc.how, ":", "="), func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{pid1: true}, append([]string{"-w", "--cleanup-grace", "5s", "--"}, helperArgv("stormexit", tc.how)...)...)
			r.expect("exiting")
			r.expectExit(tc.want)
			if n := len(reapedPids(t, r.stderrAll())); n < 200 {
				t.Errorf("only %d orphans reaped: the storm did not run", n)
			}
		})
	}
}

// TestReapWithNoChildOfItsOwn: an orphan that reaches tend while tend has
// no child of its own (a process of `docker exec`, whose parent is outside
// the container, leaves a child behind, while the only service waits out
// its restart backoff) is reaped as soon as it exits.
// The reaper then waits in waitid, which fails with ECHILD at once when
// tend has no child at all; the orphan's reparenting is not announced, its
// exit is, by SIGCHLD: the reaper must be waiting for that too, else the
// zombie stays until tend next starts a child.
func TestReapWithNoChildOfItsOwn(t *testing.T) {
	t.Parallel()
	needRoot(t)
	dir := t.TempDir()
	// The service runs for a moment every 30 s: tend has no child between.
	r, sock := hConfig(t, opts{env: []string{"TEND_WARN_ON_REAP=1"}}, dir, "[control]\nsocket = \""+filepath.Join(dir, "s")+"\"\n"+
		"[[service]]\nname = \"blink\"\ncommand = [\"true\"]\nrestart = \"always\"\nbackoff = \"30s\"\nbackoff_max = \"30s\"\n")
	svPoll(t, r, 5*time.Second, "blink's first run over", func() bool { return strings.Contains(r.stderrNow(), `msg="service exited" service=blink`) })
	c := api.NewClient(sock)
	defer c.CloseIdle()
	for round := 1; round <= 3; round++ {
		// nsenter forks into tend's PID namespace; the shell there leaves
		// a sleep behind and exits, so the sleep's parent becomes tend.
		out, err := exec.Command("nsenter", "--target", strconv.Itoa(r.pid()), "--pid", "--",
			"sh", "-c", `sleep 0.3 & echo $!`).Output()
		if err != nil {
			t.Fatalf("nsenter: %v", err)
		}
		pid := strings.TrimSpace(string(out))
		start := time.Now()
		svPoll(t, r, 5*time.Second, "orphan "+pid+" reaped", func() bool {
			return strings.Contains(r.stderrNow(), "Reaped zombie process with pid="+pid+`"`)
		})
		if el := time.Since(start); el > 1300*time.Millisecond {
			t.Errorf("round %d: orphan %s (a 0.3 s sleep) reaped %v after it was made; want within 1 s of its exit", round, pid, el)
		}
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Counters.OrphansReaped != uint64(round) {
			t.Errorf("round %d: orphans_reaped = %d, want %d", round, st.Counters.OrphansReaped, round)
		}
	}
}
