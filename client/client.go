//go:build linux

// Package client is tend's command-line clients of the control API: tend
// spawn, wait, status, jobs, signal, restart, service, events and health,
// and the re-raise of a job's fatal signal on the spawn proxy itself. It
// talks to a tend only through the api package's client.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
)

// exitTend is the exit code of every failure on tend's side (no server,
// 403, 404, 429, a bad answer), as `docker run` exits 125 when the daemon
// fails; 126 and 127 are the command's, 2 a usage error.
const exitTend = 125

// exitFailure is the exit code of a command that could not print (its
// stdout is gone).
const exitFailure = 1

// exitUsage is the exit code of a usage error, in every mode and
// subcommand.
const exitUsage = 2

// exitUnhealthy is tend health's answer when a critical service is not
// ready, for Kubernetes exec probes.
const exitUnhealthy = 1

// clientIO is what the client commands take from the process. Tests give
// their own.
type clientIO struct {
	stdin, stdout, stderr *os.File
	environ               func() []string
	getenv                func(string) string
	getwd                 func() (string, error)
	raise                 func(unix.Signal) // reraise; tests record it instead of dying
}

// processIO is the real process's stdio, environment and signals.
func processIO() *clientIO {
	return &clientIO{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		environ: os.Environ, getenv: os.Getenv, getwd: os.Getwd, raise: reraise}
}

// Commands returns tend's client subcommands (DESIGN.md §5). Each one
// stores its exit code in *code and returns nil, so that main prints
// nothing more and exits with it.
func Commands(code *int) []*cli.Command { return newClientCommands(code, processIO()) }

// runClient runs one client command line (args[0] is the program name)
// outside of main's app and returns its exit code: the seam for tests.
func runClient(args []string, cio *clientIO) int {
	code := -1
	app := &cli.App{Name: "tend", HideHelpCommand: true, UseShortOptionHandling: true,
		Writer: cio.stdout, ErrWriter: cio.stderr, Commands: newClientCommands(&code, cio),
		ExitErrHandler: func(*cli.Context, error) {}}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(cio.stderr, "tend: %v\n", err)
		return exitUsage
	}
	return max(code, 0) // -1: --help
}

// clientRun is one running client command.
type clientRun struct {
	cio    *clientIO
	name   string // for messages: "tend spawn"
	client *api.Client
	ctx    context.Context
}

// clientCommand completes cmd with what every client command shares: the
// --socket flag, usage errors that exit 2 with the command's own usage, no
// help subcommand (it would shadow a program called help in `tend spawn
// help`), default reactions to signals, and an action whose result is the
// exit code.
func clientCommand(code *int, cio *clientIO, cmd *cli.Command, run func(*cli.Context, *clientRun) int) *cli.Command {
	cmd.Flags = append(cmd.Flags, &cli.StringFlag{Name: "socket", Usage: "tend's control socket `PATH` " +
		"(default: $TEND_SOCKET, else " + api.DefaultSocket + ")"})
	cmd.HideHelpCommand = true
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		*code = usage(cio, cmd, err.Error())
		return nil
	}
	cmd.Action = func(c *cli.Context) error {
		r := &clientRun{cio: cio, name: "tend " + cmd.Name, client: api.NewClient(socketOf(c, cio)), ctx: c.Context}
		defer r.client.CloseIdle()
		if cmd.Name != "spawn" { // spawn forwards signals to its job instead
			defer defaultSignals(cio.raise)()
		}
		*code = run(c, r)
		return nil
	}
	return cmd
}

// socketOf is the socket named by the command's --socket, else by tend's
// own --socket before the command word, else by $TEND_SOCKET.
func socketOf(c *cli.Context, cio *clientIO) string {
	for _, ctx := range c.Lineage() {
		if s := ctx.String("socket"); s != "" {
			return s
		}
	}
	if s := cio.getenv("TEND_SOCKET"); s != "" {
		return s
	}
	return api.DefaultSocket
}

// usage reports a usage error with the command's own usage line.
func usage(cio *clientIO, cmd *cli.Command, msg string) int {
	fmt.Fprintf(cio.stderr, "tend %s: %s\nusage: %s\n", cmd.Name, msg, cmd.UsageText)
	return exitUsage
}

// fail reports a failure on tend's side and returns its exit code.
func (r *clientRun) fail(err error) int {
	fmt.Fprintf(r.cio.stderr, "%s: %v\n", r.name, err)
	return exitTend
}

// spawnFailed maps a refused POST /v1/jobs: a 422 is the command's own
// failure to execute (127 not found, 126 anything else, as a shell says),
// anything else is tend's.
func (r *clientRun) spawnFailed(err error) int {
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnprocessableEntity {
		return r.fail(err)
	}
	fmt.Fprintf(r.cio.stderr, "%s: %s\n", r.name, se.Msg)
	return execFailureCode(se.Msg)
}

// execFailureCode reads the errno from the message of an exec failure
// (spawn.ExecError: "exec PATH: no such file or directory (ENOENT)").
func execFailureCode(msg string) int {
	m := strings.ToLower(msg)
	for _, s := range []string{"(enoent)", "(enotdir)", "no such file or directory", "not a directory"} {
		if strings.Contains(m, s) {
			return spawn.ExitNotFound
		}
	}
	return spawn.ExitNotExecutable
}

// exitLike returns the exit code that reports how job j ended: its own
// code, or 128+N when signal N killed it, after raising N on ourselves
// when reraise is set (which does not return for a deadly signal).
func (r *clientRun) exitLike(j api.Job, reraise bool) int {
	switch j.Reason {
	case api.ReasonExecFailed:
		fmt.Fprintf(r.cio.stderr, "%s: %s\n", r.name, j.Error)
	case api.ReasonTimeout, api.ReasonShutdown, api.ReasonDisconnected:
		fmt.Fprintf(r.cio.stderr, "%s: job %s ended: %s\n", r.name, j.ID, j.Reason)
	}
	if j.ExitCode != nil {
		return *j.ExitCode
	}
	if j.Signal == nil {
		return r.fail(fmt.Errorf("bad answer from tend: job %s %s with neither exit code nor signal", j.ID, j.State))
	}
	sig, err := signals.Parse(*j.Signal)
	if err != nil {
		return r.fail(fmt.Errorf("bad answer from tend: job %s: %w", j.ID, err))
	}
	if reraise {
		r.cio.raise(sig)
	}
	return exitSignalOffset + int(sig)
}

// printJSON writes v as indented JSON; false when stdout failed.
func (r *clientRun) printJSON(v any) bool {
	enc := json.NewEncoder(r.cio.stdout)
	enc.SetIndent("", "  ")
	return r.wrote(enc.Encode(v))
}

// wrote checks a write to stdout. A closed pipe (`tend jobs | head -1`) ends
// the client as SIGPIPE ends any program; main caught SIGPIPE, so the write
// only returned EPIPE.
func (r *clientRun) wrote(err error) bool {
	if errors.Is(err, unix.EPIPE) {
		r.cio.raise(unix.SIGPIPE)
	}
	if err != nil && !errors.Is(err, io.ErrShortWrite) {
		fmt.Fprintf(r.cio.stderr, "%s: %v\n", r.name, err)
		return false
	}
	return err == nil
}

// printed is the exit code of a command whose work was to print.
func (r *clientRun) printed(ok bool) int {
	if ok {
		return 0
	}
	return exitFailure
}

// labelFlag collects repeated --label k=v. It is a cli.Generic and not a
// StringSliceFlag, which would split a value at its commas.
type labelFlag struct{ m map[string]string }

func (l *labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want KEY=VALUE", s)
	}
	if l.m == nil {
		l.m = map[string]string{}
	}
	l.m[k] = v
	return nil
}

func (l *labelFlag) String() string { return "" }

// labels returns the --label values of c.
func labels(c *cli.Context) map[string]string {
	if l, ok := c.Generic("label").(*labelFlag); ok {
		return l.m
	}
	return nil
}

// newClientCommands builds the client subcommands on cio.
func newClientCommands(code *int, cio *clientIO) []*cli.Command {
	cmds := []clientCmd{spawnCommand(), waitCommand(), statusCommand(), jobsCommand(),
		signalCommand(), restartCommand(), serviceCommand(), eventsCommand(), healthCommand(), zombiesCommand(), reloadCommand()}
	out := make([]*cli.Command, len(cmds))
	for i, cc := range cmds {
		out[i] = clientCommand(code, cio, cc.cmd, cc.run)
	}
	return out
}

// clientCmd is a command and the function that runs it.
type clientCmd struct {
	cmd *cli.Command
	run func(*cli.Context, *clientRun) int
}
