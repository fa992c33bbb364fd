//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The supervision-suite inits, s6-svscan (s6) and runsvdir (runit), do not
// run `-- COMMAND`: they supervise a scan directory holding one directory
// per service, each with a ./run script, and start one supervisor per
// service (s6-supervise, runsv) that runs it. They are measured where they
// do the same job as tend: idle as PID 1 with one service, the orphan storm
// and stopping 100 services; the `-- COMMAND` figures leave them out.

// isScanner says whether the init named name takes a scan directory.
func isScanner(name string) bool { return name == "s6-svscan" || name == "runsvdir" }

// execInits are the inits that run `-- COMMAND`.
func (c *config) execInits() []initSpec {
	var out []initSpec
	for _, s := range c.inits {
		if !isScanner(s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// scanDir makes a fresh scan directory under c.tmp with one service
// directory per run script given, dated a minute ago.
func scanDir(c *config, name string, runs []string) (string, error) {
	dir, err := os.MkdirTemp(c.tmp, name+".")
	if err != nil {
		return "", err
	}
	for i, r := range runs {
		sd := filepath.Join(dir, "s"+strconv.Itoa(i))
		if err := os.Mkdir(sd, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(sd, "run"), []byte("#!/bin/sh\n"+r), 0o755); err != nil {
			return "", err
		}
	}
	// runsvdir puts off reading a scan directory modified in the current
	// second: 100 services took it 1.7 s to start from a directory made just
	// now, 0.6 s from one dated back.
	old := time.Now().Add(-time.Minute)
	return dir, os.Chtimes(dir, old, old)
}

// sleepRun is the run script of a `sleep` service: the supervisor runs a
// shell that execs sleep (tend runs sleep itself; the shell costs one exec).
const sleepRun = "exec sleep 100000\n"

// sleepServices makes n sleep services for a scanner init.
func sleepServices(c *config, s initSpec, n int) (string, error) {
	runs := make([]string, n)
	for i := range runs {
		runs[i] = sleepRun
	}
	return scanDir(c, s.Name, runs)
}

// tendServices writes a tend config with n sleep services.
func tendServices(c *config, file string, n int) (string, error) {
	var b strings.Builder
	b.WriteString("[control]\nsocket = \"\"\n[shutdown]\ngrace = \"10s\"\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[[service]]\nname = \"s%d\"\ncommand = [\"sleep\", \"100000\"]\n", i)
	}
	cfg := filepath.Join(c.tmp, file)
	return cfg, os.WriteFile(cfg, []byte(b.String()), 0o644)
}

// stopSignal is how each init is told, as PID 1, to stop its services and
// exit: SIGTERM for tend and s6-svscan (s6-svscan(8): as s6-svscanctl -t,
// SIGTERM to every s6-supervise, which bring their service down, then it
// waits for them and exits 0 with no .s6-svscan/finish); SIGHUP for
// runsvdir (runsvdir(8): SIGTERM to every runsv, then exit 111 at once,
// without waiting; as PID 1 its exit has the kernel SIGKILL whatever of the
// namespace is still running; SIGTERM would make it exit and leave the
// runsv to the kernel alone).
func stopSignal(name string) syscall.Signal {
	if name == "runsvdir" {
		return syscall.SIGHUP
	}
	return syscall.SIGTERM
}

// comm is the command name of pid (/proc/PID/comm).
func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// children lists the children of pid, over all its threads.
func children(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// supervisorTree is pid and its descendants, less the services: every
// process named sleep and what is below it. For tini and its peers, and for
// tend, it is the init alone; for s6-svscan the init and its s6-supervise,
// for runsvdir the init and its runsv.
func supervisorTree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for _, ch := range children(out[i]) {
			if comm(ch) != "sleep" {
				out = append(out, ch)
			}
		}
	}
	return out
}

// countSleeps counts the sleep processes below pid.
func countSleeps(pid int) int {
	n := 0
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, ch := range children(p) {
			if comm(ch) == "sleep" {
				n++
			} else {
				todo = append(todo, ch)
			}
		}
	}
	return n
}

// What runHelperAsService tells the helper, in its environment.
const (
	envOrphan = "TENDBENCH_ORPHAN" // wait until PID 1 has adopted you
	envOut    = "TENDBENCH_OUT"    // write the JSON line to this file, or the error to FILE.failed
)

// runHelperAsService runs `tendbench helper ARGS` under a scanner init as
// PID 1 so that, as under runHelperAsInit, the helper's parent is PID 1 and
// the children it makes with CLONE_PARENT are PID 1's: the one service's run
// script starts the helper from a subshell that exits at once, which leaves
// it an orphan for PID 1 to adopt, then execs sleep (so that the supervisor
// does not run the script again). The helper waits to be adopted and writes
// its JSON line to a file, which this waits for.
func runHelperAsService(c *config, s initSpec, out any, args ...string) error {
	file := filepath.Join(c.tmp, s.Name+".helper.json")
	for _, f := range []string{file, file + ".failed"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	script := fmt.Sprintf("( %s=1 %s=%s exec %s helper %s & )\n%s", envOrphan, envOut, shq(file), shq(c.self),
		strings.Join(args, " "), sleepRun)
	dir, err := scanDir(c, s.Name, []string{script})
	if err != nil {
		return err
	}
	cmd := nsCommand([]string{s.Path, dir})
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill() // --kill-child takes the namespace down
			<-exited
		}
	}()
	deadline := time.After(2 * time.Minute)
	for {
		if b, err := os.ReadFile(file + ".failed"); err == nil {
			return fmt.Errorf("%s helper %v: %s", s.Name, args, b)
		}
		if b, err := os.ReadFile(file); err == nil {
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("%s helper %v: %v: %q", s.Name, args, err, b)
			}
			return nil
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred wait
			return fmt.Errorf("%s exited before its helper answered: %v: %s", s.Name, err, stderr.String())
		case <-deadline:
			return fmt.Errorf("%s helper %v: no answer after 2 min: %s", s.Name, args, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// asService is the helper's side of runHelperAsService: it waits to be
// PID 1's child and sends stdout to a file that appears, whole, once it is
// done (finish renames it, or writes the error beside it).
func asService() (finish func(error) error, err error) {
	path := os.Getenv(envOut)
	fail := func(err error) error {
		if path != "" {
			_ = os.WriteFile(path+".failed", []byte(err.Error()), 0o644)
		}
		return err
	}
	if os.Getenv(envOrphan) != "" {
		deadline := time.Now().Add(5 * time.Second)
		for os.Getppid() != 1 {
			if time.Now().After(deadline) {
				return nil, fail(fmt.Errorf("parent still %d after 5 s, not PID 1", os.Getppid()))
			}
			time.Sleep(time.Millisecond)
		}
	}
	if path == "" {
		return func(err error) error { return err }, nil
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return nil, fail(err)
	}
	os.Stdout = f
	return func(err error) error {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail(err)
		}
		return os.Rename(path+".tmp", path)
	}, nil
}
