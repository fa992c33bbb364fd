//go:build linux

package zombies

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestScan: children of this test that exited and were not waited for are
// found as this process's zombies, with their pids and the time they were
// first seen kept across scans; a reaped one is forgotten; a scan younger
// than maxAge is answered from the last one.
func TestScan(t *testing.T) {
	var pids []int
	for range 3 {
		cmd := exec.Command("true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	time.Sleep(200 * time.Millisecond) // they exit; nobody waits yet
	s := New()
	mine := func(ps []Parent) *Parent {
		for i := range ps {
			if ps[i].PID == os.Getpid() {
				return &ps[i]
			}
		}
		return nil
	}
	p := mine(s.Scan(1, 0))
	if p == nil || p.Zombies != 3 || !slices.Equal(p.PIDs, slices.Sorted(slices.Values(pids))) || p.UID != os.Getuid() || p.Command == "" {
		t.Fatalf("scan: %+v; want this process holding %v", p, pids)
	}
	first := p.FirstSeen
	time.Sleep(10 * time.Millisecond)
	if p := mine(s.Scan(1, time.Hour)); p == nil || p.FirstSeen != first {
		t.Errorf("a cached scan: %+v", p)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pids[0], &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	p = mine(s.Scan(1, 0))
	if p == nil || p.Zombies != 2 || p.FirstSeen != first {
		t.Errorf("after one was reaped: %+v; want 2, first seen %v", p, first)
	}
	for _, pid := range pids[1:] {
		syscall.Wait4(pid, &ws, 0, nil)
	}
	if p := mine(s.Scan(1, 0)); p != nil {
		t.Errorf("after all were reaped: %+v", p)
	}
	if p := mine(s.Scan(os.Getpid(), 0)); p != nil {
		t.Errorf("skip: %+v", p)
	}
}
