//go:build linux

package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/blocking"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
)

// harness runs a real loop over a fake process table: forks hand out pids
// the test chooses (so pid reuse is whatever the test says), kill(2) and
// the sweep are recorded, and exits happen when the test says so. Run it
// inside synctest.Test: the loop's timers then run on the bubble's clock.
type harness struct {
	t    *testing.T
	l    *loop
	r    *reaper.Reaper
	sigs chan unix.Signal
	done chan int

	mu      sync.Mutex
	pids    []int        // guarded by mu: the pids the next forks get, in order
	next    int          // guarded by mu: when pids is empty
	live    map[int]bool // guarded by mu: forked, not yet reaped
	zombies []fakeExit   // guarded by mu: exited, waiting for wait4
	sent    []string     // guarded by mu: "PID:SIG", "-PGID:SIG", "all:SIG"
	argv    map[int][]string
	forkErr error // guarded by mu: the next fork fails with it
}

type fakeExit struct {
	pid int
	ws  unix.WaitStatus
}

func exitedWith(code int) unix.WaitStatus      { return unix.WaitStatus(code << 8) }
func killedBy(sig unix.Signal) unix.WaitStatus { return unix.WaitStatus(sig) }

// newHarness builds the loop for cfg (File defaults to every default,
// with no socket) and starts it.
func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, sigs: make(chan unix.Signal, 16), done: make(chan int, 1), next: 100,
		live: map[int]bool{}, argv: map[int][]string{}}
	if cfg.File == nil {
		cfg.File, _ = config.Parse(nil, "defaults")
		cfg.File.Control.Socket = ""
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.File.Defaults.Track == config.TrackAuto {
		// The fake fork runs nothing, so no unit helper would ever say its
		// command started: these tests are of the loop, with group units.
		cfg.File.Defaults.Track = config.TrackGroup
	}
	cfg.Signals = h.sigs
	cfg.Stdout, cfg.Stderr = io.Discard, io.Discard
	h.r = reaper.New(reaper.Options{Wait4: h.wait4, Kill: h.kill, NoChildren: h.noChildren})
	pool, closer := blocking.New("test", 1), blocking.NewCloser(1)
	l, err := newLoop(cfg, h.r, pool, closer, func(api.Event) {}, false)
	if err != nil {
		t.Fatal(err)
	}
	l.prepare = func(_ context.Context, s spawn.Spec) (*spawn.Prepared, error) { return spawn.Prepare(s) }
	l.fork = h.fork
	l.signalAll = func(sig unix.Signal) error { h.record("all", sig); return nil }
	h.l = l
	ended := make(chan struct{})
	go func() { h.done <- l.run(); close(ended) }()
	t.Cleanup(func() {
		select {
		case <-ended:
		default: // the test failed early: end the loop where it is
			_ = l.ask(context.Background(), func() { l.finished = true })
			<-ended
		}
		l.closeLogs(time.Now())
		pool.Close()
		closer.Stop()
		l.release()
	})
	return h
}

func (h *harness) fork(p *spawn.Prepared, _ *int) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.forkErr; err != nil {
		h.forkErr = nil
		return 0, err
	}
	pid := h.next
	if len(h.pids) > 0 {
		pid, h.pids = h.pids[0], h.pids[1:]
	} else {
		h.next++
	}
	if h.live[pid] {
		h.t.Errorf("fork gave pid %d, which is still live: the test is wrong", pid)
	}
	h.live[pid] = true
	h.argv[pid] = p.Spec().Argv
	return pid, nil
}

// reuse makes the next forks get these pids.
func (h *harness) reuse(pids ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pids = append(h.pids, pids...)
}

func (h *harness) wait4(pid int, ws *unix.WaitStatus, options int, _ *unix.Rusage) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.zombies) > 0 {
		z := h.zombies[0]
		h.zombies = h.zombies[1:]
		*ws = z.ws
		delete(h.live, z.pid)
		return z.pid, nil
	}
	if len(h.live) == 0 {
		return -1, unix.ECHILD
	}
	return 0, nil
}

func (h *harness) noChildren() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.live) == 0 && len(h.zombies) == 0
}

func (h *harness) kill(pid int, sig unix.Signal) error {
	h.mu.Lock()
	live := h.live[max(pid, -pid)]
	h.mu.Unlock()
	h.record(fmt.Sprint(pid), sig)
	if !live {
		return unix.ESRCH
	}
	return nil
}

func (h *harness) record(target string, sig unix.Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, fmt.Sprintf("%s:%s", target, strings.TrimPrefix(unix.SignalName(sig), "SIG")))
}

// signalsSent returns what was sent so far.
func (h *harness) signalsSent() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sent)
}

// pidOf returns the pid forked for a command whose argv[0] is name, the
// latest one.
func (h *harness) pidOf(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	best := 0
	for pid, argv := range h.argv {
		if len(argv) > 0 && argv[len(argv)-1] == name && h.live[pid] && pid > best {
			best = pid
		}
	}
	return best
}

// exit makes pid exit with ws; reap collects it.
func (h *harness) exit(pid int, ws unix.WaitStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.live[pid] {
		h.t.Fatalf("exit of pid %d, which is not live", pid)
	}
	h.zombies = append(h.zombies, fakeExit{pid, ws})
}

// reap runs one reap pass, as the reaper would on SIGCHLD.
func (h *harness) reap() { h.r.Reap() }

// do runs f on the loop and waits for it.
func (h *harness) do(f func()) {
	h.t.Helper()
	if err := h.l.ask(context.Background(), f); err != nil {
		h.t.Fatalf("ask: %v", err)
	}
}

// submit admits a job for argv as root on the loop and returns it.
func (h *harness) submit(sub control.Submit) (*jobs.Job, error) {
	h.t.Helper()
	if sub.Argv == nil {
		sub.Argv = []string{"/bin/true"}
	}
	p, err := spawn.Prepare(spawn.Spec{Argv: sub.Argv, Dir: "/", Setsid: true})
	if err != nil {
		h.t.Fatal(err)
	}
	j := jobs.NewJob(sub.Argv, 0, sub.Labels, time.Now())
	j.Prep, j.Timeout = p, sub.Timeout
	if !sub.TimeoutSet {
		j.Timeout = h.l.jobsConfig().Timeout
	}
	var serr error
	h.do(func() { _, _, serr = h.l.submitJob(j, sub) })
	return j, serr
}

// jobRec reads job j's record on the loop.
func (h *harness) jobRec(j *jobs.Job) (rec api.Job) {
	h.do(func() { rec = j.Rec })
	return rec
}

// exitCode waits for the loop to end and returns its code.
func (h *harness) exitCode(d time.Duration) int {
	h.t.Helper()
	select {
	case code := <-h.done:
		return code
	case <-time.After(d):
		h.t.Fatalf("the loop did not end within %v; sent %q", d, h.signalsSent())
		return -1
	}
}
