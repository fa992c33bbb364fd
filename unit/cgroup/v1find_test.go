//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFindV1In(t *testing.T) {
	v1 := func(id, root, point, opts string) string {
		return id + " 30 0:31 " + root + " " + point + " rw,relatime shared:9 - cgroup cgroup " + opts + "\n"
	}
	const v2 = "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	host := v1("34", "/", "/sys/fs/cgroup/memory", "rw,memory") + v1("38", "/", "/sys/fs/cgroup/pids", "rw,pids") + v2
	for _, c := range []struct {
		name, ctrl, cg, mi string
		dir, err           string
		ctrls              string
	}{
		{"host memory", "memory", "4:memory:/a/b\n8:pids:/\n0::/\n", host, "/sys/fs/cgroup/memory/a/b", "", "memory"},
		{"host pids", "pids", "4:memory:/a/b\n8:pids:/\n0::/\n", host, "/sys/fs/cgroup/pids", "", "pids"},
		{"container root", "memory", "4:memory:/docker/c1\n", v1("34", "/docker/c1", "/sys/fs/cgroup/memory", "ro,memory"), "/sys/fs/cgroup/memory", "", "memory"},
		{"co-mounted", "cpuacct", "2:cpu,cpuacct:/x\n", v1("31", "/", "/sys/fs/cgroup/cpu,cpuacct", "rw,cpu,cpuacct"), "/sys/fs/cgroup/cpu,cpuacct/x", "", "cpu cpuacct"},
		{"named hierarchy is no controller", "memory", "9:name=systemd:/\n4:memory:/\n", v1("39", "/", "/sys/fs/cgroup/systemd", "rw,name=systemd") + v1("34", "/", "/m", "rw,memory"), "/m", "", "memory"},
		{"deepest root wins", "memory", "4:memory:/a/b\n", v1("34", "/", "/m1", "rw,memory") + v1("35", "/a", "/m2", "rw,memory"), "/m2/b", "", "memory"},
		{"escaped point", "pids", "8:pids:/\n", v1("38", "/", `/mnt/with\040space`, "rw,pids"), "/mnt/with space", "", "pids"},
		{"pure v2", "memory", "0::/\n", v2, "", `no "N:memory:/path" line`, ""},
		{"line but no mount", "memory", "4:memory:/\n", v2, "", "no cgroup v1 filesystem with memory is mounted", ""},
		{"other namespace", "memory", "4:memory:/\n", v1("34", "/../x", "/m", "rw,memory"), "", "tend's cgroup / is under no mount", ""},
		{"sibling subtree", "memory", "4:memory:/a/b\n", v1("34", "/a/bc", "/m", "rw,memory"), "", "under no mount", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := findV1In([]byte(c.cg), []byte(c.mi), c.ctrl)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("findV1In() = %v, %v; want an error with %q", v, err, c.err)
				}
				return
			}
			if err != nil || v.Dir() != c.dir || strings.Join(v.Controllers(), " ") != c.ctrls {
				t.Errorf("findV1In() = %+v, %v; want dir %q, controllers %q", v, err, c.dir, c.ctrls)
			}
		})
	}
}

// helperFindV1 joins the v1 cgroup args[1] (its pid written: the test's
// arranging, not tend's way), arranges args[0], then runs FindV1(args[2]),
// makes a unit with limits and removes it, printing what it found.
func helperFindV1(args []string) int {
	mode, join, ctrl := args[0], args[1], args[2]
	if err := writeFile(filepath.Join(join, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		fmt.Println("join:", err)
		return 1
	}
	var err error
	switch mode {
	case "readonly":
		// A read-only bind of the hierarchy, in this mount namespace only.
		if err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err == nil {
			err = unix.Mount("", "/sys/fs/cgroup/"+ctrl, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
		}
	case "nobody":
		err = syscall.Setuid(65534)
	}
	if err != nil {
		fmt.Println("arrange:", err)
		return 1
	}
	v, err := FindV1(ctrl)
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	g, err := v.New("job-j.1")
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	if ctrl == "memory" {
		err = g.SetMemoryLimit(32 << 20)
	} else {
		err = g.SetPidsMax(20)
	}
	data, _ := os.ReadFile(filepath.Join(g.Path(), map[string]string{"memory": "memory.limit_in_bytes", "pids": "pids.max"}[ctrl]))
	fmt.Printf("dir=%s unit=%s set=%v limit=%s\n", v.Dir(), g.Path(), err, strings.TrimSpace(string(data)))
	if err := g.Remove(); err != nil || exists(g.Path()) {
		fmt.Println("remove:", err)
		return 1
	}
	return 0
}

// v1TestDir makes a directory of its own in the v1 hierarchy of ctrl,
// removed after the test (every process of it gone by then).
func v1TestDir(t *testing.T, ctrl string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", ctrl, testTop+"-"+strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("no v1 %s hierarchy to test with: %v", ctrl, err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := unix.Rmdir(dir)
			if err == nil || err == unix.ENOENT {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("remove %s: %v", dir, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return dir
}

func TestFindV1Helper(t *testing.T) {
	needNS(t)
	for _, ctrl := range []string{"memory", "pids"} {
		for _, c := range []struct {
			mode, want string
		}{
			{"writable", "set=<nil> limit="},
			{"readonly", "error: cgroup v1 " + ctrl + ": /sys/fs/cgroup/" + ctrl + "/"},
			{"nobody", "error: cgroup v1 " + ctrl + ": "},
		} {
			t.Run(ctrl+"/"+c.mode, func(t *testing.T) {
				dir := v1TestDir(t, ctrl)
				cmd := helperCmd("findv1", c.mode, dir, ctrl)
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("findv1 helper: %v\n%s", err, out)
				}
				got := strings.TrimSpace(string(out))
				t.Logf("%s", got)
				if !strings.Contains(got, c.want) {
					t.Fatalf("FindV1(%s) %s: %q, want %q in it", ctrl, c.mode, got, c.want)
				}
				switch c.mode {
				case "writable":
					limit := map[string]string{"memory": "33554432", "pids": "20"}[ctrl]
					if want := "dir=" + dir + " unit=" + dir + "/job-j_1-1 set=<nil> limit=" + limit; got != want {
						t.Errorf("FindV1(%s): %q, want %q", ctrl, got, want)
					}
				case "readonly":
					if !strings.HasSuffix(got, "is read-only (cgroupfs mounted ro, as container runtimes do by default)") {
						t.Errorf("FindV1(%s) read-only: %q, want the read-only reason", ctrl, got)
					}
				case "nobody":
					if !strings.HasSuffix(got, "is not writable by uid 65534") {
						t.Errorf("FindV1(%s) as nobody: %q, want not writable by 65534", ctrl, got)
					}
				}
			})
		}
	}
}

// TestV1GroupRemoveLeavesBusy: Remove never waits: a directory with a
// process in it stays, and the error counts its processes.
func TestV1GroupRemoveLeavesBusy(t *testing.T) {
	needNS(t)
	dir := v1TestDir(t, "pids")
	v := &V1{ctrls: []string{"pids"}, dir: dir}
	g, err := v.New("svc")
	if err != nil {
		t.Fatal(err)
	}
	cmd := helperCmd("alloc") // waits for a byte on fd 3: sleeps until killed
	r, w, _ := os.Pipe()
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	if err := writeFile(filepath.Join(g.Path(), "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = g.Remove()
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "1 processes still in it") || !exists(g.Path()) {
		t.Errorf("Remove() of a busy unit: %v (dir there: %v); want an error counting 1 process and the dir left", err, exists(g.Path()))
	}
	if took > 100*time.Millisecond {
		t.Errorf("Remove() of a busy unit took %v: it must not wait", took)
	}
	cmd.Process.Kill()
	_ = waitCmd(t, cmd)
	if err := g.Remove(); err != nil || exists(g.Path()) {
		t.Errorf("Remove() once empty: %v", err)
	}
}
