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
func Descendants() ([]int, error) { return DescendantsOf(os.Getpid(), 0) }

// DescendantsOf lists the live descendants of root, children first, at
// most max of them (max <= 0: all). An error means root's own children
// could not be read (it is gone, or /proc lacks them); a descendant that
// goes away during the walk is skipped.
func DescendantsOf(root, max int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	queue := []int{root}
	for len(queue) > 0 && (max <= 0 || len(out) < max) {
		pid := queue[0]
		queue = queue[1:]
		kids, err := children(pid)
		if err != nil && pid == root {
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

// SignalDescendants sends sig to every live descendant of tend, without
// ever reaching a process that recycled a descendant's number. Direct
// children are signalled under the reap lock: unreaped, their numbers are
// theirs. A grandchild Y of X is signalled through a pidfd opened on Y and
// checked to be X's child after opening while X is still pinned (a direct
// child under the lock, or a deeper one whose own pidfd still reaches it).
// Where pidfd_open is refused (seccomp), only direct children are
// signalled: every orphan reparents to tend (a subreaper) when its parent
// dies, so repeated sweeps reach it. Returns how many were signalled.
func (r *Reaper) SignalDescendants(sig unix.Signal) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kids, err := children(os.Getpid())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range kids {
		n += r.signalFrom(pid, sig, 0)
	}
	return n, nil
}

// SignalTree sends sig to c and every live descendant of c, by the rules
// of SignalDescendants; nothing once c is reaped. It is the last resort for
// a unit helper that does not end its unit itself. With SignalAs every
// signal of the walk carries that uid's rights, so it reaches only what the
// caller could signal, and counts only those; the walk itself reads /proc
// as tend.
func (c *Child) SignalTree(sig unix.Signal) int {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if c.reaped {
		return 0
	}
	return c.r.signalFrom(c.pid, sig, c.as)
}

// signalFrom signals the direct child pid (pinned: r.mu is held) and its
// descendants through checked pidfds, each signal with uid's rights (0:
// tend's), and returns how many got it. Each process's children are read
// and pinned before it is signalled: a parent that dies of the signal
// takes its list of children with it. r.mu must be held.
func (r *Reaper) signalFrom(pid int, sig unix.Signal, uid int) int {
	type pinned struct {
		pid, fd int // fd -1: a direct child, pinned by the lock
	}
	n := 0
	queue := []pinned{{pid, -1}}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		grand, _ := children(p.pid)
		for _, g := range grand {
			fd, err := unix.PidfdOpen(g, 0)
			if err != nil {
				continue // gone, or no pidfds: a later sweep finds it as our child
			}
			if ParentOf(g) == p.pid && stillThere(p.fd) {
				queue = append(queue, pinned{g, fd})
				continue
			}
			unix.Close(fd)
		}
		var err error
		if p.fd < 0 {
			err = r.killAs(uid, p.pid, sig)
		} else {
			err = r.PidfdSignalAs(uid, p.fd, sig)
			unix.Close(p.fd)
		}
		if err == nil {
			n++
		}
	}
	return n
}

// stillThere reports whether the process behind pidfd fd has not been
// reaped (a zombie still counts: its number is still its own). fd -1 is a
// direct child under the reap lock: always there.
func stillThere(fd int) bool {
	if fd < 0 {
		return true
	}
	// EPERM (signalling as a caller, a process of another uid) says the
	// process is there all the same.
	err := unix.PidfdSendSignal(fd, 0, nil, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// ParentOf reads the parent pid of pid from /proc/PID/stat, or -1.
func ParentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The comm field may hold spaces and parentheses: fields start after
	// the last ')'. Then: state, ppid.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}
