//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
)

// V1OOMKills returns the "oom_kill" counter of memory.oom_control in a
// cgroup v1 memory cgroup (memcgDir, e.g. /sys/fs/cgroup/memory/<path>):
// how many of its processes the OOM killer killed. It is for reporting OOM
// kills where tend runs under v1 and has no units of its own; the counter
// is Linux 4.13 and later.
func V1OOMKills(memcgDir string) (uint64, error) {
	name := filepath.Join(memcgDir, "memory.oom_control")
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, fmt.Errorf("cgroup: v1 oom kills: %w", err)
	}
	n, ok := flatKey(data, "oom_kill")
	if !ok {
		return 0, fmt.Errorf("cgroup: v1 oom kills: no oom_kill counter in %s (Linux before 4.13?)", name)
	}
	return n, nil
}
