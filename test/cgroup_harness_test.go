//go:build linux

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/internal/seccomptest"
)

// Running tend in a delegated cgroup v2 of its own, as a container with a
// writable cgroup namespace gives it. The cgroup2 hierarchy is the host's
// (one per machine, whatever is mounted), so each test gets its own
// directory in it, named by the test, and removes it afterwards; the
// mounts happen only in private mount namespaces.

func init() {
	helpers["incgroup"] = helperInCgroup
	helpers["cgsweep"] = helperCgSweep
	helpers["noclone3"] = helperNoClone3
}

// noClone3 makes o's tend start under a seccomp filter that answers clone3
// with ENOSYS, as Docker's and Podman's default profiles do.
func noClone3(o opts) opts {
	n := len(o.argv0)
	o.argv0 = append(append(append([]string{}, o.argv0[:n-1]...), testBin, "noclone3", "--"), o.argv0[n-1])
	return o
}

// helperNoClone3 installs the filter (inherited across exec) and execs
// ARGV. args: -- ARGV...
func helperNoClone3(args []string) int {
	if len(args) < 2 || args[0] != "--" {
		return fail("noclone3: want -- ARGV")
	}
	if err := seccomptest.DenyClone3(); err != nil {
		return fail("noclone3: %v", err)
	}
	err := unix.Exec(args[1], args[1:], os.Environ())
	return fail("noclone3: exec %s: %v", args[1], err)
}

var cgSeq atomic.Int64

// inCgroup returns opts that run tend (as PID 1) inside a fresh cgroup v2
// directory, and removes that directory, with anything left in it, after
// the test.
func inCgroup(t *testing.T, o opts) opts {
	t.Helper()
	name := fmt.Sprintf("tend-bbtest-%d-%d", os.Getpid(), cgSeq.Add(1))
	o.pid1 = true
	o.argv0 = []string{testBin, "incgroup", name, t.TempDir(), "--", tendBin}
	t.Cleanup(func() {
		cmd := exec.Command(testBin, "cgsweep", name)
		cmd.Env = childEnv(nil)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("removing cgroup %s: %v\n%s", name, err, out)
		}
	})
	return o
}

// mountCgroup2 mounts the cgroup2 hierarchy at dir (a new temporary
// directory if ""), in the caller's mount namespace, which must be a
// private one.
func mountCgroup2(dir string) (string, error) {
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("make / private: %w", err)
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "tend-cg2-"); err != nil {
			return "", err
		}
	}
	if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("mount cgroup2 at %s: %w", dir, err)
	}
	return dir, nil
}

// helperInCgroup (in pid1's private mount namespace) mounts cgroup2,
// makes NAME, moves itself into it and execs ARGV: tend, whose
// /proc/self/cgroup then names a cgroup it may write.
// args: NAME MOUNTPOINT -- ARGV...
func helperInCgroup(args []string) int {
	if len(args) < 4 || args[2] != "--" {
		return fail("incgroup: want NAME MOUNTPOINT -- ARGV")
	}
	mnt, err := mountCgroup2(args[1])
	if err != nil {
		return fail("incgroup: %v", err)
	}
	dir := filepath.Join(mnt, args[0])
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fail("incgroup: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fail("incgroup: join %s: %v", dir, err)
	}
	err = unix.Exec(args[3], args[3:], os.Environ())
	return fail("incgroup: exec %s: %v", args[3], err)
}

// helperCgSweep (in a private mount namespace) kills what is left in the
// cgroup NAME and removes it, deepest first.
func helperCgSweep(args []string) int {
	mnt, err := mountCgroup2("")
	if err != nil {
		return fail("cgsweep: %v", err)
	}
	defer os.Remove(mnt)
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	root := filepath.Join(mnt, args[0])
	if _, err := os.Stat(root); os.IsNotExist(err) {
		return 0
	}
	_ = os.WriteFile(filepath.Join(root, "cgroup.kill"), []byte("1"), 0)
	var dirs []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
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
				return fail("cgsweep: rmdir %s: %v", strings.TrimPrefix(dirs[i], mnt), err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return 0
}
