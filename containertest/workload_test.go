//go:build linux

package containertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// workloadResult is one line of `workload/run --json`.
type workloadResult struct {
	Where           string   `json:"where"`
	Init            string   `json:"init"`
	Mode            string   `json:"mode"`
	Workers         int      `json:"workers"`
	ZombiesMax      int      `json:"zombies_max"`
	ZombiesFinal    int      `json:"zombies_final"`
	Leaked          int      `json:"leaked"`
	LeakedNames     []string `json:"leaked_names"`
	KilledAtEnd     int      `json:"killed_at_end"`
	AssertsFailed   int      `json:"asserts_failed"`
	Asserts         int      `json:"asserts"`
	Lost            int      `json:"lost"`
	Misreported     int      `json:"misreported"`
	StopTime        float64  `json:"stop_time"`
	GatewayStop     float64  `json:"gateway_stop"`
	StopKilled      bool     `json:"stop_killed"`
	InitExit        int      `json:"init_exit"`
	GatewayExit     *int     `json:"gateway_exit"`
	SpawnErrors     int      `json:"spawn_errors"`
	GatewayFailures []string `json:"gateway_failures"`
	Error           string   `json:"error"`
}

const (
	wlDuration     = 15  // seconds before docker stop
	wlDrain        = 2.0 // the gateway's drain on SIGTERM
	wlCleanupGrace = 2.0 // tend's default --cleanup-grace
)

// TestAgentWorkloadContainer runs the fake agent workload (workload/,
// docs/WORKLOAD.md) in a container of the test daemon for a short while,
// then `docker stop -t 30`. Under tend with the workers started through the
// control API nothing piles up, leaks, is lost or misreported, the stop
// ends after the gateway's drain (plus tend's cleanup grace for what
// ignores SIGTERM), and the container's code is the gateway's. The
// control, with no init and no reaping, must show zombies.
func TestAgentWorkloadContainer(t *testing.T) {
	d := docker(t)
	bin := tend(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 not found")
	}
	t.Run("tend/api", func(t *testing.T) {
		r := runContainerWorkload(t, d, py, bin, "tend", "api")
		if r.Error != "" || r.Workers == 0 {
			t.Fatalf("the workload did not run: %+v", r)
		}
		for _, c := range []struct {
			what string
			n    int
		}{
			{"zombies (max)", r.ZombiesMax}, {"leaked processes", r.Leaked}, {"failed child-status asserts", r.AssertsFailed},
			{"workers lost", r.Lost}, {"workers misreported", r.Misreported}, {"spawn errors", r.SpawnErrors},
		} {
			if c.n != 0 {
				t.Errorf("%s: %d, want 0 (%v %v)", c.what, c.n, r.LeakedNames, r.GatewayFailures)
			}
		}
		if r.Asserts == 0 {
			t.Errorf("the gateway checked none of its own children")
		}
		// docker stop's SIGTERM reaches the gateway through tend: it drains
		// (tend never cuts it short) and exits 1 (its drain, plus up to a
		// tick of the fake before it notices), then tend SIGTERMs what is
		// left (the workers, its jobs, among them) and SIGKILLs what ignores
		// it after its cleanup grace.
		if r.StopKilled {
			t.Errorf("docker stop -t 30 needed Docker's SIGKILL (%.2fs)", r.StopTime)
		}
		if r.GatewayStop < wlDrain-0.1 || r.GatewayStop > wlDrain+1.5 {
			t.Errorf("the gateway exited %.2fs after docker stop, want its drain (%.0fs) plus up to a tick", r.GatewayStop, wlDrain)
		}
		if after := r.StopTime - r.GatewayStop; after > wlCleanupGrace+1 {
			t.Errorf("the container ended %.2fs after the gateway, want at most tend's cleanup grace (%.0fs) plus 1s", after, wlCleanupGrace)
		}
		// tend's rule: the main process's own code (the gateway's 1 after a drain).
		if r.GatewayExit == nil || r.InitExit != *r.GatewayExit || r.InitExit != 1 {
			t.Errorf("container exit %d, gateway exit %v: want both 1", r.InitExit, r.GatewayExit)
		}
	})
	t.Run("none/none (control)", func(t *testing.T) {
		r := runContainerWorkload(t, d, py, bin, "none", "none")
		if r.Error != "" || r.Workers == 0 {
			t.Fatalf("the workload did not run: %+v", r)
		}
		if r.ZombiesMax == 0 {
			t.Errorf("no zombies without an init and without reaping: the control shows nothing: %+v", r)
		}
		// The gateway is PID 1 with a SIGTERM handler: the stop ends with its drain.
		if r.StopKilled || r.InitExit != 1 {
			t.Errorf("stop %.2fs killed %v exit %d, want the gateway's 1 after its drain", r.StopTime, r.StopKilled, r.InitExit)
		}
	})
}

func runContainerWorkload(t *testing.T, d *daemon, py, bin, init, mode string) workloadResult {
	t.Helper()
	// The first run makes the base image by debootstrap (minutes); later
	// runs find it cached by tag.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join(repoRoot, "workload", "run"), "--where", "container",
		"--docker-host", "unix://"+d.sock, "--tend", bin, "--init", init, "--mode", mode,
		"--duration", fmt.Sprint(wlDuration), "--drain", fmt.Sprint(wlDrain), "--stop-timeout", "30",
		"--pipe-restart", "6", "--exit7-every", "3", "--json")
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("workload/run --where container --init %s --mode %s: %v\n%s%s", init, mode, err, out, stderr.String())
	}
	var r workloadResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("workload/run output %q: %v\n%s", out, err, stderr.String())
	}
	t.Logf("%s/%s in a container: workers %d, zombies max %d final %d, leaked %d, killed by tend %d, asserts failed %d/%d, lost %d, misreported %d, gateway gone %.2fs and container %.2fs after docker stop, exit %d",
		init, mode, r.Workers, r.ZombiesMax, r.ZombiesFinal, r.Leaked, r.KilledAtEnd, r.AssertsFailed, r.Asserts,
		r.Lost, r.Misreported, r.GatewayStop, r.StopTime, r.InitExit)
	return r
}
