//go:build linux

// Package workload holds the fake agent workload of docs/WORKLOAD.md (a
// Python gateway and workers, and the harness workload/run) and its CI
// set: the controls (no init, nothing reaped: zombies pile up; hermes-agent's
// own dispatcher under tend: exits booked as crashes), and tend with workers
// started through the API, through the HERMES_BIN shim or with tend.Popen
// (hermes with the one-line change), where nothing may pile up, leak, be
// lost or be misreported.
package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// result is one line of `workload/run --json`.
type result struct {
	Init, Mode      string
	Workers         int      `json:"workers"`
	ZombiesMax      int      `json:"zombies_max"`
	ZombiesFinal    int      `json:"zombies_final"`
	Leaked          int      `json:"leaked"`
	LeakedNames     []string `json:"leaked_names"`
	AssertsFailed   int      `json:"asserts_failed"`
	Asserts         int      `json:"asserts"`
	Lost            int      `json:"lost"`
	Misreported     int      `json:"misreported"`
	MisreportedEx   []string `json:"misreported_examples"` // "TOKEN: got X, was Y"
	ClassifiedRight int      `json:"classified_right"`
	ClassifiedOf    int      `json:"classified_of"`
	StopTime        float64  `json:"stop_time"`
	StopKilled      bool     `json:"stop_killed"`
	SpawnErrors     int      `json:"spawn_errors"`
	GatewayFailures []string `json:"gateway_failures"`
	Error           string   `json:"error"`
}

func inCI() bool { v := os.Getenv("CI"); return v != "" && v != "false" && v != "0" }

func TestWorkload(t *testing.T) {
	if !inCI() && (os.Geteuid() != 0 || os.Getenv("TEND_WORKLOAD_SKIP") == "1") {
		t.Skip("needs root (unshare --pid); TEND_WORKLOAD_SKIP=1 skips")
	}
	for _, tool := range []string{"python3", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found", tool)
		}
	}
	tend := filepath.Join(t.TempDir(), "tend")
	build := exec.Command("go", "build", "-o", tend, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build tend: %v\n%s", err, out)
	}
	cases := []struct {
		init, mode string
		check      func(t *testing.T, r result)
	}{
		{"none", "none", func(t *testing.T, r result) {
			// The control: workers started with setsid and never waited for.
			if r.ZombiesMax == 0 {
				t.Errorf("no zombies without an init and without reaping: the control shows nothing: %+v", r)
			}
		}},
		{"tend", "api", zeroOfEverything},
		{"tend", "shim", zeroOfEverything},
		{"tend", "hermes", func(t *testing.T, r result) {
			// The control: dropped Popen handles are reaped by CPython's
			// subprocess._cleanup, their statuses lost, the exits booked
			// as crashes, whatever init runs.
			if r.ClassifiedOf == 0 || r.ClassifiedRight >= r.ClassifiedOf {
				t.Errorf("hermes classified %d of %d exits right: the control shows nothing: %+v",
					r.ClassifiedRight, r.ClassifiedOf, r)
			}
		}},
		{"tend", "popen", func(t *testing.T, r result) {
			zeroOfEverything(t, r)
			if r.ClassifiedOf == 0 || r.ClassifiedRight != r.ClassifiedOf {
				t.Errorf("tend.Popen: %d of %d exits classified right, want all", r.ClassifiedRight, r.ClassifiedOf)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.init+"/"+tc.mode, func(t *testing.T) {
			r := runWorkload(t, tend, tc.init, tc.mode)
			t.Logf("%+v", r)
			if r.Error != "" || r.Workers == 0 {
				t.Fatalf("the workload did not run: %+v", r)
			}
			tc.check(t, r)
		})
	}
}

func zeroOfEverything(t *testing.T, r result) {
	t.Helper()
	for _, c := range []struct {
		what string
		n    int
	}{
		{"zombies (max)", r.ZombiesMax}, {"leaked processes", r.Leaked}, {"failed child-status asserts", r.AssertsFailed},
		{"workers lost", r.Lost}, {"workers misreported", r.Misreported}, {"spawn errors", r.SpawnErrors},
	} {
		if c.n != 0 {
			t.Errorf("%s: %d, want 0 (%v %v %v)", c.what, c.n, r.LeakedNames, r.GatewayFailures, r.MisreportedEx)
		}
	}
	if r.Asserts == 0 {
		t.Errorf("the gateway checked none of its own children")
	}
	if r.StopKilled {
		t.Errorf("the stop needed SIGKILL after %.1fs", r.StopTime)
	}
}

func runWorkload(t *testing.T, tend, init, mode string) result {
	t.Helper()
	const duration = 20
	ctx, cancel := context.WithTimeout(context.Background(), (duration+60)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "run", "--init", init, "--mode", mode, "--tend", tend,
		"--duration", fmt.Sprint(duration), "--pipe-restart", "6", "--exit7-every", "3", "--json")
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("workload/run --init %s --mode %s: %v\n%s%s", init, mode, err, out, stderr.String())
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("workload/run output %q: %v", out, err)
	}
	return r
}
