//go:build linux

package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNewNames(t *testing.T) {
	h := testHierarchy(t)
	for _, bad := range []string{"", ".", "..", "a/b", "/", "a\x00b"} {
		if g, err := h.New(bad); err == nil {
			g.Remove()
			t.Errorf("New(%q) = %s, want an error", bad, g.Path())
		} else if !strings.Contains(err.Error(), "bad unit name") {
			t.Errorf("New(%q): %v, want a bad unit name error", bad, err)
		}
	}
	a := newGroup(t, h, "web.1 x")
	b := newGroup(t, h, "web.1 x")
	if a.Path() == b.Path() {
		t.Errorf("two New(same name) share %s", a.Path())
	}
	for _, g := range []*Group{a, b} {
		if name := filepath.Base(g.Path()); !strings.HasPrefix(name, "web_1_x-") || filepath.Dir(g.Path()) != h.Dir() {
			t.Errorf("New(\"web.1 x\") = %s, want %s/web_1_x-N", g.Path(), h.Dir())
		}
	}
	// A directory already there (an earlier tend's) is skipped.
	next := filepath.Join(h.Dir(), "taken-"+strconv.FormatUint(h.seq.Load()+1, 10))
	if err := os.Mkdir(next, 0o755); err != nil {
		t.Fatal(err)
	}
	if c := newGroup(t, h, "taken"); c.Path() == next {
		t.Errorf("New reused %s", next)
	}
	if long := newGroup(t, h, strings.Repeat("x", 300)); len(filepath.Base(long.Path())) > maxNameLen+21 {
		t.Errorf("New(300 x) = %s: not cut", long.Path())
	}
}

// TestStartInto starts a child born in the unit and follows it to Remove.
func TestStartInto(t *testing.T) {
	h := testHierarchy(t)
	if !Clone3Usable() {
		t.Fatal("Clone3Usable() = false on this machine, want true")
	}
	g := newGroup(t, h, "svc")
	cmd := startIn(t, g, nil, "/bin/sleep", "1000")
	pid := cmd.Process.Pid
	if procs, err := g.Procs(); err != nil || !slices.Equal(procs, []int{pid}) {
		t.Errorf("Procs() = %v, %v; want [%d]", procs, err, pid)
	}
	if n, err := g.Count(); err != nil || n != 1 {
		t.Errorf("Count() = %d, %v; want 1", n, err)
	}
	if p, err := g.Populated(); err != nil || !p {
		t.Errorf("Populated() = %v, %v; want true", p, err)
	}
	if !g.Holds(pid) {
		data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		t.Errorf("/proc/%d/cgroup = %q, want 0::%s", pid, data, g.rel)
	}
	if err := g.Remove(); err == nil || !strings.Contains(err.Error(), "still populated (1 processes)") {
		t.Errorf("Remove() of a populated unit: %v, want still populated", err)
	}
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill(): %v", err)
	}
	_ = waitCmd(t, cmd)
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("after Kill the child ended with %v, want SIGKILL", cmd.ProcessState)
	}
	if p, err := g.Populated(); err != nil || p {
		t.Errorf("Populated() after Kill and reap = %v, %v; want false", p, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatalf("Remove(): %v", err)
	}
	if _, err := os.Stat(g.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove, stat %s: %v", g.Path(), err)
	}
	if g.FD() != -1 {
		t.Errorf("FD() after Remove = %d, want -1", g.FD())
	}
	if err := g.Remove(); err != nil {
		t.Errorf("second Remove(): %v", err)
	}
}

// startEscaper starts a unit process that double-forks into a new session
// (setsid), ignores SIGTERM and outlives its parent, which is reaped here;
// it returns the escaper's pid.
func startEscaper(t *testing.T, g *Group) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := startIn(t, g, w, "/bin/sh", "-c", `setsid /bin/sh -c 'trap "" TERM; echo $$; exec sleep 1000' &`)
	w.Close()
	line := readLine(t, r)
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("escaper's parent: %v", err)
	}
	pid, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("escaper printed %q, want its pid", line)
	}
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL) }) // outside the unit only if the test failed
	return pid
}

// TestKillEscaper: a setsid'd double-forker that ignores SIGTERM is still
// in the unit, and Kill empties it, as the watcher reports.
func TestKillEscaper(t *testing.T) {
	h := testHierarchy(t)
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g := newGroup(t, h, "job")
	if p, err := w.Watch(g, "job-1"); err != nil || p {
		t.Fatalf("Watch() = %v, %v; want false (empty so far)", p, err)
	}
	pid := startEscaper(t, g)
	if ev := waitEvent(t, w); ev != (Event{Cookie: "job-1", Populated: true}) {
		t.Errorf("first event %+v, want job-1 populated", ev)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("escaper's session %d, want its own (%d)", sid, pid)
	}
	if procs, err := g.Procs(); err != nil || !slices.Equal(procs, []int{pid}) {
		t.Errorf("Procs() = %v, %v; want [%d] (the escaper; its parent was reaped)", procs, err, pid)
	}
	if err := g.Signal(unix.SIGTERM); err != nil {
		t.Errorf("Signal(SIGTERM): %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if !alive(pid) {
		t.Fatalf("the escaper died of SIGTERM, which it ignores")
	}
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill(): %v", err)
	}
	if ev := waitEvent(t, w); ev != (Event{Cookie: "job-1", Populated: false}) {
		t.Errorf("event after Kill %+v, want job-1 not populated", ev)
	}
	if alive(pid) {
		t.Errorf("escaper %d alive after Kill", pid)
	}
	if n, err := g.Count(); err != nil || n != 0 {
		t.Errorf("Count() after Kill = %d, %v; want 0", n, err)
	}
	w.Unwatch(g)
	if err := g.Remove(); err != nil {
		t.Errorf("Remove(): %v", err)
	}
}

// TestKillFrozen runs Kill's fallback (kernels without cgroup.kill) on an
// escaper and a process that forks all the time.
func TestKillFrozen(t *testing.T) {
	h := testHierarchy(t)
	g := newGroup(t, h, "old-kernel")
	pid := startEscaper(t, g)
	forker := startIn(t, g, nil, "/bin/sh", "-c", `while :; do /bin/true & /bin/true; done`)
	time.Sleep(50 * time.Millisecond)
	if err := g.killFrozen(); err != nil {
		t.Fatalf("killFrozen(): %v", err)
	}
	_ = waitCmd(t, forker)
	if n, err := g.Count(); err != nil || n != 0 {
		t.Errorf("Count() after killFrozen = %d, %v; want 0", n, err)
	}
	if alive(pid) {
		t.Errorf("escaper %d alive after killFrozen", pid)
	}
	data, err := os.ReadFile(filepath.Join(g.Path(), "cgroup.events"))
	if n, ok := flatKey(data, "frozen"); err != nil || !ok || n != 0 {
		t.Errorf("cgroup.events after killFrozen: %q, %v; want frozen 0", data, err)
	}
}

// TestSignalOutside: Signal reaches the unit's processes and nothing else,
// even when handed a stale pid list that names an outsider (as after the
// number was recycled).
func TestSignalOutside(t *testing.T) {
	h := testHierarchy(t)
	g := newGroup(t, h, "sig")
	in := startIn(t, g, nil, "/bin/sleep", "1000")
	out := startIn(t, nil, nil, "/bin/sleep", "1000")
	if err := g.Signal(unix.SIGTERM); err != nil {
		t.Fatalf("Signal(SIGTERM): %v", err)
	}
	_ = waitCmd(t, in)
	if ws := in.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("unit process ended with %v, want SIGTERM", in.ProcessState)
	}
	n, err := g.signalPIDs([]int{out.Process.Pid, 1 << 22}, unix.SIGTERM)
	if err != nil || n != 0 {
		t.Errorf("signalPIDs(outsider, unused pid) = %d, %v; want 0, nil", n, err)
	}
	time.Sleep(50 * time.Millisecond)
	if !alive(out.Process.Pid) {
		t.Errorf("the process outside the unit was signalled")
	}
}

// TestLimits: limits and counters need their controller; without it the
// error names it. (On the CI machines v1 holds memory and pids, so the v2
// tree usually has neither.)
func TestLimits(t *testing.T) {
	h := testHierarchy(t)
	g := newGroup(t, h, "lim")
	t.Logf("controllers enabled for units: %v", h.Controllers())
	for _, c := range []struct {
		ctrl, file, want string
		set              func() error
	}{
		{"pids", "pids.max", "100", func() error { return g.SetPidsMax(100) }},
		{"pids", "pids.current", "", func() error { _, err := g.PidsCurrent(); return err }},
		{"memory", "memory.max", "33554432", func() error { return g.SetMemoryMax(32 << 20) }},
		{"memory", "memory.events", "", func() error { _, err := g.OOMKills(); return err }},
	} {
		err := c.set()
		if !h.Has(c.ctrl) {
			if err == nil || !strings.Contains(err.Error(), "needs the "+c.ctrl+" controller") {
				t.Errorf("%s without the %s controller: %v, want an error naming it", c.file, c.ctrl, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
		} else if c.want != "" {
			if data, err := os.ReadFile(filepath.Join(g.Path(), c.file)); err != nil || strings.TrimSpace(string(data)) != c.want {
				t.Errorf("%s = %q, %v; want %s", c.file, data, err, c.want)
			}
		}
	}
}

// TestSub: the units' parent (the pids reserve) holds the units made
// through it, gets the base's controllers, and is removed once empty.
func TestSub(t *testing.T) {
	h := testHierarchy(t)
	sub, err := h.Sub("units")
	if err != nil {
		t.Fatalf("Sub: %v", err)
	}
	if want := filepath.Join(h.Dir(), "units"); sub.Dir() != want || !slices.Equal(sub.Controllers(), h.Controllers()) {
		t.Errorf("Sub: dir %s, controllers %v; want %s, %v", sub.Dir(), sub.Controllers(), want, h.Controllers())
	}
	g := newGroup(t, sub, "u")
	if filepath.Dir(g.Path()) != sub.Dir() || g.rel != sub.rel+"/"+filepath.Base(g.Path()) {
		t.Errorf("unit %s (%s) is not below %s", g.Path(), g.rel, sub.Dir())
	}
	err = sub.SetPidsMax(40)
	if !h.Has("pids") {
		if err == nil || !strings.Contains(err.Error(), "needs the pids controller") {
			t.Errorf("SetPidsMax without pids: %v, want an error naming it", err)
		}
	} else if data, rerr := os.ReadFile(filepath.Join(sub.Dir(), "pids.max")); err != nil || strings.TrimSpace(string(data)) != "40" {
		t.Errorf("SetPidsMax(40): %v; pids.max %q, %v", err, data, rerr)
	}
	if err := sub.RemoveDir(); err == nil {
		t.Errorf("RemoveDir with a unit in it: no error")
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := sub.RemoveDir(); err != nil || exists(sub.Dir()) {
		t.Errorf("RemoveDir: %v; still there: %v", err, exists(sub.Dir()))
	}
}
