//go:build linux

package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// killWait bounds the SIGKILL rounds of Kill's fallback (DESIGN.md §1.6).
const killWait = time.Second

// Kill kills every process of the unit, however it forked or setsid. With
// cgroup.kill (Linux 5.14) the kernel does it in one write, and no process
// can fork its way out meanwhile. Without it, Kill freezes the unit (so
// nothing forks while we look), SIGKILLs every process through checked
// pidfds, thaws it (the frozen deaths then complete), and repeats while
// processes are left, for at most a second. Kill does not wait for the
// processes to be gone: a Watcher reports "populated 0".
func (g *Group) Kill() error {
	err := writeFile(filepath.Join(g.dir, "cgroup.kill"), "1")
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(g.dir); serr != nil {
			return fmt.Errorf("cgroup: kill: %w", serr)
		}
		return g.killFrozen()
	}
	if err != nil {
		return fmt.Errorf("cgroup: kill: %w", err)
	}
	return nil
}

// killFrozen is Kill where cgroup.kill is missing. A fork already under way
// when the freeze lands may add a (frozen) process after Procs was read:
// the next round gets it. cgroup.freeze itself is Linux 5.2; without it the
// rounds race with forks and only the deadline bounds them.
func (g *Group) killFrozen() error {
	freeze := filepath.Join(g.dir, "cgroup.freeze")
	deadline := time.Now().Add(killWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		frozen := writeFile(freeze, "1") == nil
		pids, err := g.Procs()
		if err == nil {
			_, err = g.signalPIDs(pids, unix.SIGKILL)
		}
		if frozen {
			// A frozen process takes SIGKILL (cgroup-v2.rst, "Freezer"),
			// but thaw anyway so nothing of it stays parked.
			if terr := writeFile(freeze, "0"); terr != nil && err == nil {
				err = terr
			}
		}
		if err != nil {
			return fmt.Errorf("cgroup: kill %s: %w", g.dir, err)
		}
		if n, err := g.Count(); err != nil || n == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup: kill %s: processes left after %v of SIGKILL rounds", g.dir, killWait)
		}
		time.Sleep(delay)
	}
}

// Signal sends sig to every process of the unit (a snapshot: one forked
// meanwhile may be missed; Kill has no such gap). It never signals a
// process outside the unit, even when a pid listed in cgroup.procs exits
// and its number is taken by another process before the signal is sent:
//
//  1. pidfd_open(pid) pins one process: whatever happens to the number
//     afterwards, the fd names that process or a dead one.
//  2. /proc/<pid>/cgroup is read and must name this unit (or a cgroup
//     below it).
//  3. pidfd_send_signal(fd) delivers to the pinned process only if it has
//     not been reaped (ESRCH otherwise). If it succeeds, the process held
//     the number throughout, as a pid is not reused until reaped, so the
//     /proc read of step 2 was about this very process.
//
// The only gap left is a process moving itself to another cgroup between
// steps 2 and 3, which needs write access to that cgroup's cgroup.procs.
// Processes gone meanwhile (ESRCH) are not errors; the first other error
// is returned after every process was tried.
func (g *Group) Signal(sig unix.Signal) error {
	pids, err := g.Procs()
	if err != nil {
		return err
	}
	_, err = g.signalPIDs(pids, sig)
	return err
}

// SignalVia is Signal with every pidfd_send_signal(2) made by send instead
// (tend sends a non-root caller's signals with the caller's rights). A
// process send gets EPERM for is skipped, as kill(2) skips the members of a
// group its sender may not signal.
func (g *Group) SignalVia(sig unix.Signal, send func(pidfd int, sig unix.Signal) error) error {
	pids, err := g.Procs()
	if err != nil {
		return err
	}
	var first error
	for _, pid := range pids {
		if _, err := g.signalOneVia(pid, sig, send); err != nil && !errors.Is(err, unix.EPERM) && first == nil {
			first = fmt.Errorf("cgroup: signal %v to %d: %w", sig, pid, err)
		}
	}
	return first
}

// signalPIDs is Signal on a given list of pids (a snapshot, possibly stale);
// it returns how many processes got sig.
func (g *Group) signalPIDs(pids []int, sig unix.Signal) (int, error) {
	var first error
	n := 0
	for _, pid := range pids {
		ok, err := g.signalOne(pid, sig)
		if ok {
			n++
		}
		if err != nil && first == nil {
			first = fmt.Errorf("cgroup: signal %v to %d: %w", sig, pid, err)
		}
	}
	return n, first
}

func (g *Group) signalOne(pid int, sig unix.Signal) (bool, error) {
	return g.signalOneVia(pid, sig, func(fd int, sig unix.Signal) error { return unix.PidfdSendSignal(fd, sig, nil, 0) })
}

func (g *Group) signalOneVia(pid int, sig unix.Signal, send func(int, unix.Signal) error) (bool, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	if !g.Holds(pid) {
		return false, nil
	}
	err = send(fd, sig)
	if errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pidfd_send_signal: %w", err)
	}
	return true, nil
}

// Holds reports whether /proc/<pid>/cgroup names the unit or a cgroup below
// it. A process that is gone (no /proc entry) is not held.
func (g *Group) Holds(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	p, ok := unifiedPath(data)
	return ok && (p == g.rel || strings.HasPrefix(p, g.rel+"/"))
}
