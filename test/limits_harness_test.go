//go:build linux

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Unit limits (issue 12): memory_max and pids_max. On the test machines
// memory and pids are bound to cgroup v1, so the limits go into a v1
// directory per unit below tend's own v1 cgroup. Each test gives tend a
// parent v1 cgroup of its own in the memory and the pids hierarchy (tend
// joins them before it starts: inv1), removed, with whatever tend left in
// it, after the test; the v1 hierarchies are the host's.

func init() {
	helpers["inv1"] = helperInV1
	helpers["rov1"] = helperROV1
}

// v1Ctrls are the v1 hierarchies a limits test gives tend a cgroup in.
var v1Ctrls = []string{"memory", "pids"}

var v1Seq atomic.Int64

// v1Parent makes the test's own directory in each of v1Ctrls and returns
// its path relative to the hierarchies' root. After the test (tend gone by
// then: this cleanup runs after tend's) it removes them, deepest first,
// failing the test if it cannot within 5 s.
func v1Parent(t *testing.T) string {
	t.Helper()
	needRoot(t)
	rel := fmt.Sprintf("/tend-limits-%d-%d", os.Getpid(), v1Seq.Add(1))
	for _, c := range v1Ctrls {
		dir := filepath.Join("/sys/fs/cgroup", c, rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("no writable cgroup v1 %s hierarchy: %v", c, err)
		}
	}
	t.Cleanup(func() {
		for _, c := range v1Ctrls {
			if err := removeV1Tree(filepath.Join("/sys/fs/cgroup", c, rel)); err != nil {
				t.Errorf("remove the test's v1 cgroup: %v", err)
			}
		}
	})
	return rel
}

// removeV1Tree removes dir and the cgroups below it, children first,
// retrying while the last tasks exit.
func removeV1Tree(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := unix.Rmdir(dirs[i])
			if err == nil || err == unix.ENOENT {
				break
			}
			if time.Now().After(deadline) {
				procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				return fmt.Errorf("rmdir %s: %v (procs %q)", dirs[i], err, procs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// v1Units lists the unit directories tend has made under the test's v1
// cgroup of ctrl.
func v1Units(t *testing.T, ctrl, rel string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctrl, rel))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// inV1 returns opts that start tend (as PID 1) inside the test's v1
// cgroups rel; with cgroup2 also in a delegated cgroup v2 of its own.
func inV1(t *testing.T, rel string, o opts, cgroup2 bool) opts {
	t.Helper()
	if cgroup2 {
		o = inCgroup(t, o)
	}
	o.pid1 = true
	next := o.argv0
	if next == nil {
		next = []string{tendBin}
	}
	o.argv0 = append([]string{testBin, "inv1", rel, "--"}, next...)
	return o
}

// roV1 returns opts whose tend sees every cgroup v1 hierarchy read-only
// (a read-only bind in its own mount namespace, as container runtimes
// mount cgroupfs by default).
func roV1(o opts) opts {
	o.pid1 = true
	next := o.argv0
	if next == nil {
		next = []string{tendBin}
	}
	o.argv0 = append([]string{testBin, "rov1", "--"}, next...)
	return o
}

// helperInV1 joins the v1 cgroup REL of each of v1Ctrls (writing "0":
// itself) and execs ARGV. args: REL -- ARGV...
func helperInV1(args []string) int {
	if len(args) < 3 || args[1] != "--" {
		return fail("inv1: want REL -- ARGV")
	}
	for _, c := range v1Ctrls {
		p := filepath.Join("/sys/fs/cgroup", c, args[0], "cgroup.procs")
		if err := os.WriteFile(p, []byte("0"), 0); err != nil {
			return fail("inv1: join %s: %v", p, err)
		}
	}
	err := unix.Exec(args[2], args[2:], os.Environ())
	return fail("inv1: exec %s: %v", args[2], err)
}

// helperROV1 (in pid1's private mount namespace) remounts every cgroup v1
// mount read-only, then execs ARGV. args: -- ARGV...
func helperROV1(args []string) int {
	if len(args) < 2 || args[0] != "--" {
		return fail("rov1: want -- ARGV")
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fail("rov1: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		for i, w := range f {
			if w == "-" && i+1 < len(f) && f[i+1] == "cgroup" {
				if err := unix.Mount("", f[4], "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
					return fail("rov1: remount %s read-only: %v", f[4], err)
				}
				n++
			}
		}
	}
	if n == 0 {
		return fail("rov1: no cgroup v1 mount to make read-only")
	}
	err = unix.Exec(args[1], args[1:], os.Environ())
	return fail("rov1: exec %s: %v", args[1], err)
}
