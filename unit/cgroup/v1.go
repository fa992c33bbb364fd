//go:build linux

package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
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

// V1 is tend's own cgroup in a cgroup v1 hierarchy that holds a controller
// tend limits units with (memory, pids) where the v2 tree lacks it, as on a
// hybrid host. Units get a child directory each, with their limits written
// before any process joins; a unit's process joins by itself before exec
// (the unit helper writes "0" to cgroup.procs through the directory's fd),
// never by tend writing its pid after the start. v1 has no
// no-internal-processes rule: tend stays in its own directory. The fields
// are set by FindV1 and read-only afterwards.
type V1 struct {
	ctrls []string // every controller of the hierarchy (its mount options)
	mount string   // the mount point
	dir   string   // tend's own cgroup in it
	seq   atomic.Uint64
}

// FindV1 locates tend's own cgroup in the v1 hierarchy holding ctrl: the
// "N:CTRLS:/path" line of /proc/self/cgroup that names ctrl, joined onto
// the v1 mount with ctrl among its options whose root contains the path
// (tend's directory is the mount point plus the path less the mount's
// root). It creates nothing. The error says what is missing: no such
// line, no such mount, the path outside it, read-only, or not writable.
func FindV1(ctrl string) (*V1, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: %w", ctrl, err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: %w", ctrl, err)
	}
	v, err := findV1In(cg, mi, ctrl)
	if err != nil {
		return nil, err
	}
	if err := checkV1(v.dir, ctrl); err != nil {
		return nil, err
	}
	return v, nil
}

// findV1In is FindV1 on given data (tests feed other hosts'); PidsLimit
// reads a v1 pids hierarchy's pids.max through it too.
func findV1In(cg, mi []byte, ctrl string) (*V1, error) {
	rel, ok := "", false
	for line := range bytes.Lines(cg) {
		f := strings.SplitN(strings.TrimRight(string(line), "\n"), ":", 3)
		if len(f) == 3 && f[0] != "0" && slices.Contains(strings.Split(f[1], ","), ctrl) {
			rel, ok = f[2], true
		}
	}
	if !ok {
		return nil, fmt.Errorf("cgroup v1 %s: no %q line in /proc/self/cgroup: the controller is not mounted as cgroup v1 on this host", ctrl, "N:"+ctrl+":/path")
	}
	var found *V1
	foundRoot := ""
	mounted := false
	for line := range bytes.Lines(mi) {
		f := strings.Fields(string(line))
		sep := slices.Index(f, "-")
		if sep < 6 || sep+3 >= len(f) || f[sep+1] != "cgroup" {
			continue
		}
		ctrls := slices.DeleteFunc(strings.Split(f[sep+3], ","), func(o string) bool {
			return o == "rw" || o == "ro" || strings.Contains(o, "=")
		})
		if !slices.Contains(ctrls, ctrl) {
			continue
		}
		mounted = true
		root, point := unescape(f[3]), unescape(f[4])
		// The deepest root containing the path is the nearest view; at
		// equal depth the later mount is the one on top (as locate).
		if within(rel, root) && (found == nil || len(root) >= len(foundRoot)) {
			found, foundRoot = &V1{ctrls: ctrls, mount: point, dir: filepath.Join(point, strings.TrimPrefix(rel, root))}, root
		}
	}
	switch {
	case !mounted:
		return nil, fmt.Errorf("cgroup v1 %s: no cgroup v1 filesystem with %s is mounted (none in /proc/self/mountinfo)", ctrl, ctrl)
	case found == nil:
		return nil, fmt.Errorf("cgroup v1 %s: tend's cgroup %s is under no mount of the hierarchy: mounted from another cgroup namespace?", ctrl, rel)
	}
	return found, nil
}

// checkV1 says why units cannot be made below dir, if they cannot.
func checkV1(dir, ctrl string) error {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return fmt.Errorf("cgroup v1 %s: %s is not a cgroup directory: %w", ctrl, dir, err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs")} {
		// AT_EACCESS: the effective ids decide, as for the writes to come.
		err := unix.Faccessat(unix.AT_FDCWD, p, unix.W_OK, unix.AT_EACCESS)
		switch {
		case err == nil:
		case errors.Is(err, unix.EROFS):
			return fmt.Errorf("cgroup v1 %s: %s is read-only (cgroupfs mounted ro, as container runtimes do by default)", ctrl, p)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return fmt.Errorf("cgroup v1 %s: %s is not writable by uid %d", ctrl, p, os.Geteuid())
		default:
			return fmt.Errorf("cgroup v1 %s: access %s: %w", ctrl, p, err)
		}
	}
	return nil
}

// Dir returns tend's own cgroup directory in the hierarchy.
func (v *V1) Dir() string { return v.dir }

// Controllers returns the hierarchy's controllers (several when co-mounted).
func (v *V1) Controllers() []string { return slices.Clone(v.ctrls) }

// V1Group is one unit's directory in a v1 hierarchy. It is owned by the
// goroutine that made it (the supervisor loop).
type V1Group struct {
	v   *V1
	dir string
	fd  int // O_PATH directory fd, for the unit helper to join by; -1 after Close
}

// New makes a unit directory below tend's own, named as Hierarchy.New
// names them ("-N" appended, a name taken by an earlier tend skipped).
func (v *V1) New(name string) (*V1Group, error) {
	base, err := sanitise(name)
	if err != nil {
		return nil, err
	}
	const tries = 100
	for range tries {
		dir := filepath.Join(v.dir, base+"-"+strconv.FormatUint(v.seq.Add(1), 10))
		if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("cgroup v1: new unit %q: %w", name, err)
		}
		// An O_PATH fd is enough for openat(fd, "cgroup.procs") in the
		// helper, and grants nothing through itself.
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = unix.Rmdir(dir)
			return nil, fmt.Errorf("cgroup v1: new unit %q: open %s: %w", name, dir, err)
		}
		return &V1Group{v: v, dir: dir, fd: fd}, nil
	}
	return nil, fmt.Errorf("cgroup v1: new unit %q: %d names taken under %s", name, tries, v.dir)
}

// FD returns the directory's O_PATH fd, valid until Close or Remove.
func (g *V1Group) FD() int { return g.fd }

// Path returns the unit's directory.
func (g *V1Group) Path() string { return g.dir }

// SetMemoryLimit writes memory.limit_in_bytes (the kernel rounds it to
// pages). Swap is not limited: with swap on, a unit over its limit swaps
// before the OOM killer acts.
func (g *V1Group) SetMemoryLimit(bytes int64) error {
	return g.set("memory.limit_in_bytes", strconv.FormatInt(bytes, 10))
}

// SetPidsMax writes pids.max: the unit's cap on tasks (threads included).
func (g *V1Group) SetPidsMax(n int64) error {
	return g.set("pids.max", strconv.FormatInt(n, 10))
}

func (g *V1Group) set(file, v string) error {
	if err := writeFile(filepath.Join(g.dir, file), v); err != nil {
		return fmt.Errorf("cgroup v1: set %s to %s in %s: %w", file, v, g.dir, err)
	}
	return nil
}

// OOMKills is V1OOMKills of the unit's directory.
func (g *V1Group) OOMKills() (uint64, error) { return V1OOMKills(g.dir) }

// Tasks returns the pids in the unit's cgroup.procs.
func (g *V1Group) Tasks() ([]int, error) { return readProcs(g.dir) }

// Close closes the directory's fd (once the unit's child has joined or
// failed to); Remove closes it too.
func (g *V1Group) Close() {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}

// Remove closes the fd and removes the directory, once: it never waits.
// A unit that left processes behind (a group unit's escapers) keeps its
// directory, and the error says how many are in it; a process that is
// still exiting may make it EBUSY for a moment too.
func (g *V1Group) Remove() error {
	g.Close()
	err := unix.Rmdir(g.dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if pids, perr := readProcs(g.dir); perr == nil && len(pids) > 0 {
		return fmt.Errorf("cgroup v1: remove %s: %d processes still in it: %w", g.dir, len(pids), err)
	}
	return fmt.Errorf("cgroup v1: remove %s: %w", g.dir, err)
}

// Sub makes (or reuses, left by an earlier tend) the directory name below
// tend's own in the hierarchy and returns it as a hierarchy of its own:
// units made by its New go below it, so a limit written in it (SetPidsMax)
// holds for all of them together. RemoveDir removes it.
func (v *V1) Sub(name string) (*V1, error) {
	dir := filepath.Join(v.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("cgroup v1: make %s: %w", dir, err)
	}
	return &V1{ctrls: v.ctrls, mount: v.mount, dir: dir}, nil
}

// SameHierarchy reports whether v and o are directories of one mounted
// hierarchy (controllers co-mounted, as memory and pids can be): a process
// is in one cgroup of it, so a unit gets one directory there.
func (v *V1) SameHierarchy(o *V1) bool { return o != nil && v.mount == o.mount }

// SetPidsMax writes pids.max of tend's directory itself (a Sub's: the cap
// on every unit below it together).
func (v *V1) SetPidsMax(n int64) error {
	name := filepath.Join(v.dir, "pids.max")
	if err := writeFile(name, strconv.FormatInt(n, 10)); err != nil {
		return fmt.Errorf("cgroup v1: set %s to %d: %w", name, n, err)
	}
	return nil
}

// RemoveDir removes tend's directory (a Sub's, at tend's exit); a unit
// directory still in it (a process outlived its unit) makes it EBUSY.
func (v *V1) RemoveDir() error {
	if err := unix.Rmdir(v.dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("cgroup v1: remove %s: %w", v.dir, err)
	}
	return nil
}
