//go:build linux

package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxNameLen bounds the sanitised part of a unit's directory name (NAME_MAX
// is 255; a readable prefix is all that is wanted).
const maxNameLen = 64

// removeWait is how long Remove retries rmdir while the kernel still counts
// the last killed processes (they leave the cgroup as they finish exiting).
const removeWait = 500 * time.Millisecond

// Group is one unit's cgroup. It is owned by the goroutine that made it (the
// supervisor loop): Remove closes FD and must not race with other calls.
// dir and rel never change, so a Watcher may read them from its goroutine.
type Group struct {
	h   *Hierarchy
	dir string // the cgroup directory
	rel string // the cgroup as /proc/PID/cgroup names it
	fd  int    // O_PATH directory fd for clone3; -1 after Remove
}

// New makes a unit cgroup below the base. name is for people reading the
// tree: bytes other than [A-Za-z0-9_-] become '_' (so no name looks like an
// interface file such as "memory.max"), it is cut to 64 bytes, and "-N" is
// appended so that names are unique (a directory left by an earlier tend is
// skipped). A name that is empty, ".", "..", or contains '/' or NUL is
// refused rather than mapped: it is a caller's bug.
func (h *Hierarchy) New(name string) (*Group, error) {
	base, err := sanitise(name)
	if err != nil {
		return nil, err
	}
	const tries = 100
	for range tries {
		leaf := base + "-" + strconv.FormatUint(h.seq.Add(1), 10)
		dir := filepath.Join(h.dir, leaf)
		if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("cgroup: new unit %q: %w", name, err)
		}
		// O_PATH is enough for CLONE_INTO_CGROUP (TestStartInto starts
		// through one) and grants no read or write through the fd.
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = unix.Rmdir(dir)
			return nil, fmt.Errorf("cgroup: new unit %q: open %s: %w", name, dir, err)
		}
		return &Group{h: h, dir: dir, rel: path.Join(h.rel, leaf), fd: fd}, nil
	}
	return nil, fmt.Errorf("cgroup: new unit %q: %d names taken under %s", name, tries, h.dir)
}

// sanitise maps a unit name to a directory name prefix (see New).
func sanitise(name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("cgroup: bad unit name %q: empty, \".\", \"..\", or has '/' or NUL", name)
	}
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > maxNameLen {
		b = b[:maxNameLen]
	}
	return string(b), nil
}

// FD returns an O_PATH directory fd of the cgroup, for
// syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}: the child is
// born in the unit (clone3 CLONE_INTO_CGROUP), never running outside it.
// It stays valid until Remove; check Clone3Usable first.
func (g *Group) FD() int { return g.fd }

// Path returns the cgroup's directory.
func (g *Group) Path() string { return g.dir }

// Procs returns the processes in the unit, its nested cgroups included (a
// unit running as root may make some; cgroup.kill and "populated" cover
// them too). Exited, unreaped processes are not listed: they left the
// cgroup at exit.
func (g *Group) Procs() ([]int, error) {
	var all []int
	err := g.walk(func(dir string) error {
		pids, err := readProcs(dir)
		all = append(all, pids...)
		return err
	})
	return all, err
}

// walk calls fn on the unit's directory and every nested cgroup, children
// before parents (the order rmdir needs).
func (g *Group) walk(fn func(dir string) error) error {
	var visit func(dir string) error
	visit = func(dir string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() {
				if err := visit(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
		return fn(dir)
	}
	return visit(g.dir)
}

// Count returns the number of processes in the unit (len of Procs).
func (g *Group) Count() (int, error) {
	pids, err := g.Procs()
	return len(pids), err
}

// PidsCurrent returns pids.current: the unit's tasks (threads, not
// processes) as the pids controller counts them, for comparing with
// SetPidsMax. It needs the pids controller.
func (g *Group) PidsCurrent() (int64, error) {
	if err := g.h.needs("pids", "pids.current"); err != nil {
		return 0, err
	}
	data, err := os.ReadFile(filepath.Join(g.dir, "pids.current"))
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// Populated reports cgroup.events' "populated": whether any live process is
// in the unit or below it. A Watcher reports its changes.
func (g *Group) Populated() (bool, error) {
	return readPopulated(g.dir)
}

func readPopulated(dir string) (bool, error) {
	name := filepath.Join(dir, "cgroup.events")
	data, err := os.ReadFile(name)
	if err != nil {
		return false, fmt.Errorf("cgroup: %w", err)
	}
	n, ok := flatKey(data, "populated")
	if !ok {
		return false, fmt.Errorf("cgroup: no populated key in %s", name)
	}
	return n != 0, nil
}

// OOMKills returns memory.events' "oom_kill": how many of the unit's
// processes the OOM killer has killed (memory.max reached, or the unit was
// chosen in a wider OOM). It needs the memory controller.
func (g *Group) OOMKills() (uint64, error) {
	if err := g.h.needs("memory", "memory.events"); err != nil {
		return 0, err
	}
	name := filepath.Join(g.dir, "memory.events")
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	n, ok := flatKey(data, "oom_kill")
	if !ok {
		return 0, fmt.Errorf("cgroup: no oom_kill key in %s", name)
	}
	return n, nil
}

// SetMemoryMax writes memory.max; bytes < 0 means no limit ("max"). It
// needs the memory controller.
func (g *Group) SetMemoryMax(bytes int64) error {
	return g.setLimit("memory", "memory.max", bytes)
}

// SetPidsMax writes pids.max, the unit's cap on tasks (threads); n < 0
// means no limit ("max"). It needs the pids controller.
func (g *Group) SetPidsMax(n int64) error {
	return g.setLimit("pids", "pids.max", n)
}

func (g *Group) setLimit(ctrl, file string, n int64) error {
	if err := g.h.needs(ctrl, "setting "+file); err != nil {
		return err
	}
	v := "max"
	if n >= 0 {
		v = strconv.FormatInt(n, 10)
	}
	if err := writeFile(filepath.Join(g.dir, file), v); err != nil {
		return fmt.Errorf("cgroup: set %s to %s: %w", file, v, err)
	}
	return nil
}

// Remove removes the unit's cgroup (nested ones first) and closes FD. The
// unit must be empty: kill it and wait for "populated 0" first. rmdir is
// retried for a moment while it says EBUSY, as the last killed processes
// finish exiting; after that the error says what is still there. Removing a
// removed group is not an error.
func (g *Group) Remove() error {
	deadline := time.Now().Add(removeWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		err := g.walk(func(dir string) error { return unix.Rmdir(dir) })
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			break
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			if n, cerr := g.Count(); cerr == nil && n > 0 {
				return fmt.Errorf("cgroup: remove %s: still populated (%d processes): %w", g.dir, n, err)
			}
			return fmt.Errorf("cgroup: remove %s: %w", g.dir, err)
		}
		time.Sleep(delay)
	}
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	return nil
}

// Sub makes (or reuses) the cgroup name below the base, with the base's
// controllers enabled in it for units, and returns it as the base of a
// hierarchy of its own: units made by its New go below it, so a limit
// written in it (SetPidsMax) holds for all of them together. It holds no
// process itself, as v2 requires of a cgroup that enables controllers for
// its children (tend's own are in the leaf beside it). RemoveDir removes
// it.
func (h *Hierarchy) Sub(name string) (*Hierarchy, error) {
	dir := filepath.Join(h.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("cgroup: make %s: %w", dir, err)
	}
	for _, c := range h.ctrls {
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
			_ = unix.Rmdir(dir)
			return nil, fmt.Errorf("cgroup: enable %s in %s: %w", c, dir, err)
		}
	}
	return &Hierarchy{mount: h.mount, dir: dir, rel: path.Join(h.rel, name), ctrls: slices.Clone(h.ctrls)}, nil
}

// SetPidsMax writes pids.max of the base itself (a Sub's: the cap on every
// unit below it together). It needs the pids controller in the base's
// parent, which Sub copies from.
func (h *Hierarchy) SetPidsMax(n int64) error {
	if err := h.needs("pids", "setting pids.max"); err != nil {
		return err
	}
	name := filepath.Join(h.dir, "pids.max")
	if err := writeFile(name, strconv.FormatInt(n, 10)); err != nil {
		return fmt.Errorf("cgroup: set %s to %d: %w", name, n, err)
	}
	return nil
}

// RemoveDir removes the base directory (a Sub's, at tend's exit); a unit
// cgroup still in it makes it EBUSY.
func (h *Hierarchy) RemoveDir() error {
	if err := unix.Rmdir(h.dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("cgroup: remove %s: %w", h.dir, err)
	}
	return nil
}
