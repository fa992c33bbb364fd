//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tendinit/tend/api"
)

// jobRun is one way of running /bin/true n times with conc workers: per-job
// wall times in ms and the total.
type jobRun struct {
	lat   []float64
	total time.Duration
}

func (r jobRun) rate() float64 { return float64(len(r.lat)) / r.total.Seconds() }

// parallel calls job n times over conc goroutines and times each call.
func parallel(n, conc int, job func() error) (jobRun, error) {
	var mu sync.Mutex
	var r jobRun
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/conc; i++ {
				t := time.Now()
				err := job()
				d := float64(time.Since(t).Microseconds()) / 1e3
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				r.lat = append(r.lat, d)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	r.total = time.Since(start)
	return r, firstErr
}

const pyPopen = `import json, subprocess, sys, threading, time
n, conc = int(sys.argv[1]), int(sys.argv[2])
lat, lock = [], threading.Lock()
def work():
    for _ in range(n // conc):
        t = time.perf_counter()
        subprocess.Popen(["/bin/true"]).wait()
        d = (time.perf_counter() - t) * 1e3
        with lock:
            lat.append(d)
t0 = time.perf_counter()
ts = [threading.Thread(target=work) for _ in range(conc)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps({"total": time.perf_counter() - t0, "lat": lat}))
`

func python(c *config, n, conc int) (jobRun, error) {
	out, err := exec.Command(c.python, "-c", pyPopen, strconv.Itoa(n), strconv.Itoa(conc)).Output()
	if err != nil {
		return jobRun{}, fmt.Errorf("python: %v", err)
	}
	var v struct {
		Total float64
		Lat   []float64
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return jobRun{}, err
	}
	return jobRun{lat: v.Lat, total: time.Duration(v.Total * float64(time.Second))}, nil
}

// jobsThroughput runs /bin/true as a job of each tend build (--socket,
// init mode, not PID 1) through a persistent Go client (Run: one request
// that answers at the exit, on pooled connections) and through `tend
// spawn`, against fork/exec from Go (exec.Cmd.Run) and Python's
// subprocess.Popen in the same round; and, as `tend spawn`'s reference, an
// empty static Go program's exec followed by one API job. The build named
// tend is "tend API"; another, say tend-old, is "tend-old API", so two
// builds compare side by side.
func jobsThroughput(c *config, res *Results) error {
	type way struct {
		name string
		conc int
		run  func() (jobRun, error)
	}
	n := c.n(2000, 300)
	direct := func() error { return exec.Command("/bin/true").Run() }
	ways := []way{
		{"Go exec", 1, func() (jobRun, error) { return parallel(n, 1, direct) }},
		{"Go exec", 4, func() (jobRun, error) { return parallel(n, 4, direct) }},
		{"Python Popen", 1, func() (jobRun, error) { return python(c, n, 1) }},
		{"Python Popen", 4, func() (jobRun, error) { return python(c, n, 4) }},
	}
	for _, t := range c.inits {
		if !isTend(t.Name) {
			continue
		}
		sock := filepath.Join(c.tmp, t.Name+"-jobs.sock")
		_ = os.Remove(sock)
		srv := exec.Command(t.Path, "--socket", sock, "--", "sleep", "100000")
		srv.Stderr = os.Stderr
		if err := srv.Start(); err != nil {
			return err
		}
		defer stopInit(srv)
		client := api.NewClient(sock)
		defer client.CloseIdle()
		ctx := context.Background()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := client.Health(ctx); err == nil {
				break
			} else if time.Now().After(deadline) {
				return fmt.Errorf("%s --socket: %v", t.Name, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		apiJobOn := func(track string) func() error {
			return func() error {
				j, err := client.Run(ctx, api.JobRequest{Argv: []string{"/bin/true"}, Track: track})
				if err == nil && (j.ExitCode == nil || *j.ExitCode != 0) {
					err = fmt.Errorf("job %s: %+v", j.ID, j)
				}
				return err
			}
		}
		apiJob := apiJobOn("")
		// A build with unit tracking runs jobs with its default track
		// (the unit helper where no cgroup is writable) and, beside it,
		// with track "group" (tend's direct child): the helper's cost.
		// An older build refuses the field and gets only the first.
		if apiJobOn("group")() == nil {
			ways = append(ways,
				way{t.Name + " API group", 1, func() (jobRun, error) { return parallel(n, 1, apiJobOn("group")) }},
				way{t.Name + " API group", 4, func() (jobRun, error) { return parallel(n, 4, apiJobOn("group")) }})
		}
		env := append(os.Environ(), "TEND_SOCKET="+sock)
		path := t.Path
		spawnCLI := func() error {
			cmd := exec.Command(path, "spawn", "--", "/bin/true")
			cmd.Env = env
			return cmd.Run()
		}
		ways = append(ways,
			way{t.Name + " API", 1, func() (jobRun, error) { return parallel(n, 1, apiJob) }},
			way{t.Name + " API", 4, func() (jobRun, error) { return parallel(n, 4, apiJob) }},
			way{t.Name + " spawn", 1, func() (jobRun, error) { return parallel(c.n(200, 40), 1, spawnCLI) }})
		if c.empty != "" && t.Name == "tend" {
			emptyThenJob := func() error {
				if err := exec.Command(c.empty).Run(); err != nil {
					return err
				}
				return apiJob()
			}
			ways = append(ways, way{"empty Go + tend API", 1, func() (jobRun, error) { return parallel(c.n(200, 40), 1, emptyThenJob) }})
		}
	}
	for _, i := range shuffledWays(len(ways)) {
		w := ways[i]
		r, err := w.run()
		if err != nil {
			return fmt.Errorf("%s x%d: %v", w.name, w.conc, err)
		}
		fr := res.figure(fmt.Sprintf("jobs.rate.c%d", w.conc), fmt.Sprintf("jobs/s, /bin/true, %d client(s)", w.conc), "jobs/s", true,
			">= 0.8x Go exec (and, 1 client, >= 1.0x Python); tend spawn >= 1/1.5 of empty Go + tend API")
		fr.add(w.name, r.rate(), len(r.lat))
		fp := res.figure(fmt.Sprintf("jobs.p99.c%d", w.conc), fmt.Sprintf("job spawn+wait p99, %d client(s)", w.conc), "ms", false, "")
		fp.add(w.name, percentile(r.lat, 99), len(r.lat))
	}
	return nil
}

func shuffledWays(n int) []int {
	s := make([]initSpec, n)
	for i := range s {
		s[i].Name = strconv.Itoa(i)
	}
	var out []int
	for _, x := range shuffled(s) {
		i, _ := strconv.Atoi(x.Name)
		out = append(out, i)
	}
	return out
}

// shutdown runs each tend build (--config with 100 sleep services),
// s6-svscan and runsvdir (a scan directory with 100 services whose run
// scripts exec sleep) as PID 1: the time until all 100 sleep run, and from
// the stop signal (stopSignal) to PID 1's exit, as unshare's wait sees it,
// which the kernel reports only once every process of the namespace is gone.
// The -- COMMAND inits supervise no services and are left out.
func shutdown(c *config, res *Results) error {
	const services = 100
	cfg, err := tendServices(c, "services.toml", services)
	if err != nil {
		return err
	}
	fs := res.figure("services.start", "supervisor: start 100 services", "ms", false, "")
	fd := res.figure("services.stop", "supervisor: stop signal to exit, 100 services", "ms", false, "")
	for _, s := range shuffled(c.inits) {
		var argv []string
		switch {
		case isTend(s.Name):
			argv = []string{s.Path, "--config", cfg}
		case isScanner(s.Name):
			dir, err := sleepServices(c, s, services)
			if err != nil {
				return err
			}
			argv = []string{s.Path, dir}
		default:
			continue
		}
		cmd := nsCommand(argv)
		cmd.Stderr = os.Stderr
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		pid, err := childOf(cmd.Process.Pid)
		if err != nil {
			return err
		}
		for countSleeps(pid) < services {
			if time.Since(t0) > 20*time.Second {
				cmd.Process.Kill()
				cmd.Wait()
				return fmt.Errorf("%s: %d services running after 20s", s.Name, countSleeps(pid))
			}
			time.Sleep(200 * time.Microsecond)
		}
		fs.add(s.Name, float64(time.Since(t0).Microseconds())/1e3, 1)
		time.Sleep(300 * time.Millisecond)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t1 := time.Now()
		if err := syscall.Kill(pid, stopSignal(s.Name)); err != nil {
			return err
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s: still running 30 s after %v", s.Name, stopSignal(s.Name))
		}
		fd.add(s.Name, float64(time.Since(t1).Microseconds())/1e3, 1)
	}
	return nil
}

// stopInit sends SIGTERM to an init started with exec (tend forwards it and
// its sleeping child goes with it), and SIGKILL after 5 s.
func stopInit(cmd *exec.Cmd) {
	_ = unixKill(cmd.Process.Pid)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
