//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PidsLimit returns the lowest pids.max over tend's own cgroup and its
// ancestors up to the mount, in the v2 hierarchy and in a v1 pids
// hierarchy, whichever are mounted and hold tend (a container's pids limit:
// docker run --pids-limit, a pod's): how many tasks tend and everything it
// starts may have together. limit is 0 where no pids.max is set ("max"
// everywhere, or no pids controller tend can see); file names the pids.max
// that sets it. Read-only: it works where cgroups are mounted read-only.
func PidsLimit() (limit int64, file string, err error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, "", fmt.Errorf("cgroup: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, "", fmt.Errorf("cgroup: %w", err)
	}
	var dirs [][2]string // {mount point, tend's directory under it}
	if mnt, _, dir, err := locate(cg, mi); err == nil {
		dirs = append(dirs, [2]string{mnt, dir})
	}
	if v, err := findV1In(cg, mi, "pids"); err == nil {
		dirs = append(dirs, [2]string{v.mount, v.dir})
	}
	for _, d := range dirs {
		n, f := lowestPidsMax(d[0], d[1])
		if n > 0 && (limit == 0 || n < limit) {
			limit, file = n, f
		}
	}
	return limit, file, nil
}

// lowestPidsMax reads pids.max from dir up to mnt and returns the lowest
// number found (0: none, all "max" or absent).
func lowestPidsMax(mnt, dir string) (int64, string) {
	var low int64
	var file string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		name := filepath.Join(d, "pids.max")
		if data, err := os.ReadFile(name); err == nil {
			s := strings.TrimSpace(string(data))
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && (low == 0 || n < low) {
				low, file = n, name
			}
		}
		if d == filepath.Clean(mnt) || d == "/" || !strings.HasPrefix(d, filepath.Clean(mnt)) {
			return low, file
		}
	}
}
