//go:build linux

package cgroup

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/internal/seccomptest"
)

// helperSeccomp denies clone3, then reports the probe (run on a goroutine
// of its own, so on whichever thread) and what a start with UseCgroupFD
// (into the cgroup dir args[0]) makes of it.
func helperSeccomp(args []string) int {
	if err := seccomptest.DenyClone3(); err != nil {
		fmt.Println("filter:", err)
		return 1
	}
	done := make(chan string)
	go func() { done <- fmt.Sprintf("usable=%v errno=%d", Clone3Usable(), probeClone3()) }()
	fmt.Println(<-done)
	fd, err := unix.Open(args[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	fmt.Printf("start: %v\n", cmd.Run())
	return 0
}

func TestClone3Usable(t *testing.T) {
	if errno := probeClone3(); errno != unix.EINVAL {
		t.Errorf("clone3(NULL, 0) = %v, want EINVAL", errno)
	}
	if !Clone3Usable() {
		t.Errorf("Clone3Usable() = false without a filter")
	}
	needNS(t)
	dir := testHierarchy(t).Dir() + "/" + leafName
	out, err := helperCmd("seccomp", dir).Output()
	if err != nil {
		t.Fatalf("seccomp helper: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := fmt.Sprintf("usable=false errno=%d", unix.ENOSYS); len(lines) < 1 || lines[0] != want {
		t.Errorf("under the ENOSYS filter: %q, want %q", out, want)
	}
	// Go does not fall back to clone: that is why the probe is needed.
	if len(lines) < 2 || !strings.Contains(lines[1], "function not implemented") {
		t.Errorf("start with UseCgroupFD under the filter: %q, want ENOSYS", out)
	}
}
