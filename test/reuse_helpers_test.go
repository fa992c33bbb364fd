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

// The kit of the pid-reuse tests (reuse_test.go). A target (a job, a
// service's run, a ready probe) starts a watcher W in a session of its
// own before it ends, passing it the target's pid P. W spins until P has
// been reaped by tend (its /proc entry is gone: a zombie keeps one), writes
// P-1 to /proc/sys/kernel/ns_last_pid and forks B, which therefore gets P
// unless something else in tend's namespace forked in between. B is the
// leader of its own session and process group (setsid(1) without a fork:
// W's child leads nothing), so a signal tend would send to P or to group P
// by number reaches it. W records, in files named by the iteration's tag:
//
//	TAG.p     P, the pid W watched
//	TAG.b     B's pid, read back from the fork ($!)
//	TAG.code  B's exit status as W's wait saw it (mode = B's sleep)
//	TAG.err   W could not write ns_last_pid
//
// In mode "orphan" B's exit must reach tend instead: W exits at once and B
// (exit 0) ends once tend has reaped W, so that B, reparented to tend, is
// an orphan exit with the number P.
//
// Nothing in W or B forks but B itself (dash builtins only), so the
// number is not taken by the script's own work.
const reuseW = `P=$1 T=%[1]s/$2
echo $P > $T.p
while [ -e /proc/$P ]; do :; done
if ! echo $((P-1)) > /proc/sys/kernel/ns_last_pid; then echo ns_last_pid > $T.err; exit 1; fi
if [ "$3" = orphan ]; then
	/usr/bin/setsid /bin/sh -c 'while [ -e /proc/$1 ]; do :; done; exit 0' sh $$ &
	echo $! > $T.b
	exit 0
fi
/usr/bin/setsid /bin/sleep $3 &
b=$!
echo $b > $T.b
wait $b
echo $? > $T.code
`

// reuseKit is a directory with w.sh, world-readable, for the records.
type reuseKit struct {
	dir  string
	lost *int // iterations lost so far (result)
}

func newReuseKit(t *testing.T) reuseKit {
	t.Helper()
	k := reuseKit{dir: hDir(t), lost: new(int)}
	if err := os.WriteFile(k.w(), []byte(fmt.Sprintf(reuseW, k.dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// w is the watcher script's path.
func (k reuseKit) w() string { return filepath.Join(k.dir, "w.sh") }

// path is the record file TAG.ext.
func (k reuseKit) path(tag, ext string) string { return filepath.Join(k.dir, tag+"."+ext) }

// launch is the shell text that starts W for the shell's own pid: put it
// first in a target's sh -c script, which then ends (or execs) as usual.
// Until W's setsid it is in the target's process group, where what tend
// rightly sends the target (a timeout's SIGTERM, a tree signal) would kill
// it and lose the iteration's records (seen under a loaded CPU: W dead
// before writing TAG.p). So W starts with those signals ignored, and env
// puts them back to the default once it is in its own session (a
// non-interactive sh cannot reset a signal ignored at its start, and B
// must not inherit the ignore). The target ignores them only across that
// fork, then waits for TAG.p, which W writes in its own session: until
// then the target lives, so whatever reaches its group meanwhile is meant
// for it. A target signalled within the fork ignores the signal and a
// timeout or stop then ends it with SIGKILL: its own death, accepted as
// such. That SIGKILL, or a probe killed with its service, can still take a
// W that was not yet out of the group: the iteration is then lost
// (reuseRec.lost), which is tend acting rightly on a live target, and a
// test fails when more than reuseMaxLost are.
func (k reuseKit) launch(tag, mode string) string {
	return fmt.Sprintf(`trap '' TERM INT HUP USR1 USR2; `+
		`/usr/bin/setsid /usr/bin/env --default-signal=TERM,INT,HUP,USR1,USR2 /bin/sh %s $$ %s %s & `+
		`trap - TERM INT HUP USR1 USR2; `+
		`while [ ! -e %s ]; do :; done; `, k.w(), tag, mode, k.path(tag, "p"))
}

// argv is a target: sh -c that launches W, runs pre, and execs tail.
func (k reuseKit) argv(tag, mode, pre, tail string) []string {
	return []string{"/bin/sh", "-c", k.launch(tag, mode) + pre + "exec " + tail}
}

// reuseRec is what W recorded for one iteration.
type reuseRec struct {
	p, b int  // the target's pid, B's pid
	code int  // B's exit status (-1 in orphan mode)
	lost bool // W died before it wrote TAG.p (see launch): nothing recorded
}

// reuseMaxLost is how many iterations of a test may be lost.
const reuseMaxLost = 2

// reused reports whether B really got the target's number.
func (r reuseRec) reused() bool { return r.p > 0 && r.p == r.b }

// result waits (boundedly) for W's records of tag; with code it also waits
// for B's end. A failed write of ns_last_pid is a missing precondition. No
// TAG.p by the deadline is a lost iteration (see launch), counted in
// *k.lost, logged with what is left, and fatal beyond reuseMaxLost.
func (k reuseKit) result(t *testing.T, r *tendRun, tag string, code bool) reuseRec {
	t.Helper()
	rec := reuseRec{code: -1}
	deadline := time.Now().Add(svWait)
	for {
		if svExists(k.path(tag, "err")) {
			t.Fatalf("%s: the watcher could not write /proc/sys/kernel/ns_last_pid (needs CAP_SYS_ADMIN in tend's pid namespace)", tag)
		}
		if svExists(k.path(tag, "b")) && (!code || svExists(k.path(tag, "code"))) {
			break
		}
		if time.Now().After(deadline) && !svExists(k.path(tag, "p")) {
			*k.lost++
			t.Logf("%s: lost: the watcher died before it wrote %s.p, in the target's group (%d lost so far); %s", tag, tag, *k.lost, k.diagnose(r, tag))
			if *k.lost > reuseMaxLost {
				t.Fatalf("%d iterations lost, more than %d: the watcher keeps dying; tend's stderr:\n%s", *k.lost, reuseMaxLost, r.stderrNow())
			}
			return reuseRec{code: 0, lost: true}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher's records of %s: not within %v; %s; tend's stderr:\n%s", tag, svWait, k.diagnose(r, tag), r.stderrNow())
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec.p = k.readInt(t, tag, "p")
	rec.b = k.readInt(t, tag, "b")
	if code {
		rec.code = k.readInt(t, tag, "code")
	}
	return rec
}

// diagnose says what W left of tag and what holds the number it watched,
// as seen in tend's namespace (/proc/TEND/root/proc is its private /proc).
func (k reuseKit) diagnose(r *tendRun, tag string) string {
	var b strings.Builder
	for _, ext := range []string{"p", "b", "code", "err"} {
		data, err := os.ReadFile(k.path(tag, ext))
		fmt.Fprintf(&b, "%s.%s=%q(%v) ", tag, ext, data, err)
	}
	p, _ := os.ReadFile(k.path(tag, "p"))
	nsProc := fmt.Sprintf("/proc/%d/root/proc", r.pid())
	if pid := strings.TrimSpace(string(p)); pid != "" {
		st, err := os.ReadFile(nsProc + "/" + pid + "/stat")
		cmd, _ := os.ReadFile(nsProc + "/" + pid + "/cmdline")
		fmt.Fprintf(&b, "; /proc/%s in tend's namespace: stat %q (%v) cmdline %q", pid, st, err, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	ents, _ := os.ReadDir(nsProc)
	b.WriteString("; processes:")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile(nsProc + "/" + e.Name() + "/cmdline")
		st, _ := os.ReadFile(nsProc + "/" + e.Name() + "/stat")
		fields := strings.Fields(string(st))
		state := ""
		if len(fields) > 2 {
			state = fields[2]
		}
		fmt.Fprintf(&b, " [%s %s %s]", e.Name(), state, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return b.String()
}

// readInt reads a record holding one number, waiting for its line's end
// (the shell may be writing it).
func (k reuseKit) readInt(t *testing.T, tag, ext string) int {
	t.Helper()
	var n int
	svPoll(t, nil, svWait, "a number in "+tag+"."+ext, func() bool {
		b, err := os.ReadFile(k.path(tag, ext))
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s.%s = %q: not a number", tag, ext, b)
		}
		return true
	})
	return n
}

// reuseMinRate is the share of iterations that must have put B on the
// target's number: below it the test proves too little and fails.
const reuseMinRate = 0.9

// checkReuseRate fails the test when too few iterations achieved reuse,
// and logs the rate (the report quotes it).
func checkReuseRate(t *testing.T, what string, reused, n int) {
	t.Helper()
	t.Logf("%s: pid reused in %d of %d iterations (%.0f%%)", what, reused, n, 100*float64(reused)/float64(n))
	if float64(reused) < reuseMinRate*float64(n) {
		t.Fatalf("%s: pid reuse forced in only %d of %d iterations, want at least %.0f%%: the test proves too little", what, reused, n, 100*reuseMinRate)
	}
}

// sinceStart waits until d has passed since t0.
func sleepUntil(t0 time.Time, d time.Duration) { time.Sleep(time.Until(t0.Add(d))) }

// reuseOpts start tend with one P: with reuseLoad keeping its scheduler
// busy, the loop takes a reaped exit a while after the reap, which widens
// the window in which a tend that signals by number would hit B (a
// correct tend must not care).
var reuseOpts = opts{env: []string{"GOMAXPROCS=1"}}

// reuseLoad keeps n clients asking tend's status until the test ends.
func reuseLoad(t *testing.T, sock string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := api.NewClient(sock)
			defer c.CloseIdle()
			for ctx.Err() == nil {
				_, _ = c.Status(ctx)
			}
		}()
	}
}
