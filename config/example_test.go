//go:build linux

package config

import (
	"testing"
	"time"
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
