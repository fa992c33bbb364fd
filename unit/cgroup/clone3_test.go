//go:build linux

package cgroup

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// auditArch is the seccomp_data.arch of this build's syscalls.
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}

// denyClone3 installs, on every thread (TSYNC), the filter of Docker's and
// Podman's default profiles as far as clone3 goes: ENOSYS for clone3, any
// other syscall allowed.
func denyClone3() error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no audit arch for %s", runtime.GOARCH)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// seccomp_data: int nr at offset 0, u32 arch at offset 4.
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: arch},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_CLONE3},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	// With TSYNC a positive return is the tid of a thread that could not
	// be synchronised.
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 || r != 0 {
		return fmt.Errorf("seccomp: %d %w", r, errno)
	}
	return nil
}

// helperSeccomp denies clone3, then reports the probe (run on a goroutine
// of its own, so on whichever thread) and what a start with UseCgroupFD
// (into the cgroup dir args[0]) makes of it.
func helperSeccomp(args []string) int {
	if err := denyClone3(); err != nil {
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
