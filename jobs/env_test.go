//go:build linux

package jobs

import (
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tendinit/tend/api"
)

const script = "/usr/bin/id -u; /usr/bin/id -G; /usr/bin/env"

// runOutput runs script as a job and returns its stdout, read until EOF:
// the EOF itself shows that tend kept no copy of the pipe.
func runOutput(t *testing.T, m *Manager, req SubmitRequest) (uid string, groups, env []string) {
	t.Helper()
	r, w := pipe(t)
	if req.Argv == nil {
		req.JobRequest.Argv = []string{"/bin/sh", "-c", script}
	}
	req.Stdio = []int{1}
	req.Files = []*os.File{w}
	j := submit(t, m, req)
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitJob(t, m, root, j.ID); intp(got.ExitCode) != "0" {
		t.Fatalf("job exited %s %s: %q", intp(got.ExitCode), strp(got.Signal), out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		t.Fatalf("output %q", out)
	}
	return lines[0], strings.Fields(lines[1]), lines[2:]
}

// TestNonRootGetsNoTendEnv: a non-root caller's job runs with its uid and
// groups for real, and sees none of tend's environment.
func TestNonRootGetsNoTendEnv(t *testing.T) {
	m, _ := newManager(t, Config{Env: []string{"SECRET=hunter2", "PATH=/usr/bin:/bin"}, Socket: "/run/tend.sock"})
	nobody := Caller{UID: 65534, GID: 65534, Groups: []int{4242}}
	uid, groups, env := runOutput(t, m, SubmitRequest{Caller: nobody})
	if uid != "65534" {
		t.Errorf("job uid %s, want 65534", uid)
	}
	slices.Sort(groups)
	if !slices.Equal(slices.Compact(groups), []string{"4242", "65534"}) {
		t.Errorf("job groups %v, want 4242 65534 only", groups)
	}
	for _, want := range []string{"PATH=" + DefaultPath, "HOME=/nonexistent", "TEND_SOCKET=/run/tend.sock"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
	for _, kv := range env {
		if strings.Contains(kv, "hunter2") || strings.HasPrefix(kv, "SECRET=") {
			t.Errorf("non-root job sees tend's %s", kv)
		}
	}
}

func TestEnvChoices(t *testing.T) {
	m, _ := newManager(t, Config{Env: []string{"SECRET=hunter2", "HOME=/root"}, Socket: "/run/tend.sock"})
	for _, tc := range []struct {
		name    string
		req     SubmitRequest
		uid     string
		want    []string
		notWant []string
	}{
		{"root gets tend's env", SubmitRequest{}, "0",
			[]string{"SECRET=hunter2", "HOME=/root", "TEND_SOCKET=/run/tend.sock"}, nil},
		{"request env wins, socket replaced",
			SubmitRequest{JobRequest: api.JobRequest{Env: []string{"FOO=1", "TEND_SOCKET=/elsewhere"}},
				Caller: Caller{UID: 1000, GID: 1000}},
			"1000", []string{"FOO=1", "TEND_SOCKET=/run/tend.sock"}, []string{"TEND_SOCKET=/elsewhere", "SECRET=hunter2"}},
		{"root names a user", SubmitRequest{JobRequest: api.JobRequest{User: "nobody"}}, "65534",
			[]string{"SECRET=hunter2", "HOME=/nonexistent"}, []string{"HOME=/root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, _, env := runOutput(t, m, tc.req)
			if uid != tc.uid {
				t.Errorf("uid %s, want %s", uid, tc.uid)
			}
			for _, kv := range tc.want {
				if !slices.Contains(env, kv) {
					t.Errorf("env lacks %s: %q", kv, env)
				}
			}
			for _, kv := range tc.notWant {
				if slices.Contains(env, kv) {
					t.Errorf("env has %s", kv)
				}
			}
		})
	}
}

// TestFilesClosedAtStart: tend closes its copy of a passed fd as soon as
// the job has started, not when it exits.
func TestFilesClosedAtStart(t *testing.T) {
	m, _ := newManager(t, Config{})
	before := fdCount(t)
	r, w := pipe(t)
	req := sh("exec sleep 30")
	req.Stdio = []int{2}
	j := submit(t, m, SubmitRequest{JobRequest: req, Files: []*os.File{w}})
	if got := fdCount(t); got != before+1 {
		t.Errorf("%d fds open with the job running, want %d (only the test's reader)", got, before+1)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write to the passed file succeeded after Submit: tend did not close it")
	}
	if err := m.Signal(root, j.ID, api.SignalRequest{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
