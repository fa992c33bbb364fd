//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// idle starts every init as PID 1 with one sleeping service, all at once,
// lets them settle, and counts the wake-ups over 10 s and the memory of the
// supervisor tree: the init plus its per-service supervisors, if any (the
// s6-supervise of s6-svscan, the runsv of runsvdir), never the sleep. The
// `-- COMMAND` inits run sleep as their child; each tend build runs a second
// time with --socket and a third time as a supervisor (--config with one
// sleep service), each from its own copy of the binary so that PSS does not
// split the text between them; s6-svscan and runsvdir scan a directory with
// one service whose run script execs sleep.
func idle(c *config, res *Results) error {
	type run struct {
		name string
		cmd  *exec.Cmd
		pid  int
		w0   int
	}
	var runs []*run
	defer func() {
		for _, r := range runs {
			if r.cmd.Process != nil {
				_ = r.cmd.Process.Kill() // --kill-child takes the namespace down
				_ = r.cmd.Wait()
			}
		}
	}()
	cfg, err := tendServices(c, "one-service.toml", 1)
	if err != nil {
		return err
	}
	for _, s := range c.inits {
		if isScanner(s.Name) {
			dir, err := sleepServices(c, s, 1)
			if err != nil {
				return err
			}
			runs = append(runs, &run{name: s.Name, cmd: nsCommand([]string{s.Path, dir})})
			continue
		}
		runs = append(runs, &run{name: s.Name, cmd: nsCommand(s.argv("sleep", "100000"))})
		if isTend(s.Name) {
			cp := filepath.Join(c.tmp, s.Name+"-socket")
			if err := copyFile(s.Path, cp); err != nil {
				return err
			}
			sock := filepath.Join(c.tmp, s.Name+".sock")
			runs = append(runs, &run{name: s.Name + " --socket",
				cmd: nsCommand([]string{cp, "--socket", sock, "--", "sleep", "100000"})})
			cp = filepath.Join(c.tmp, s.Name+"-config")
			if err := copyFile(s.Path, cp); err != nil {
				return err
			}
			runs = append(runs, &run{name: s.Name + " --config", cmd: nsCommand([]string{cp, "--config", cfg})})
		}
	}
	for _, r := range runs {
		r.cmd.Stderr = os.Stderr
		if err := r.cmd.Start(); err != nil {
			return err
		}
		pid, err := childOf(r.cmd.Process.Pid)
		if err != nil {
			return err
		}
		r.pid = pid
	}
	time.Sleep(2 * time.Second) // start-up done, GC settled
	for _, r := range runs {
		if n := countSleeps(r.pid); n != 1 {
			return fmt.Errorf("idle: %s runs %d sleep after 2 s, want 1", r.name, n)
		}
		for _, p := range supervisorTree(r.pid) {
			r.w0 += wakeups(p)
		}
	}
	const window = 10 * time.Second
	time.Sleep(window)
	fw := res.figure("idle.wakeups", "idle wake-ups over 10 s, all threads of the supervisor tree", "count", false, "0")
	fr := res.figure("idle.rssanon", "idle RssAnon of the supervisor tree", "MiB", false, "<= 2 MiB (init), 3 MiB (--socket)")
	fp := res.figure("idle.pss", "idle PSS of the supervisor tree", "MiB", false, "")
	for _, r := range runs {
		w, anon, pss := -r.w0, 0, 0
		for _, p := range supervisorTree(r.pid) {
			w += wakeups(p)
			a, s := memory(p)
			anon, pss = anon+a, pss+s
		}
		fw.add(r.name, float64(w), 1)
		fr.add(r.name, float64(anon)/1024, 1)
		fp.add(r.name, float64(pss)/1024, 1)
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	_ = os.Remove(to)
	return os.WriteFile(to, b, 0o755)
}

// runHelperAsInit runs `INIT -- tendbench helper ARGS` as PID 1 and decodes
// the helper's JSON line into out.
func runHelperAsInit(c *config, s initSpec, out any, args ...string) error {
	cmd := nsCommand(s.argv(append([]string{c.self, "helper"}, args...)...))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s helper %v: %v: %s", s.Name, args, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("%s helper %v: %v: %q %s", s.Name, args, err, stdout.String(), stderr.String())
	}
	return nil
}

// storm: N children of PID 1 released over about a second. The helper is
// the init's main process, or for s6-svscan and runsvdir an orphan that a
// service left to PID 1 (runHelperAsService).
func storm(c *config, res *Results) error {
	n := c.n(10000, 3000)
	spread := 1000
	fd := res.figure("storm.drain", fmt.Sprintf("orphan storm (%d): last exit to no zombie", n), "ms", false, "< 20 ms")
	fz := res.figure("storm.peak", "orphan storm: peak zombies", "count", false, "")
	fc := res.figure("storm.cpu", "orphan storm: PID 1 CPU", "ms", false, "<= 1.5x refinit")
	for _, s := range shuffled(c.inits) {
		var r stormResult
		run := runHelperAsInit
		if isScanner(s.Name) {
			run = runHelperAsService
		}
		if err := run(c, s, &r, "storm", strconv.Itoa(n), strconv.Itoa(spread)); err != nil {
			return err
		}
		fd.add(s.Name, r.DrainMs, 1)
		fz.add(s.Name, float64(r.PeakZombies), 1)
		fc.add(s.Name, r.CPUMs, 1)
	}
	return nil
}

// reapLatency: one child of PID 1 at a time, exit to reaped.
func reapLatency(c *config, res *Results) error {
	n := c.n(1000, 200)
	f50 := res.figure("reap.p50", "reap latency of one orphan, p50", "µs", false, "<= 1.5x the best C init")
	f99 := res.figure("reap.p99", "reap latency of one orphan, p99", "µs", false, "p99 < 1 ms")
	for _, s := range shuffled(c.execInits()) {
		var r latResult
		if err := runHelperAsInit(c, s, &r, "reaplat", strconv.Itoa(n)); err != nil {
			return err
		}
		f50.add(s.Name, percentile(r.ExitToReapUs, 50), len(r.ExitToReapUs))
		f99.add(s.Name, percentile(r.ExitToReapUs, 99), len(r.ExitToReapUs))
	}
	return nil
}

// signalLatency: SIGUSR1 sent to PID 1 (from outside the namespace, as a
// container runtime does) until the main process has it, and the same sent
// straight to the helper (no init: Go's own signal delivery, the floor).
func signalLatency(c *config, res *Results) error {
	n := c.n(500, 100)
	f50 := res.figure("signal.p50", "signal forwarding latency, p50", "µs", false, "<= 1.5x tini")
	f99 := res.figure("signal.p99", "signal forwarding latency, p99", "µs", false, "")
	all := append([]initSpec{{Name: "direct"}}, c.execInits()...)
	for _, s := range shuffled(all) {
		var cmd *exec.Cmd
		if s.Name == "direct" {
			cmd = exec.Command(c.self, "helper", "sigrecv")
		} else {
			cmd = nsCommand(s.argv(c.self, "helper", "sigrecv"))
		}
		lat, err := signalRun(cmd, s.Name != "direct", n)
		if err != nil {
			return fmt.Errorf("%s: %v", s.Name, err)
		}
		f50.add(s.Name, percentile(lat, 50), len(lat))
		f99.add(s.Name, percentile(lat, 99), len(lat))
	}
	return nil
}

func signalRun(cmd *exec.Cmd, ns bool, n int) ([]float64, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		stdin.Close()
		go io.Copy(io.Discard, out)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	target := cmd.Process.Pid
	if ns {
		if target, err = childOf(target); err != nil {
			return nil, err
		}
	}
	br := bufio.NewReader(out)
	if l, err := readLine(br, 10*time.Second); err != nil || l != "ready" {
		return nil, fmt.Errorf("helper said %q: %v", l, err)
	}
	var lat []float64
	for i := 0; i < n; i++ {
		time.Sleep(2 * time.Millisecond)
		t0 := monoNow()
		if err := unix.Kill(target, syscall.SIGUSR1); err != nil {
			return nil, err
		}
		l, err := readLine(br, 5*time.Second)
		if err != nil {
			return nil, err
		}
		t1, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("helper said %q", l)
		}
		lat = append(lat, float64(t1-t0)/1e3)
	}
	return lat, nil
}
