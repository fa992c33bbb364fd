//go:build linux

package spawn

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// start prepares and starts s, as tend does with a pool and the reaper.
func start(s Spec) (int, error) {
	p, err := Prepare(s)
	if err != nil {
		return 0, err
	}
	defer p.Release()
	return p.Start(nil)
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "runme")
	noexec := filepath.Join(dir, "readme")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(noexec, []byte("text"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	tests := []struct {
		file, path, want string
		err              error
	}{
		{"runme", "/nonexistent:" + dir, exe, nil},
		{"readme", dir, "", unix.EACCES},
		{"missing", dir, "", unix.ENOENT},
		{"adir", dir, "", unix.ENOENT},
		{exe, "/nonexistent", exe, nil},                    // a slash: not searched, but checked
		{"./relative/x", dir, "", unix.ENOENT},             // relative to the working directory
		{filepath.Join(dir, "adir"), dir, "", unix.EACCES}, // execve of a directory
	}
	for _, tt := range tests {
		got, err := LookPath(tt.file, tt.path)
		if got != tt.want || !errors.Is(err, tt.err) && err != tt.err {
			t.Errorf("LookPath(%q, %q) = %q, %v; want %q, %v", tt.file, tt.path, got, err, tt.want, tt.err)
		}
	}
}

func TestExecErrorCodes(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code int
		name string
	}{
		{unix.ENOENT, 127, "ENOENT"}, {unix.ENOTDIR, 127, "ENOTDIR"},
		{unix.EACCES, 126, "EACCES"}, {unix.ENOEXEC, 126, "ENOEXEC"},
	} {
		e := &ExecError{Path: "/x", Err: tt.err}
		if e.Code() != tt.code || !strings.Contains(e.Error(), "/x") || !strings.Contains(e.Error(), tt.name) {
			t.Errorf("ExecError{%v}: code %d, %q; want %d naming /x and %s", tt.err, e.Code(), e.Error(), tt.code, tt.name)
		}
	}
}

// TestStartFailures: each failure before the command runs is an ExecError
// that names what is wrong, and nothing is left to reap.
func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "script")
	os.WriteFile(noexec, []byte("not a program"), 0o755) // no #!: ENOEXEC
	for _, tt := range []struct {
		spec Spec
		code int
		want string
	}{
		{Spec{Argv: []string{"/nonexistent/prog"}}, 127, "ENOENT"},
		{Spec{Argv: []string{noexec}}, 126, "ENOEXEC"},
		{Spec{Argv: []string{"true"}, Dir: filepath.Join(dir, "gone")}, 127, "working directory"},
		{Spec{Argv: nil}, 126, "empty command"},
	} {
		pid, err := start(tt.spec)
		var ee *ExecError
		if pid != 0 || !errors.As(err, &ee) || ee.Code() != tt.code || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(%v) = %d, %v; want an ExecError %d naming %q", tt.spec.Argv, pid, err, tt.code, tt.want)
		}
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
		t.Errorf("a child was left behind: wait4 = %d, %v", pid, err)
	}
}

// TestStartSetsid: a job's child leads its own session and group.
func TestStartSetsid(t *testing.T) {
	r, w, _ := os.Pipe()
	defer r.Close()
	pid, err := start(Spec{Argv: []string{"sh", "-c", "cut -d' ' -f5,6 /proc/$$/stat"}, Setsid: true,
		Files: []uintptr{0, w.Fd(), 2}})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, 0, nil)
	out := make([]byte, 64)
	n, _ := r.Read(out)
	if want := strconv.Itoa(pid) + " " + strconv.Itoa(pid); strings.TrimSpace(string(out[:n])) != want {
		t.Errorf("pgrp and session = %q, want %q", strings.TrimSpace(string(out[:n])), want)
	}
}

func TestLookupUser(t *testing.T) {
	id, err := LookupUser("65534:65534")
	if err != nil || id.Cred.Uid != 65534 || id.Cred.Gid != 65534 {
		t.Fatalf("LookupUser(65534:65534) = %+v, %v", id, err)
	}
	id, err = LookupUser("4242")
	if err != nil || id.Cred.Uid != 4242 || id.Cred.Gid != 4242 || len(id.Cred.Groups) != 0 {
		t.Errorf("LookupUser(4242) = %+v, %v; want uid=gid=4242 and no groups (never root's)", id, err)
	}
	root, err := LookupUser("root")
	if err != nil || root.Cred.Uid != 0 || root.Home == "" || !slices.Contains(root.Cred.Groups, 0) {
		t.Errorf("LookupUser(root) = %+v, %v", root, err)
	}
	if _, err := LookupUser("no-such-user-here"); err == nil {
		t.Error("LookupUser of a missing name succeeded")
	}
}

func TestWithInherited(t *testing.T) {
	saved := inherited
	defer func() { inherited = saved }()
	inherited = []int{3, 6}
	none := ^uintptr(0)
	got := withInherited([]uintptr{10, 11, 12})
	if want := []uintptr{10, 11, 12, 3, none, none, 6}; !slices.Equal(got, want) {
		t.Errorf("withInherited = %v, want %v", got, want)
	}
	inherited = nil
	if got := withInherited([]uintptr{0, 1, 2}); len(got) != 3 {
		t.Errorf("withInherited without inherited fds = %v", got)
	}
}

func TestSetEnv(t *testing.T) {
	env := []string{"A=1", "TEND_SOCKET=/old", "B=2", "TEND_SOCKET=/older", "TEND_SOCKETX=keep"}
	got := SetEnv(env, "TEND_SOCKET", "/new")
	want := []string{"A=1", "B=2", "TEND_SOCKETX=keep", "TEND_SOCKET=/new"}
	if !slices.Equal(got, want) {
		t.Errorf("SetEnv = %q, want %q", got, want)
	}
	if env[1] != "TEND_SOCKET=/old" || len(env) != 5 {
		t.Errorf("SetEnv changed its input: %q", env)
	}
}

// TestStartDirThroughFD: the child, already another uid when it changes
// directory, enters the directory through tend's O_PATH fd: the path is
// never looked up again, and a non-dumpable child may still use its own
// /proc/self/fd.
func TestStartDirThroughFD(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child as another uid")
	}
	dir, err := os.MkdirTemp("", "spawn-dir")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	r, w, _ := os.Pipe()
	defer r.Close()
	p, err := Prepare(Spec{Argv: []string{"/bin/sh", "-c", "pwd; id -u"}, Dir: dir,
		Cred: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}, Files: []uintptr{0, w.Fd(), 2}})
	if err != nil {
		t.Fatal(err)
	}
	// Renaming the directory after Prepare changes nothing: the fd is
	// the directory, whatever its name.
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(moved)
	pid, err := p.Start(nil)
	p.Release()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, 0, nil)
	out := make([]byte, 256)
	n, _ := r.Read(out)
	if got, want := strings.TrimSpace(string(out[:n])), moved+"\n65534"; got != want || ws.ExitStatus() != 0 {
		t.Errorf("child printed %q (status %v), want %q", got, ws, want)
	}
}
