//go:build linux

package helper_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tendinit/tend/unit/helper"
)

func startExec(t *testing.T, e helper.Exec, extra ...*os.File) *run {
	t.Helper()
	argv, env, err := e.Args()
	if err != nil {
		t.Fatalf("Args: %v", err)
	}
	return start(t, argv, env, nil, extra)
}

func TestExecDropsCredentials(t *testing.T) {
	needRoot(t)
	const script = `grep -E '^(Uid|Gid|Groups):' /proc/self/status; grep "Max processes" /proc/self/limits; echo "env=$TEND_UNIT_HELPER"; [ -e /proc/$$/fd/3 ] && echo fd3=open || echo fd3=closed`
	for _, c := range []struct {
		name   string
		cred   *syscall.Credential
		status []string // the Uid, Gid and Groups lines, fields after the key
	}{
		{"no groups", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
			[]string{"65534 65534 65534 65534", "65534 65534 65534 65534", ""}},
		{"groups", &syscall.Credential{Uid: 65534, Gid: 65533, Groups: []uint32{4, 100}},
			[]string{"65534 65534 65534 65534", "65533 65533 65533 65533", "4 100"}},
		{"stay root", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := startExec(t, helper.Exec{Path: "/bin/sh", Argv: []string{"sh", "-c", script}, Cred: c.cred, NProc: 50,
				Env: []string{"PATH=/usr/bin:/bin"}})
			r.eof() // exec'd: the report socket closed with no message
			var lines []string
			for range 6 {
				lines = append(lines, r.line())
			}
			for i, want := range c.status {
				if got := strings.Join(strings.Fields(lines[i])[1:], " "); got != want {
					t.Errorf("%s; want %q", lines[i], want)
				}
			}
			if c.cred == nil && !strings.HasPrefix(lines[0], "Uid:\t0\t") {
				t.Errorf("%s; want root", lines[0])
			}
			if f := strings.Fields(lines[3]); len(f) < 4 || f[2] != "50" || f[3] != "50" {
				t.Errorf("%s; want RLIMIT_NPROC 50 50", lines[3])
			}
			if lines[4] != "env=" {
				t.Errorf("%s: the marker reached the command", lines[4])
			}
			if lines[5] != "fd3=closed" {
				t.Errorf("%s: the report socket reached the command", lines[5])
			}
			if ws := r.wait(); ws.ExitStatus() != 0 {
				t.Errorf("command %s; want exit 0", desc(ws))
			}
		})
	}
}

func TestExecFailures(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	noExec := filepath.Join(dir, "noexec")
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644)
	os.WriteFile(garbage, []byte("\x7fELF\x00not really"), 0o755)
	notCgroup, err := os.Open(dir) // a directory without cgroup.procs
	if err != nil {
		t.Fatal(err)
	}
	defer notCgroup.Close()
	for _, c := range []struct {
		name  string
		e     helper.Exec
		extra []*os.File
		errno syscall.Errno
		what  string
		code  int
	}{
		{"ENOENT", helper.Exec{Path: dir + "/missing"}, nil, syscall.ENOENT, dir + "/missing", 127},
		{"EACCES", helper.Exec{Path: noExec}, nil, syscall.EACCES, noExec, 126},
		{"ENOEXEC", helper.Exec{Path: garbage}, nil, syscall.ENOEXEC, garbage, 126},
		{"cgroup", helper.Exec{Path: "/bin/true", Cgroup: true}, []*os.File{notCgroup}, syscall.ENOENT, "cgroup.procs", 127},
		{"EACCES as nobody", helper.Exec{Path: "/root/../root", Cred: &syscall.Credential{Uid: 65534, Gid: 65534}},
			nil, syscall.EACCES, "/root/../root", 126},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.e.Argv = []string{"x"}
			r := startExec(t, c.e, c.extra...)
			m := r.expect(helper.Failed)
			if m.Errno != c.errno || m.Path != c.what {
				t.Errorf("failed %v %q; want %v %q", m.Errno, m.Path, c.errno, c.what)
			}
			r.eof()
			if ws := r.wait(); ws.ExitStatus() != c.code {
				t.Errorf("helper %s; want exit %d", desc(ws), c.code)
			}
		})
	}
}
