//go:build linux

package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// wanted are the controllers tend enables for its units when its parent
// granted them: memory for memory.max and OOM counts, pids for pids.max.
var wanted = []string{"memory", "pids"}

// leafName is the child of the base cgroup that holds tend's own processes.
// Unit names always end in "-N", so no unit can take it.
const leafName = "tend"

// Hierarchy is tend's delegated part of a cgroup v2 hierarchy: the base
// directory (tend's own cgroup, or the one given to Open) and the controllers
// enabled for the units below it. Its fields are set by Find or Open and
// read-only afterwards, so its methods may be called from any goroutine.
type Hierarchy struct {
	mount string   // the cgroup2 mount point
	dir   string   // the base directory (under mount)
	rel   string   // the base as /proc/PID/cgroup names it ("0::" path)
	ctrls []string // enabled in the base's cgroup.subtree_control
	seq   atomic.Uint64
}

// Find locates tend's own cgroup in a writable, delegated cgroup2 mount
// (tend's "0::" line of /proc/self/cgroup joined onto the mount whose root
// contains it, as /proc/self/mountinfo shows it), then sets it up: tend's
// processes move into the leaf "<base>/tend" and the wanted controllers are
// enabled for units. The error says what is missing: no cgroup2 mounted,
// tend's cgroup outside every mount (another cgroup namespace), the
// hierarchy's root (not a delegated subtree), read-only, or not writable.
func Find() (*Hierarchy, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	mnt, rel, dir, err := locate(cg, mi)
	if err != nil {
		return nil, err
	}
	return setup(mnt, rel, dir)
}

// Open is Find with the base given: path is a cgroup directory relative to
// the cgroup2 mount at mountpoint (tests mount their own and use a parent of
// their own). The base is set up as in Find.
func Open(mountpoint, path string) (*Hierarchy, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	mountpoint = filepath.Clean(mountpoint)
	var root string
	found := false
	for _, m := range cgroup2Mounts(mi) {
		if m.point == mountpoint {
			root, found = m.root, true // the last one is on top
		}
	}
	if !found {
		return nil, fmt.Errorf("cgroup: %s is not a cgroup2 mount point", mountpoint)
	}
	rel := filepath.Clean("/" + path)
	return setup(mountpoint, joinRel(root, rel), filepath.Join(mountpoint, rel))
}

// mount is one cgroup2 line of mountinfo.
type mount struct {
	point string // where it is mounted
	root  string // the cgroup it shows at point, relative to our cgroup namespace
}

// locate finds tend's base directory from /proc/self/cgroup and
// /proc/self/mountinfo (given as data, so that tests can feed other hosts').
func locate(cg, mi []byte) (mnt, rel, dir string, err error) {
	rel, ok := unifiedPath(cg)
	if !ok {
		return "", "", "", errors.New(`cgroup: no cgroup2 entry ("0::") in /proc/self/cgroup`)
	}
	mounts := cgroup2Mounts(mi)
	if len(mounts) == 0 {
		return "", "", "", errors.New("cgroup: no cgroup2 filesystem mounted (none in /proc/self/mountinfo)")
	}
	best := -1
	for i, m := range mounts {
		// A root outside our cgroup namespace shows as "/.." and cannot
		// contain rel; a mount of a sibling's subtree does not contain it
		// either. Of those that do, the deepest root is the nearest view;
		// at equal depth the later mount is the one on top.
		if !within(rel, m.root) {
			continue
		}
		if best < 0 || len(m.root) >= len(mounts[best].root) {
			best = i
		}
	}
	if best < 0 {
		var roots []string
		for _, m := range mounts {
			roots = append(roots, m.point+" (root "+m.root+")")
		}
		return "", "", "", fmt.Errorf("cgroup: tend's cgroup %s is under no cgroup2 mount (%s): mounted from another cgroup namespace?",
			rel, strings.Join(roots, ", "))
	}
	m := mounts[best]
	return m.point, rel, filepath.Join(m.point, strings.TrimPrefix(rel, m.root)), nil
}

// unifiedPath returns the path of the "0::" line of /proc/PID/cgroup.
func unifiedPath(cg []byte) (string, bool) {
	for line := range bytes.Lines(cg) {
		if p, ok := bytes.CutPrefix(bytes.TrimRight(line, "\n"), []byte("0::")); ok {
			return string(p), true
		}
	}
	return "", false
}

// cgroup2Mounts parses mountinfo (proc_pid_mountinfo(5)): fields 4 and 5
// are root and mount point (octal-escaped), and the filesystem type follows
// the "-" that ends the optional fields.
func cgroup2Mounts(mi []byte) []mount {
	var ms []mount
	for line := range bytes.Lines(mi) {
		f := strings.Fields(string(line))
		sep := slices.Index(f, "-")
		if sep < 6 || sep+1 >= len(f) || f[sep+1] != "cgroup2" {
			continue
		}
		ms = append(ms, mount{point: unescape(f[4]), root: unescape(f[3])})
	}
	return ms
}

// unescape undoes mountinfo's \NNN octal escapes (space, tab, newline, \).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// within reports whether cgroup path p is root or below it.
func within(p, root string) bool {
	if strings.HasPrefix(root, "/..") {
		return false
	}
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}

// joinRel names path (relative to a mount showing root) as /proc/PID/cgroup
// does.
func joinRel(root, p string) string {
	return path.Join(root, p)
}

// setup checks that dir is a writable, delegated cgroup, moves every process
// in it into the leaf, and enables the wanted controllers for units.
func setup(mnt, rel, dir string) (*Hierarchy, error) {
	if err := checkDelegated(dir); err != nil {
		return nil, err
	}
	h := &Hierarchy{mount: mnt, dir: dir, rel: rel}
	leaf := filepath.Join(dir, leafName)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("cgroup: make tend's leaf: %w", err)
	}
	if err := moveAll(dir, leaf); err != nil {
		return nil, err
	}
	// Best effort, one controller per write so that one refused (not
	// granted by the parent, or a threaded subtree) does not stop another.
	avail, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	for _, c := range wanted {
		if slices.Contains(strings.Fields(string(avail)), c) {
			_ = writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c)
		}
	}
	on, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	h.ctrls = strings.Fields(string(on))
	return h, nil
}

// checkDelegated says why tend cannot manage dir, if it cannot.
func checkDelegated(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return fmt.Errorf("cgroup: %s is not a cgroup2 directory: %w", dir, err)
	}
	// cgroup.events exists on every cgroup but the hierarchy's real root
	// (cgroup-v2.rst): a cgroup namespace's root has it, the host's has not.
	// At the real root tend would be sharing the whole machine's tree.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.events")); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cgroup: %s is the root of the cgroup2 hierarchy, not a delegated subtree (tend runs in no cgroup of its own)", dir)
	}
	for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs"), filepath.Join(dir, "cgroup.subtree_control")} {
		// AT_EACCESS: the effective ids decide, as for the writes to come
		// (access(2) alone checks the real ones).
		err := unix.Faccessat(unix.AT_FDCWD, p, unix.W_OK, unix.AT_EACCESS)
		switch {
		case err == nil:
		case errors.Is(err, unix.EROFS):
			return fmt.Errorf("cgroup: %s is read-only (cgroup2 mounted ro, as container runtimes do by default)", p)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return fmt.Errorf("cgroup: %s is not writable by uid %d: the cgroup is not delegated to tend", p, os.Geteuid())
		default:
			return fmt.Errorf("cgroup: access %s: %w", p, err)
		}
	}
	return nil
}

// moveAll moves every process of dir into leaf, in rounds, since a process
// may fork while we move (tend has no children yet at Find, but Open may be
// given a busy cgroup).
func moveAll(dir, leaf string) error {
	const rounds = 10
	for range rounds {
		pids, err := readProcs(dir)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(pid))
			if err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cgroup: move pid %d into %s: %w", pid, leaf, err)
			}
		}
	}
	return fmt.Errorf("cgroup: %s still has processes after %d rounds of moving them into %s", dir, rounds, leaf)
}

// Dir returns the base directory: tend's leaf and the units are below it.
func (h *Hierarchy) Dir() string { return h.dir }

// Controllers returns the controllers enabled for units (from the base's
// cgroup.subtree_control after setup), e.g. [memory pids]; empty where the
// parent granted none, which still allows tracking and killing.
func (h *Hierarchy) Controllers() []string { return slices.Clone(h.ctrls) }

// Has reports whether controller name is enabled for units.
func (h *Hierarchy) Has(name string) bool { return slices.Contains(h.ctrls, name) }

// needs is the error for a limit or counter whose controller is off.
func (h *Hierarchy) needs(name, what string) error {
	if h.Has(name) {
		return nil
	}
	on := strings.Join(h.ctrls, " ")
	if on == "" {
		on = "none"
	}
	return fmt.Errorf("cgroup: %s needs the %s controller, which is not enabled under %s (enabled: %s)", what, name, h.dir, on)
}

// readProcs reads the pids in dir's cgroup.procs; 0 (a process in another
// pid namespace) is left out.
func readProcs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// writeFile writes s to an existing cgroup file in one write(2): cgroup
// files take one value per write, and O_CREAT would turn a missing file
// (no such controller) into a misleading EPERM.
func writeFile(name, s string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(s))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// flatKey returns key's value in a flat-keyed file ("key value" lines, as
// cgroup.events, memory.events and v1's memory.oom_control are).
func flatKey(data []byte, key string) (uint64, bool) {
	for line := range bytes.Lines(data) {
		k, v, ok := strings.Cut(strings.TrimSpace(string(line)), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
