//go:build linux

package config

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAgentExample keeps examples/agent/tend.toml valid and as documented.
func TestAgentExample(t *testing.T) {
	c, err := Load("../examples/agent/tend.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	gw := c.Service("gateway")
	if gw == nil || !gw.Critical || gw.RestartNow[0] != 75 || gw.NeverRestart[0] != 78 {
		t.Fatalf("gateway = %+v, want critical with restart_now [75] and never_restart [78]", gw)
	}
	if v, ok := gw.Signals[1]; !ok || v != 0 {
		t.Errorf("gateway SIGHUP routing = %v, %v; want explicitly not forwarded", v, ok)
	}
	if c.Shutdown.Grace != time.Minute || c.Control.Mode != 0o660 {
		t.Errorf("grace %v mode %v, want 1m and 0660", c.Shutdown.Grace, c.Control.Mode)
	}
	if got := c.StartLevels(); len(got) != 2 || got[0][0] != "browser" || got[1][0] != "gateway" {
		t.Errorf("StartLevels() = %v, want [[browser] [gateway]]", got)
	}
}

// TestPostgresExample keeps examples/postgres/tend.toml valid and as its
// README says: a fast shutdown on stop, ready when pg_isready says so.
func TestPostgresExample(t *testing.T) {
	c, err := Load("../examples/postgres/tend.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	pg := c.Service("postgres")
	if pg == nil || len(c.Services) != 1 {
		t.Fatalf("services = %+v, want one, postgres", c.Services)
	}
	wantCmd := []string{"/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/data", "-k", "/tmp",
		"-p", "5432", "-c", "listen_addresses=127.0.0.1"}
	wantReady := []string{"/usr/lib/postgresql/15/bin/pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q", "-t", "2"}
	if !slices.Equal(pg.Command, wantCmd) || !slices.Equal(pg.Ready.Exec, wantReady) {
		t.Errorf("postgres command, ready = %q, %q; want %q, %q", pg.Command, pg.Ready.Exec, wantCmd, wantReady)
	}
	if pg.StopSignal != unix.SIGINT || pg.User != "postgres" || !pg.Critical || pg.Restart != RestartOnFailure {
		t.Errorf("postgres = %+v, want stop_signal SIGINT (fast shutdown), user postgres, critical, on-failure", pg)
	}
	if sig, ok := pg.Signals[unix.SIGHUP]; !ok || sig != unix.SIGHUP || !pg.LogPrefix {
		t.Errorf("postgres SIGHUP routing = %v, %v, log_prefix %v; want SIGHUP forwarded (reload) and prefixed logs", sig, ok, pg.LogPrefix)
	}
	if c.Shutdown.Grace != time.Minute || c.Control.Socket != DefaultSocket || pg.ReadyTimeout != 5*time.Minute {
		t.Errorf("grace %v, socket %q, ready_timeout %v; want 1m, %s, 5m", c.Shutdown.Grace, c.Control.Socket, pg.ReadyTimeout, DefaultSocket)
	}
}
