//go:build linux

package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

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
