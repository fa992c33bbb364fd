//go:build linux

package reaper

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"unsafe"

	"golang.org/x/sys/unix"
)

// SetSubreaper makes tend the reaper of its orphaned descendants
// (PR_SET_CHILD_SUBREAPER, prctl(2)), as PID 1 is by nature.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// IsSubreaper reports whether PR_SET_CHILD_SUBREAPER is set on tend.
func IsSubreaper() (bool, error) {
	var v int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0); err != nil {
		return false, fmt.Errorf("prctl(PR_GET_CHILD_SUBREAPER): %w", err)
	}
	return v != 0, nil
}

// Descendants lists every live descendant of this process, children first,
// from /proc/PID/task/TID/children (proc(5); needs CONFIG_PROC_CHILDREN). It
// is a snapshot: a process may exit or fork right after it is read.
func Descendants() ([]int, error) {
	var out []int
	seen := map[int]bool{}
	queue := []int{os.Getpid()}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		kids, err := children(pid)
		if err != nil && pid == os.Getpid() {
			return nil, err
		}
		for _, k := range kids {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
				queue = append(queue, k)
			}
		}
	}
	return out, nil
}

// children reads the children of every thread of pid.
func children(pid int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list children of %d: %w", pid, err)
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/children")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				continue // the thread or process is gone
			}
			return nil, fmt.Errorf("list children of %d: %w", pid, err)
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out, nil
}
