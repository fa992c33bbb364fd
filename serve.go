package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/control"
	"github.com/tendinit/tend/events"
	"github.com/tendinit/tend/jobs"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
	"github.com/tendinit/tend/supervisor"
)

// server is the control API and what it shares with the loop; the zero
// value is "no socket".
type server struct {
	srv    *control.Server
	cancel context.CancelFunc
}

func (s server) close() {
	if s.srv != nil {
		if err := s.srv.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "tend: closing the control socket: %v\n", err)
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
}

// serve opens the control socket when one is configured (--socket, or
// [control] socket in supervisor mode) and fills cfg's Runtime: the reaper
// shared by the loop and the jobs, the jobs, the Controller, the events. The
// socket exists before any child starts, and every child gets TEND_SOCKET.
// Failing to bind a socket that was asked for is fatal; failing to bind the
// default path of supervisor mode is only a warning.
func serve(c *cli.Context, file *config.Config, cfg *supervisor.InitConfig) (server, error) {
	ctl, jobsCfg, explicit := controlSettings(c, file)
	if ctl.Socket == "" {
		return server{}, nil
	}
	supervisor.AdoptOrphans(cfg.Log) // before a job can start
	ctx, cancel := context.WithCancel(context.Background())
	hub := events.NewHub()
	r := supervisor.NewReaper(cfg.Log, cfg.WarnReap, hub.Publish)
	go r.Run(ctx, cfg.SIGCHLD)
	env := spawn.SetEnv(cfg.Env, "TEND_SOCKET", ctl.Socket)
	m := jobs.New(r, jobs.Config{
		MaxRunning: jobsCfg.MaxRunning, MaxQueued: jobsCfg.MaxQueued, Timeout: jobsCfg.Timeout,
		StopGrace: jobsCfg.StopGrace, Keep: jobsCfg.Keep,
		Env: env, Socket: ctl.Socket, Log: cfg.Log, Publish: hub.Publish,
	})
	controller := supervisor.NewController()
	srv, err := control.Serve(control.Config{
		Path: ctl.Socket, Mode: ctl.Mode, Group: ctl.Group, Version: version, Log: cfg.Log,
		Jobs: m, Services: services{controller, r},
		Events: func(n int) (<-chan api.Event, func() bool, func()) {
			s := hub.Subscribe(n)
			return s.C, s.Overflowed, s.Close
		},
	})
	if err != nil {
		if !explicit {
			cfg.Log.Warn("no control API: cannot open the default socket", "err", err)
			cancel()
			return server{}, nil // the loop runs its own reaper
		}
		cancel()
		return server{}, fmt.Errorf("control socket: %w", err)
	}
	cfg.Log.Info("control API listening", "socket", ctl.Socket)
	cfg.Env = env
	cfg.Runtime = supervisor.Runtime{Reaper: r, Jobs: m, Control: controller, Publish: hub.Publish}
	return server{srv: srv, cancel: cancel}, nil
}

// controlSettings is the socket to serve and the [jobs] limits: --socket
// wins over the file's [control] socket; init mode has no socket unless
// --socket is given. explicit is false only for supervisor mode's default.
func controlSettings(c *cli.Context, file *config.Config) (config.Control, config.Jobs, bool) {
	if file == nil && c.String("socket") == "" {
		return config.Control{}, config.Jobs{}, false // plain init mode: nothing to parse
	}
	if file == nil {
		file, _ = config.Parse(nil, "defaults") // every default, no service
		file.Control.Socket, file.Control.SocketSet = "", false
	}
	ctl := file.Control
	explicit := ctl.SocketSet
	if s := c.String("socket"); s != "" {
		ctl.Socket, explicit = s, true
	}
	return ctl, file.Jobs, explicit
}

// services adds the reaper's counters to the Controller for the API.
type services struct {
	*supervisor.Controller
	r *reaper.Reaper
}

func (s services) Reaped() (total, orphans uint64) { return s.r.Reaped(), s.r.Orphans() }
