//go:build linux

package containertest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestInitPathVersion: with the daemon's --init-path at tend, `docker run
// --init` mounts tend as /sbin/docker-init, and `docker info` reads its
// commit from `docker-init --version`.
func TestInitPathVersion(t *testing.T) {
	d := docker(t)
	img := d.image(t)
	out := d.must(t, "run", "--rm", "--init", "--network", "none", img, "/sbin/docker-init", "--version")
	want := "tend version VERSION - git." + tendCommit
	if !strings.HasPrefix(out, "tend version ") || !strings.HasSuffix(strings.TrimSpace(out), " - git."+tendCommit) {
		t.Errorf("docker-init --version = %q, want the shape %q", out, want)
	}
	if got := strings.TrimSpace(d.must(t, "info", "--format", "{{.InitCommit.ID}}")); got != tendCommit {
		t.Errorf("docker info: init commit %q, want %q", got, tendCommit)
	}
	info := d.must(t, "info")
	if !strings.Contains(info, "init version: "+tendCommit) {
		t.Errorf("docker info does not show 'init version: %s':\n%s", tendCommit, info)
	}
}

// TestInitExitCodes: the main process's code passes through docker-init.
func TestInitExitCodes(t *testing.T) {
	d := docker(t)
	img := d.image(t)
	for _, tc := range []struct {
		name string
		argv []string
		want int
	}{
		{"exit 0", []string{"sh", "-c", "exit 0"}, 0},
		{"exit 3", []string{"sh", "-c", "exit 3"}, 3},
		{"exit 255", []string{"sh", "-c", "exit 255"}, 255},
		{"SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 143},
		{"SIGKILL", []string{"sh", "-c", "kill -KILL $$"}, 137},
		{"not found", []string{"/nonexistent"}, 127},
		{"not executable", []string{"/etc"}, 126},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := d.start(t, append([]string{"--init", img}, tc.argv...)...)
			waitFor(t, "the container to exit", time.Minute, func() bool {
				return d.inspect(t, name, "{{.State.Status}}") == "exited"
			})
			if got := d.inspect(t, name, "{{.State.ExitCode}}"); got != fmt.Sprint(tc.want) {
				t.Errorf("docker run --init %q: exit %s, want %d\nlogs: %s", tc.argv, got, tc.want, d.logs(t, name))
			}
		})
	}
}

// TestInitReapsOrphans: orphans of the main process are reaped by tend as
// docker-init (PID 1); none is left a zombie.
func TestInitReapsOrphans(t *testing.T) {
	d := docker(t)
	img := d.image(t)
	// Each (sleep &) is orphaned at once and exits 0.1 s later.
	script := `for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.1 &); done; sleep 1.5; ` +
		`echo "pid1=$(cat /proc/1/comm)"; cat /proc/[0-9]*/stat`
	out := d.must(t, "run", "--rm", "--init", "--network", "none", img, "sh", "-c", script)
	if !strings.Contains(out, "pid1=docker-init") {
		t.Errorf("PID 1 is not docker-init:\n%s", out)
	}
	if z := zombies(out); len(z) > 0 {
		t.Errorf("zombies left after the orphans exited: %v\n%s", z, out)
	}
}

// zombies returns the /proc/PID/stat lines in state Z.
func zombies(stats string) []string {
	var z []string
	for _, line := range strings.Split(stats, "\n") {
		i := strings.LastIndexByte(line, ')')
		if i < 0 || i+3 > len(line) {
			continue
		}
		if line[i+2] == 'Z' {
			z = append(z, line[:i+1])
		}
	}
	return z
}
