//go:build linux

package client

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

func spawnCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "spawn", Usage: "run a command as a job of tend and exit as it did",
		UsageText: "tend spawn [--detach [--json]] [--label K=V]... [--timeout D] [--stdout FILE] [--stderr FILE] [-g] [--user U] [--memory-max SIZE] [--pids-max N] -- CMD [ARG...]",
		Description: "Bound by default: the job gets this process's stdin, stdout, stderr, cwd and environment, every\n" +
			"signal tend spawn gets is forwarded to it, and it is killed if tend spawn dies. tend spawn exits with\n" +
			"the job's code, or dies of the job's signal. 125: tend failed; 126/127: CMD cannot be executed.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "do not wait or bind: print the job id once it is started or queued; the job's stdio is /dev/null or --stdout/--stderr (cwd and environment are still passed)"},
			&cli.BoolFlag{Name: "json", Usage: "with --detach, print the job record instead of its id"},
			&cli.GenericFlag{Name: "label", Aliases: []string{"l"}, Value: &labelFlag{}, Usage: "label the job `KEY=VALUE` (repeatable)"},
			&cli.StringFlag{Name: "timeout", Usage: "kill the job after `D` (Go duration; default: tend's [jobs] timeout)"},
			&cli.StringFlag{Name: "stdout", Usage: "append the job's stdout to `FILE`, opened by tend spawn"},
			&cli.StringFlag{Name: "stderr", Usage: "append the job's stderr to `FILE`, opened by tend spawn"},
			&cli.BoolFlag{Name: "group", Aliases: []string{"g"}, Usage: "forward signals to the job's whole process group"},
			&cli.StringFlag{Name: "user", Usage: "run as `USER` (name or uid[:gid]; root callers only)"},
			&cli.StringFlag{Name: "memory-max", Usage: "limit the job's memory to `SIZE` (bytes, or with K, M, G, T: powers of 1024)"},
			&cli.StringFlag{Name: "pids-max", Usage: "limit the job's tasks (threads included) to `N`"},
		}}, runSpawn}
}

// runSpawn checks the command line, builds the request and spawns.
func runSpawn(c *cli.Context, r *clientRun) int {
	cmd := c.Command
	if c.NArg() == 0 {
		return usage(r.cio, cmd, "missing command")
	}
	if d := c.String("timeout"); d != "" {
		if _, err := time.ParseDuration(d); err != nil {
			return usage(r.cio, cmd, fmt.Sprintf("--timeout: %v", err))
		}
	}
	if c.Bool("json") && !c.Bool("detach") {
		return usage(r.cio, cmd, "--json needs --detach")
	}
	req := api.JobRequest{Argv: c.Args().Slice(), Labels: labels(c), Timeout: c.String("timeout"), User: c.String("user")}
	if v := c.String("memory-max"); v != "" {
		if _, err := config.ParseMemoryMax(v); err != nil {
			return usage(r.cio, cmd, fmt.Sprintf("--memory-max: %v", err))
		}
		req.MemoryMax, _ = json.Marshal(v)
	}
	if v := c.String("pids-max"); v != "" {
		var arg any = v // "max"
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			arg = n
		}
		if _, err := config.ParsePidsMax(arg); err != nil {
			return usage(r.cio, cmd, fmt.Sprintf("--pids-max: %v", err))
		}
		req.PidsMax, _ = json.Marshal(arg)
	}
	files, err := outputFiles(c.String("stdout"), c.String("stderr"))
	if err != nil {
		return r.fail(err)
	}
	defer closeFiles(files)
	// Detached or not, the job runs where and with what the caller has:
	// `tend spawn -d -- ./run.sh` must find ./run.sh.
	req.Env = r.cio.environ()
	if dir, err := r.cio.getwd(); err == nil {
		req.Dir = dir // else tend's default, "/"
	}
	if c.Bool("detach") {
		defer defaultSignals(r.cio.raise)() // a ^C ends a detached spawn like any command
		return r.spawnDetached(req, files, c.Bool("json"))
	}
	stdio := [3]*os.File{r.cio.stdin, r.cio.stdout, r.cio.stderr}
	for fd, f := range files {
		stdio[fd] = f
	}
	pass, targets := openStdio(stdio)
	req.Stdio = targets
	return r.spawnBound(req, pass, c.Bool("group"))
}

// outputFiles opens --stdout and --stderr for appending, with the caller's
// own permissions (tend never opens a path for a caller). The same path
// twice is opened once, so both streams share one offset, like 2>&1.
func outputFiles(stdout, stderr string) (map[int]*os.File, error) {
	files := map[int]*os.File{}
	for fd, path := range map[int]string{1: stdout, 2: stderr} {
		if path == "" {
			continue
		}
		if fd == 2 && path == stdout {
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o666)
		if err != nil {
			closeFiles(files)
			return nil, err
		}
		files[fd] = f
	}
	if stderr != "" && stderr == stdout {
		files[2] = files[1]
	}
	return files, nil
}

func closeFiles(files map[int]*os.File) {
	for _, f := range files {
		f.Close() // twice for a shared file: the second is a harmless ErrClosed
	}
}

// openStdio lists the files among stdio that are open, with their target
// fds: a closed stdin (`tend spawn ... <&-`) is /dev/null for the job,
// where passing it would fail the whole request with EBADF.
func openStdio(stdio [3]*os.File) (files []*os.File, targets []int) {
	for fd, f := range stdio {
		if f == nil {
			continue
		}
		if raw, err := f.SyscallConn(); err == nil {
			ok := false
			_ = raw.Control(func(u uintptr) { _, err := unix.FcntlInt(u, unix.F_GETFD, 0); ok = err == nil })
			if ok {
				files = append(files, f)
				targets = append(targets, fd)
			}
		}
	}
	return files, targets
}

// spawnDetached starts an unbound job with only the --stdout/--stderr
// files, and prints its id or record.
func (r *clientRun) spawnDetached(req api.JobRequest, files map[int]*os.File, asJSON bool) int {
	var pass []*os.File
	for _, fd := range []int{1, 2} {
		if f := files[fd]; f != nil {
			pass = append(pass, f)
			req.Stdio = append(req.Stdio, fd)
		}
	}
	j, err := r.client.Spawn(r.ctx, req, pass)
	if err != nil {
		return r.spawnFailed(err)
	}
	if asJSON {
		r.printJSON(j)
	} else {
		r.wrote(printf(r.cio.stdout, "%s\n", j.ID))
	}
	return 0 // the job runs, whatever became of our stdout
}

// spawnBound runs a bound job: signals are caught before it exists (so
// none is lost meanwhile) and forwarded once it does; its end is ours.
func (r *clientRun) spawnBound(req api.JobRequest, files []*os.File, group bool) int {
	fwd := startForwarding()
	bj, err := r.client.SpawnWaiting(r.ctx, req, files) // one round trip
	if err != nil {
		fwd.stop()
		return r.spawnFailed(err)
	}
	defer bj.Close()
	fwd.to(r, bj.Job.ID, group)
	j, err := bj.Wait(r.ctx)
	fwd.stop()
	if err != nil {
		return r.fail(fmt.Errorf("waiting for job %s: %w", bj.Job.ID, err))
	}
	return r.exitLike(j, true)
}
