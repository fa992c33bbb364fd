//go:build linux

package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/signals"
)

func waitCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "wait", Usage: "wait for a job and exit as it did (its code, or 128+N for signal N)",
		UsageText: "tend wait JOB-ID"}, func(c *cli.Context, r *clientRun) int {
		if c.NArg() != 1 {
			return usage(r.cio, c.Command, "want exactly one job id")
		}
		j, err := r.client.Wait(r.ctx, c.Args().First(), 0)
		if err != nil {
			return r.fail(err)
		}
		return r.exitLike(j, false)
	}}
}

func statusCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "status", Usage: "show tend's services and jobs",
		UsageText: "tend status [--json]", Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print api.Status as JSON"}}},
		func(c *cli.Context, r *clientRun) int {
			if c.NArg() != 0 {
				return usage(r.cio, c.Command, "no arguments expected")
			}
			s, err := r.client.Status(r.ctx)
			if err != nil {
				return r.fail(err)
			}
			if c.Bool("json") {
				return r.printed(r.printJSON(s))
			}
			return r.printed(r.wrote(printStatus(r.cio.stdout, s)))
		}}
}

func jobsCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "jobs", Usage: "list jobs, newest first",
		UsageText: "tend jobs [--json] [--limit N] [--label K=V]...", Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the records as a JSON list"},
			&cli.IntFlag{Name: "limit", Usage: "only the newest `N` (at most tend's [control] max_page_size); 0: all, page after page"},
			&cli.GenericFlag{Name: "label", Aliases: []string{"l"}, Value: &labelFlag{}, Usage: "only jobs labelled `KEY=VALUE` (repeatable: all must match)"}}},
		func(c *cli.Context, r *clientRun) int {
			if c.NArg() != 0 {
				return usage(r.cio, c.Command, "no arguments expected")
			}
			var jobs []api.Job
			var err error
			if n := c.Int("limit"); n > 0 {
				jobs, _, err = r.client.JobsPage(r.ctx, labels(c), n, "")
			} else if n < 0 {
				return usage(r.cio, c.Command, "--limit wants a number of jobs, 0 for all")
			} else {
				jobs, err = r.client.Jobs(r.ctx, labels(c))
			}
			if err != nil {
				return r.fail(err)
			}
			if c.Bool("json") {
				if jobs == nil {
					jobs = []api.Job{} // [] rather than null
				}
				return r.printed(r.printJSON(jobs))
			}
			return r.printed(r.wrote(printJobs(r.cio.stdout, jobs)))
		}}
}

func signalCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "signal", Usage: "send a signal to a job, or with --service to a service",
		UsageText: "tend signal [--tree] [--kill] JOB-ID [SIGNAL]\n   tend signal --service NAME [SIGNAL]\n   SIGNAL is a name or number, default SIGTERM",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "tree", Usage: "signal the job's whole process group"},
			&cli.BoolFlag{Name: "kill", Usage: "then SIGKILL the job's group after tend's [jobs] stop_grace"},
			&cli.BoolFlag{Name: "service", Usage: "the target is a service, not a job"}}},
		func(c *cli.Context, r *clientRun) int {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usage(r.cio, c.Command, "want a target and at most one signal")
			}
			name := "SIGTERM"
			if c.NArg() == 2 {
				sig, err := signals.Parse(c.Args().Get(1))
				if err != nil {
					return usage(r.cio, c.Command, err.Error())
				}
				name = signals.Name(sig)
			}
			var err error
			if c.Bool("service") {
				if c.Bool("tree") || c.Bool("kill") {
					return usage(r.cio, c.Command, "--tree and --kill are for jobs")
				}
				err = r.client.ServiceOp(r.ctx, c.Args().First(), api.OpSignal, name)
			} else {
				err = r.client.Signal(r.ctx, c.Args().First(), api.SignalRequest{Signal: name, Tree: c.Bool("tree"), Kill: c.Bool("kill")})
			}
			if err != nil {
				return r.fail(err)
			}
			return 0
		}}
}

func restartCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "restart", Usage: "restart a service (shorthand of tend service restart)",
		UsageText: "tend restart SERVICE"}, func(c *cli.Context, r *clientRun) int {
		if c.NArg() != 1 {
			return usage(r.cio, c.Command, "want exactly one service name")
		}
		return r.serviceOp(c.Args().First(), api.OpRestart, "")
	}}
}

func serviceCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "service", Usage: "start, stop or restart a service (signal one with tend signal --service)",
		UsageText: "tend service start|stop|restart SERVICE"}, func(c *cli.Context, r *clientRun) int {
		op := c.Args().First()
		if c.NArg() != 2 || (op != api.OpStart && op != api.OpStop && op != api.OpRestart) {
			return usage(r.cio, c.Command, "want start, stop or restart and a service name")
		}
		return r.serviceOp(c.Args().Get(1), op, "")
	}}
}

// serviceOp sends one service operation.
func (r *clientRun) serviceOp(name, op, sig string) int {
	if err := r.client.ServiceOp(r.ctx, name, op, sig); err != nil {
		return r.fail(err)
	}
	return 0
}

func reloadCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "reload", Usage: "make tend re-read its config file: added services start, removed ones stop, changed ones restart, jobs are left alone",
		UsageText: "tend reload [--json]", Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the api.Reload answer as JSON"}}},
		func(c *cli.Context, r *clientRun) int {
			if c.NArg() != 0 {
				return usage(r.cio, c.Command, "no arguments expected")
			}
			rep, err := r.client.Reload(r.ctx)
			if err != nil {
				var se *api.StatusError
				if errors.As(err, &se) && (se.Code == http.StatusUnprocessableEntity || se.Code == http.StatusConflict) {
					fmt.Fprintf(r.cio.stderr, "%s: %s\n", r.name, se.Msg)
					return exitFailure // the file's fault, not tend's: nothing changed
				}
				return r.fail(err)
			}
			if c.Bool("json") {
				return r.printed(r.printJSON(rep))
			}
			var parts []string
			for _, p := range []struct {
				what  string
				names []string
			}{{"added", rep.Added}, {"removed", rep.Removed}, {"changed", rep.Changed}} {
				if len(p.names) > 0 {
					parts = append(parts, p.what+" "+strings.Join(p.names, ", "))
				}
			}
			parts = append(parts, rep.Settings...)
			if len(parts) == 0 {
				return r.printed(r.wrote(printf(r.cio.stdout, "reloaded: nothing changed\n")))
			}
			return r.printed(r.wrote(printf(r.cio.stdout, "reloaded: %s\n", strings.Join(parts, "; "))))
		}}
}

func zombiesCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "zombies", Usage: "name the live processes holding zombies they never waited for (PID 1 cannot reap those)",
		UsageText: "tend zombies [--json]", Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the api.ZombieParent list as JSON"}}},
		func(c *cli.Context, r *clientRun) int {
			if c.NArg() != 0 {
				return usage(r.cio, c.Command, "no arguments expected")
			}
			zs, err := r.client.Zombies(r.ctx)
			if err != nil {
				return r.fail(err)
			}
			if c.Bool("json") {
				return r.printed(r.printJSON(zs))
			}
			return r.printed(r.wrote(printZombies(r.cio.stdout, zs)))
		}}
}

func eventsCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "events", Usage: "print tend's events as they happen, one a line",
		UsageText: "tend events [--json]", Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print each api.Event as one JSON line"}}},
		func(c *cli.Context, r *clientRun) int {
			if c.NArg() != 0 {
				return usage(r.cio, c.Command, "no arguments expected")
			}
			es, err := r.client.Events(r.ctx)
			if err != nil {
				return r.fail(err)
			}
			defer es.Close()
			enc := json.NewEncoder(r.cio.stdout)
			for {
				e, err := es.Next()
				switch {
				case errors.Is(err, io.EOF):
					return 0 // tend ended the stream: it is stopping
				case err != nil:
					return r.fail(err)
				case c.Bool("json"):
					err = enc.Encode(e)
				default:
					err = printf(r.cio.stdout, "%s\n", formatEvent(e))
				}
				if !r.wrote(err) {
					return exitFailure
				}
			}
		}}
}

func healthCommand() clientCmd {
	return clientCmd{&cli.Command{Name: "health", Usage: "exit 0 when healthy, 1 when not (125: tend cannot say)",
		UsageText: "tend health [--level alive|ready] [--json]",
		Description: "ready (the default): every counted service ([health] include: the critical ones, or all) is ready and no check of it fails.\n" +
			"alive: none has failed for good, and no check with on_failure = \"ignore\" fails: for a liveness probe.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "level", Usage: "alive or ready", Value: api.HealthReady},
			&cli.BoolFlag{Name: "json", Usage: "print the answer as JSON"},
		}}, func(c *cli.Context, r *clientRun) int {
		if c.NArg() != 0 {
			return usage(r.cio, c.Command, "no arguments expected")
		}
		level := c.String("level")
		if level != api.HealthAlive && level != api.HealthReady {
			return usage(r.cio, c.Command, fmt.Sprintf("--level: %q is not %s or %s", level, api.HealthAlive, api.HealthReady))
		}
		h, err := r.client.HealthAt(r.ctx, level)
		if err != nil {
			return r.fail(err)
		}
		code := 0
		if !h.Healthy {
			code = exitUnhealthy
		}
		if c.Bool("json") {
			if r.printed(r.printJSON(h)) != 0 {
				return exitFailure
			}
			return code
		}
		failed := ""
		if len(h.Failed) > 0 { // services not counted do not fail the probe, but are named
			failed = "; failed: " + strings.Join(h.Failed, ", ")
		}
		if h.Healthy {
			r.wrote(printf(r.cio.stdout, "healthy%s\n", failed))
			return 0
		}
		down := make([]string, 0, len(h.Down))
		for _, d := range h.Down {
			if d.Service == "" {
				down = append(down, d.Reason)
			} else {
				down = append(down, d.Service+" ("+d.Reason+")")
			}
		}
		what := "not ready"
		if level == api.HealthAlive {
			what = "not alive"
		}
		r.wrote(printf(r.cio.stdout, "%s: %s%s\n", what, strings.Join(down, ", "), failed))
		return exitUnhealthy
	}}
}
