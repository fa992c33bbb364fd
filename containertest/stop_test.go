//go:build linux

package containertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// drainScript traps TERM, drains 2 s, and exits 0; it logs each step.
const drainScript = `trap 'echo draining; sleep 2; echo drained; exit 0' TERM; echo ready; while :; do sleep 0.1; done`

// stopCase is one `docker stop` of a running container.
type stopCase struct {
	name     string
	args     []string // docker run arguments after the image options
	timeout  string   // docker stop -t
	min, max time.Duration
	code     string
	logs     []string // lines the container must have logged
}

// TestStop: tend as ENTRYPOINT forwards docker stop's SIGTERM, so the
// container ends at once (or after its own drain); a bare shell as PID 1
// ignores it, and docker kills it when the stop timeout runs out.
func TestStop(t *testing.T) {
	d := docker(t)
	img := d.image(t)
	cfgDir := t.TempDir()
	cfg := `[control]
socket = ""
[shutdown]
grace = "30s"
[[service]]
name = "drainer"
command = ["sh", "-c", "` + drainScript + `"]
critical = true
`
	if err := os.WriteFile(filepath.Join(cfgDir, "tend.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []stopCase{
		{name: "tend", args: []string{"--entrypoint", "/sbin/tend", img, "--", "sh", "-c", "echo ready; sleep 1000"},
			timeout: "10", max: 3 * time.Second, code: "143"},
		// The control: sh as PID 1 has no handler for TERM, so the kernel
		// drops it; docker waits the whole timeout, then SIGKILLs.
		{name: "bare sh (control)", args: []string{"--entrypoint", "/bin/sh", img, "-c", "echo ready; sleep 1000; :"},
			timeout: "3", min: 2500 * time.Millisecond, max: 8 * time.Second, code: "137"},
		{name: "tend drain", args: []string{"--entrypoint", "/sbin/tend", img, "--", "sh", "-c", drainScript},
			timeout: "30", min: 1800 * time.Millisecond, max: 7 * time.Second, code: "0", logs: []string{"draining", "drained"}},
		// Supervisor mode: the service drains within [shutdown] grace; with
		// no main command the code is 128+15.
		{name: "tend supervisor drain", args: []string{"-v", cfgDir + ":/cfg:ro", "--entrypoint", "/sbin/tend", img, "--config", "/cfg/tend.toml"},
			timeout: "30", min: 1800 * time.Millisecond, max: 7 * time.Second, code: "143", logs: []string{"draining", "drained"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testStop(t, d, tc) })
	}
}

func testStop(t *testing.T, d *daemon, tc stopCase) {
	name := d.start(t, tc.args...)
	waitFor(t, "ready in the logs", 30*time.Second, func() bool { return strings.Contains(d.logs(t, name), "ready") })
	start := time.Now()
	d.must(t, "stop", "-t", tc.timeout, name)
	took := time.Since(start)
	logs := d.logs(t, name)
	if took < tc.min || took > tc.max {
		t.Errorf("docker stop -t %s took %v, want %v..%v\nlogs: %s", tc.timeout, took.Round(time.Millisecond), tc.min, tc.max, logs)
	}
	if got := d.inspect(t, name, "{{.State.ExitCode}}"); got != tc.code {
		t.Errorf("exit code %s, want %s\nlogs: %s", got, tc.code, logs)
	}
	for _, want := range tc.logs {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestKillSignalsReachService: docker kill -s ABRT|HUP|USR1|QUIT reaches the
// service (it logs each) and never kills tend; the container keeps running.
// In init mode the command is the main service and gets every forwardable
// signal; in supervisor mode without a main service a signal reaches only
// the services that list it (DESIGN.md §3, signals), and one that nobody
// lists (USR2 here) is dropped without harm.
func TestKillSignalsReachService(t *testing.T) {
	d := docker(t)
	img := d.image(t)
	script := `for s in ABRT HUP USR1 QUIT; do trap "echo got $s" $s; done; echo ready; while :; do sleep 0.1; done`
	cfgDir := t.TempDir()
	cfg := "[control]\nsocket = \"\"\n[[service]]\nname = \"svc\"\ncommand = [\"sh\", \"-c\", '" + script + "']\ncritical = true\n" +
		"signals = { SIGABRT = \"SIGABRT\", SIGHUP = \"SIGHUP\", SIGUSR1 = \"SIGUSR1\", SIGQUIT = \"SIGQUIT\" }\n"
	if err := os.WriteFile(filepath.Join(cfgDir, "tend.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"init", []string{"--entrypoint", "/sbin/tend", img, "--", "sh", "-c", script}},
		{"supervisor", []string{"-v", cfgDir + ":/cfg:ro", "--entrypoint", "/sbin/tend", img, "--config", "/cfg/tend.toml"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			name := d.start(t, mode.args...)
			waitFor(t, "ready in the logs", 30*time.Second, func() bool { return strings.Contains(d.logs(t, name), "ready") })
			if mode.name == "supervisor" {
				// Listed by nobody: dropped, and nothing dies of it.
				d.must(t, "kill", "-s", "USR2", name)
				time.Sleep(300 * time.Millisecond)
				if got := d.inspect(t, name, "{{.State.Running}}"); got != "true" {
					t.Fatalf("after docker kill -s USR2 the container is not running (exit %s)\nlogs: %s",
						d.inspect(t, name, "{{.State.ExitCode}}"), d.logs(t, name))
				}
			}
			for _, sig := range []string{"ABRT", "HUP", "USR1", "QUIT"} {
				d.must(t, "kill", "-s", sig, name)
				waitFor(t, "got "+sig+" in the logs", 10*time.Second, func() bool {
					return strings.Contains(d.logs(t, name), "got "+sig)
				})
				if got := d.inspect(t, name, "{{.State.Running}}"); got != "true" {
					t.Fatalf("after docker kill -s %s the container is not running (exit %s)\nlogs: %s",
						sig, d.inspect(t, name, "{{.State.ExitCode}}"), d.logs(t, name))
				}
			}
		})
	}
}
