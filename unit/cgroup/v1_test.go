//go:build linux

package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperAlloc waits for a byte on fd 3 (sent once it is in the memory
// cgroup), then allocates and touches 200 MiB.
func helperAlloc([]string) int {
	var b [1]byte
	if _, err := os.NewFile(3, "go").Read(b[:]); err != nil {
		return 3
	}
	const size, page = 200 << 20, 4096
	mem := make([]byte, size)
	for i := 0; i < size; i += page {
		mem[i] = 1
	}
	os.Stdout.WriteString("survived\n")
	return 0
}

func TestV1OOMKills(t *testing.T) {
	needNS(t)
	if !exists(filepath.Join(v1Memory, "memory.oom_control")) {
		t.Fatalf("no cgroup v1 memory controller at %s", v1Memory)
	}
	dir := filepath.Join(v1Memory, testTop+"-oom")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for unix.Rmdir(dir) == unix.EBUSY && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if exists(dir) {
			t.Errorf("could not remove %s", dir)
		}
	})
	if err := writeFile(filepath.Join(dir, "memory.limit_in_bytes"), strconv.Itoa(32<<20)); err != nil {
		t.Fatal(err)
	}
	if n, err := V1OOMKills(dir); err != nil || n != 0 {
		t.Fatalf("V1OOMKills() before = %d, %v; want 0", n, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := helperCmd("alloc")
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("move the helper into %s: %v", dir, err)
	}
	w.Write([]byte{1})
	_ = waitCmd(t, cmd)
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("allocating 200 MiB under a 32 MiB limit ended with %v, want SIGKILL", cmd.ProcessState)
	}
	if n, err := V1OOMKills(dir); err != nil || n < 1 {
		t.Errorf("V1OOMKills() after = %d, %v; want >= 1", n, err)
	}
}

func TestV1OOMKillsErrors(t *testing.T) {
	tmp := t.TempDir()
	if _, err := V1OOMKills(filepath.Join(tmp, "none")); err == nil || !strings.Contains(err.Error(), "memory.oom_control") {
		t.Errorf("V1OOMKills(missing dir): %v, want an error naming memory.oom_control", err)
	}
	old := "oom_kill_disable 0\nunder_oom 0\n" // before Linux 4.13
	if err := os.WriteFile(filepath.Join(tmp, "memory.oom_control"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := V1OOMKills(tmp); err == nil || !strings.Contains(err.Error(), "no oom_kill counter") {
		t.Errorf("V1OOMKills(no counter): %v, want no oom_kill counter", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "memory.oom_control"), []byte(old+"oom_kill 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := V1OOMKills(tmp); err != nil || n != 7 {
		t.Errorf("V1OOMKills() = %d, %v; want 7", n, err)
	}
}

// TestV1Sub: the units' parent in a v1 pids hierarchy caps the units below
// it together and is removed once empty.
func TestV1Sub(t *testing.T) {
	needNS(t)
	const mnt = "/sys/fs/cgroup/pids"
	dir := filepath.Join(mnt, testTop+"-sub")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no writable v1 pids hierarchy: %v", err)
	}
	t.Cleanup(func() { _ = removeTree(dir) })
	v := &V1{ctrls: []string{"pids"}, mount: mnt, dir: dir}
	sub, err := v.Sub("units")
	if err != nil {
		t.Fatal(err)
	}
	if !sub.SameHierarchy(v) || sub.SameHierarchy(&V1{mount: v1Memory}) || sub.SameHierarchy(nil) {
		t.Errorf("SameHierarchy: wrong")
	}
	if err := sub.SetPidsMax(40); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "units", "pids.max")); strings.TrimSpace(string(data)) != "40" {
		t.Errorf("pids.max %q, want 40", data)
	}
	g, err := sub.New("u")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(g.Path()) != sub.Dir() {
		t.Errorf("unit %s is not below %s", g.Path(), sub.Dir())
	}
	if err := sub.RemoveDir(); err == nil {
		t.Errorf("RemoveDir with a unit in it: no error")
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := sub.RemoveDir(); err != nil || exists(sub.Dir()) {
		t.Errorf("RemoveDir: %v; still there: %v", err, exists(sub.Dir()))
	}
}
