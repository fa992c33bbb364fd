//go:build linux

package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLocateV1(t *testing.T) {
	cg := []byte("12:pids:/docker/abc\n11:cpu,cpuacct:/docker/abc\n0::/docker/abc\n")
	mi := []byte("30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n" +
		"31 25 0:27 /docker/abc /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids\n")
	mnt, dir, err := locateV1(cg, mi, "pids")
	if err != nil || mnt != "/sys/fs/cgroup/pids" || dir != "/sys/fs/cgroup/pids" {
		t.Errorf("namespaced pids: %q %q %v; want the mount itself", mnt, dir, err)
	}
	mi2 := []byte("31 25 0:27 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids\n")
	if _, dir, err := locateV1(cg, mi2, "pids"); err != nil || dir != "/sys/fs/cgroup/pids/docker/abc" {
		t.Errorf("host view: %q %v", dir, err)
	}
	if _, _, err := locateV1(cg, mi2, "memory"); err == nil {
		t.Error("no memory line: no error")
	}
	if _, _, err := locateV1([]byte("3:memory:/x\n"), mi2, "memory"); err == nil {
		t.Error("no memory mount: no error")
	}
	// A mount of another cgroup's subtree does not hold tend's.
	mi3 := []byte("31 25 0:27 /other /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
	if _, _, err := locateV1(cg, mi3, "pids"); err == nil {
		t.Error("sibling's subtree: no error")
	}
}

func TestLowestPidsMax(t *testing.T) {
	mnt := t.TempDir()
	dir := filepath.Join(mnt, "a", "b")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(d, s string) {
		if err := os.WriteFile(filepath.Join(d, "pids.max"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := lowestPidsMax(mnt, dir); n != 0 {
		t.Errorf("no pids.max: %d, want 0", n)
	}
	write(dir, "max\n")
	write(filepath.Join(mnt, "a"), "300\n")
	write(mnt, "1000\n")
	if n, f := lowestPidsMax(mnt, dir); n != 300 || f != filepath.Join(mnt, "a", "pids.max") {
		t.Errorf("got %d from %s, want 300 from a's", n, f)
	}
	write(dir, "40\n")
	if n, _ := lowestPidsMax(mnt, dir); n != 40 {
		t.Errorf("got %d, want 40", n)
	}
}
