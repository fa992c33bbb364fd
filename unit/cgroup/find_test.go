//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLocate(t *testing.T) {
	const v1 = "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
	mi := func(root, point string) string {
		return "40 30 0:37 " + root + " " + point + " rw,nosuid shared:1 master:2 - cgroup2 cgroup2 rw,nsdelegate\n"
	}
	for _, c := range []struct {
		name, cg, mi string
		dir, err     string
	}{
		{"no 0:: line", "4:memory:/x\n", mi("/", "/sys/fs/cgroup"), "", `no cgroup2 entry ("0::")`},
		{"v1 only", "4:memory:/\n0::/\n", v1, "", "no cgroup2 filesystem mounted"},
		{"container", "0::/\n", v1 + mi("/", "/sys/fs/cgroup"), "/sys/fs/cgroup", ""},
		{"host path", "0::/system.slice/tend.service\n", mi("/", "/sys/fs/cgroup"), "/sys/fs/cgroup/system.slice/tend.service", ""},
		{"root not /", "0::/kubepods/pod1/c1\n", mi("/kubepods/pod1/c1", "/sys/fs/cgroup"), "/sys/fs/cgroup", ""},
		{"root above", "0::/a/b/c\n", mi("/a", "/mnt"), "/mnt/b/c", ""},
		{"deepest root wins", "0::/a/b\n", mi("/", "/sys/fs/cgroup/unified") + mi("/a", "/mnt"), "/mnt/b", ""},
		{"later mount on top", "0::/a\n", mi("/", "/m1") + mi("/", "/m2"), "/m2/a", ""},
		{"escaped point", "0::/\n", mi("/", `/mnt/with\040space`), "/mnt/with space", ""},
		{"other cgroup namespace", "0::/\n", mi("/../../other", "/sys/fs/cgroup"), "", "under no cgroup2 mount"},
		{"sibling subtree", "0::/a/b\n", mi("/a/bc", "/mnt"), "", "under no cgroup2 mount"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, dir, err := locate([]byte(c.cg), []byte(c.mi))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("locate() = %q, %v; want an error with %q", dir, err, c.err)
				}
				return
			}
			if err != nil || dir != c.dir {
				t.Errorf("locate() = %q, %v; want %q", dir, err, c.dir)
			}
		})
	}
}

// selfCgroup is the "0::" path of this process.
func selfCgroup(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := unifiedPath(data)
	if !ok {
		t.Fatalf("no 0:: line in %q", data)
	}
	return p
}

// TestFindHere: the tests run in the hierarchy's root cgroup (0::/); on the
// CI machines cgroup2 is mounted (hybrid: /sys/fs/cgroup/unified, and our
// own mount), so Find finds it and refuses the root.
func TestFindHere(t *testing.T) {
	needNS(t)
	if p := selfCgroup(t); p != "/" {
		t.Skipf("the tests run in cgroup %s, which Find would take over", p)
	}
	h, err := Find()
	if err == nil {
		t.Fatalf("Find() = %s, want an error: the root is not delegated", h.Dir())
	}
	if !strings.Contains(err.Error(), "is the root of the cgroup2 hierarchy, not a delegated subtree") {
		t.Errorf("Find(): %v; want the root refused", err)
	}
}

// helperFind runs Find in a mount namespace of its own after arranging
// what args[0] says; args[1] is a cgroup directory to join first, args[2]
// a directory for its mount points.
func helperFind(args []string) int {
	mode, join, tmp := args[0], args[1], args[2]
	if mode != "unmounted" {
		if err := writeFile(filepath.Join(join, "cgroup.procs"), fmt.Sprint(os.Getpid())); err != nil {
			fmt.Println("join:", err)
			return 1
		}
	}
	var err error
	switch mode {
	case "unmounted":
		err = unmountCgroup2("")
	case "bind":
		// A mount whose root is not "/": tend's own cgroup bound alone.
		var dir string
		if dir, err = os.MkdirTemp(tmp, "bind-"); err == nil {
			if err = unix.Mount(join, dir, "", unix.MS_BIND, ""); err == nil {
				err = unmountCgroup2(dir)
			}
		}
	case "readonly":
		var dir string
		if err = unmountCgroup2(""); err == nil {
			if dir, err = os.MkdirTemp(tmp, "ro-"); err == nil {
				err = unix.Mount("none", dir, "cgroup2", unix.MS_RDONLY, "")
			}
		}
	case "nobody":
		err = syscall.Setuid(65534) // every thread (Go 1.16)
	}
	if err != nil {
		fmt.Println("arrange:", err)
		return 1
	}
	h, err := Find()
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	data, _ := os.ReadFile("/proc/self/cgroup")
	self, _ := unifiedPath(data)
	g, err := h.New("unit")
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	fmt.Printf("dir=%s self=%s unit=%s controllers=%v\n", h.Dir(), self, g.Path(), h.Controllers())
	if err := g.Remove(); err != nil {
		fmt.Println("remove:", err)
		return 1
	}
	return 0
}

// unmountCgroup2 unmounts every cgroup2 mount but keep's.
func unmountCgroup2(keep string) error {
	for range 10 {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		ms := slices.DeleteFunc(cgroup2Mounts(data), func(m mount) bool { return m.point == keep })
		if len(ms) == 0 {
			return nil
		}
		for _, m := range slices.Backward(ms) {
			if err := unix.Unmount(m.point, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", m.point, err)
			}
		}
	}
	return fmt.Errorf("cgroup2 mounts remain")
}

func TestFindHelper(t *testing.T) {
	h := testHierarchy(t)
	base := newGroup(t, h, "tend") // stands for tend's own cgroup
	rel := base.rel
	for _, c := range []struct {
		mode, want string
	}{
		{"unmounted", "error: cgroup: no cgroup2 filesystem mounted (none in /proc/self/mountinfo)"},
		{"readonly", "is read-only (cgroup2 mounted ro"},
		{"nobody", "is not writable by uid 65534: the cgroup is not delegated to tend"},
		{"delegated", " self=" + rel + "/tend unit=/"},
		{"bind", " self=" + rel + "/tend unit=/"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			tmp := t.TempDir()
			cmd := helperCmd("find", c.mode, base.Path(), tmp)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("find helper: %v\n%s", err, out)
			}
			got := strings.TrimSpace(string(out))
			if !strings.Contains(got, c.want) {
				t.Errorf("Find() %s: %q, want %q in it", c.mode, got, c.want)
			}
			if c.mode == "bind" && !strings.HasPrefix(got, "dir="+tmp+"/bind-") {
				t.Errorf("Find() through a bind mount: %q, want dir= the bind mount", got)
			}
			if c.mode == "delegated" && !strings.HasPrefix(got, "dir="+base.Path()+" ") {
				t.Errorf("Find(): %q, want dir=%s", got, base.Path())
			}
			t.Logf("%s: %s", c.mode, got)
		})
	}
	// The helpers that joined left only their (now empty) leaf behind.
	if err := base.Remove(); err != nil {
		t.Errorf("Remove() after the helpers: %v", err)
	}
}
