//go:build linux

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// full sets every key of the schema, none to its default.
const full = `
[control]
socket = "/run/tend/ctl.sock"
mode = "0660"
group = "agents"

[shutdown]
grace = "25s"
killed_exit_code = 137

[jobs]
max_running = 8
max_queued = 0
timeout = "30m"
stop_grace = "0"
keep = "15m"

[[service]]
name = "db"
command = ["postgres", "-D", "/var/lib/pg"]

[[service]]   # the one with everything
name = "gateway"
command = ["hermes", "gateway", "run", "--replace"]
dir = "/opt/data"
env = { HOME = "/opt/data", "MODE" = "a=b" }
user = "1000:1000"
restart = "always"
restart_now = [75, 0]
never_restart = [78]
backoff = "500ms"
backoff_max = "1m"
max_restarts = 0
restart_window = "1h"
critical = true
stop_signal = "SIGINT"
stop_timeout = "20s"
after = ["db"]
ready = "exec:curl -fsS 'http://127.0.0.1:8080/a b' \"x\\\"y\""
ready_timeout = "2m"
signals = { SIGHUP = "SIGUSR1", USR2 = "", 28 = 10, "SIGRTMIN+3" = "term" }
log_prefix = true
`

func TestParseFull(t *testing.T) {
	cfg, err := Parse([]byte(full), "full.toml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	want := &Config{
		Control: paged(Control{Socket: "/run/tend/ctl.sock", SocketSet: true, Mode: 0o660, Group: "agents", IdleTimeout: DefaultIdleTimeout,
			MaxConnections: DefaultMaxConnections, MaxConnectionsPerUID: DefaultMaxConnectionsPerUID}),
		Shutdown: Shutdown{Grace: 25 * time.Second, KilledExitCode: 137},
		Jobs:     limited(Jobs{MaxRunning: 8, MaxQueued: 0, Timeout: 30 * time.Minute, StopGrace: 0, Keep: 15 * time.Minute, MaxRecords: DefaultMaxRecords}),
		Defaults: Defaults{Track: TrackAuto},
		Zombies:  Zombies{WarnAt: DefaultZombieWarnAt},
		Services: []Service{
			{Name: "db", Command: []string{"postgres", "-D", "/var/lib/pg"}, Restart: RestartOnFailure,
				Backoff: time.Second, BackoffMax: 30 * time.Second, MaxRestarts: 10, RestartWindow: 10 * time.Minute,
				StopSignal: unix.SIGTERM, StopTimeout: Unset, ReadyTimeout: time.Minute, KillMode: KillUnit, Umask: -1, Line: 18},
			{
				Name:          "gateway",
				Command:       []string{"hermes", "gateway", "run", "--replace"},
				Dir:           "/opt/data",
				Env:           map[string]string{"HOME": "/opt/data", "MODE": "a=b"},
				User:          "1000:1000",
				Restart:       RestartAlways,
				RestartNow:    []int{75, 0},
				NeverRestart:  []int{78},
				Backoff:       500 * time.Millisecond,
				BackoffMax:    time.Minute,
				MaxRestarts:   0,
				RestartWindow: time.Hour,
				Critical:      true,
				StopSignal:    unix.SIGINT,
				StopTimeout:   20 * time.Second,
				After:         []string{"db"},
				Ready:         Ready{Probe: Probe{Exec: []string{"curl", "-fsS", "http://127.0.0.1:8080/a b", `x"y`}}},
				ReadyTimeout:  2 * time.Minute,
				Signals: map[unix.Signal]unix.Signal{
					unix.SIGHUP: unix.SIGUSR1, unix.SIGUSR2: 0, unix.SIGWINCH: unix.SIGUSR1, 35: unix.SIGTERM,
				},
				LogPrefix: true,
				KillMode:  KillUnit,
				Umask:     -1,
				Line:      22,
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(full) =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name, toml string
		want       *Config
	}{
		{"empty file", "", &Config{
			Control:  defaultControl(DefaultSocket, false),
			Shutdown: Shutdown{Grace: 10 * time.Second},
			Jobs:     limited(Jobs{MaxRunning: 64, MaxQueued: 256, StopGrace: 5 * time.Second, Keep: time.Hour, MaxRecords: DefaultMaxRecords}),
			Defaults: Defaults{Track: TrackAuto},
			Zombies:  Zombies{WarnAt: DefaultZombieWarnAt},
		}},
		{"empty tables and no socket", "[control]\nsocket = \"\"\n[shutdown]\n[jobs]\n", &Config{
			Control:  defaultControl("", true),
			Shutdown: Shutdown{Grace: 10 * time.Second},
			Jobs:     limited(Jobs{MaxRunning: 64, MaxQueued: 256, StopGrace: 5 * time.Second, Keep: time.Hour, MaxRecords: DefaultMaxRecords}),
			Defaults: Defaults{Track: TrackAuto},
			Zombies:  Zombies{WarnAt: DefaultZombieWarnAt},
		}},
		{"minimal service", "[[service]]\nname = \"a\"\ncommand = [\"a\"]\n", &Config{
			Control:  defaultControl("/run/tend.sock", false),
			Shutdown: Shutdown{Grace: 10 * time.Second},
			Jobs:     limited(Jobs{MaxRunning: 64, MaxQueued: 256, Timeout: 0, StopGrace: 5 * time.Second, Keep: time.Hour, MaxRecords: DefaultMaxRecords}),
			Defaults: Defaults{Track: TrackAuto},
			Zombies:  Zombies{WarnAt: DefaultZombieWarnAt},
			Services: []Service{{
				Name: "a", Command: []string{"a"}, Restart: RestartOnFailure,
				Backoff: time.Second, BackoffMax: 30 * time.Second, MaxRestarts: 10,
				RestartWindow: 10 * time.Minute, StopSignal: unix.SIGTERM, StopTimeout: Unset,
				Ready: Ready{}, ReadyTimeout: 60 * time.Second, KillMode: KillUnit, Umask: -1, Line: 1,
			}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.toml), "defaults.toml")
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("Parse() =\n%+v\nwant\n%+v", cfg, tt.want)
			}
		})
	}
}

// TestGateway loads the config of an agent container: a critical gateway
// that asks for a restart with 75, gives up with 78 and reloads on its own
// (so SIGHUP is not forwarded to it), and helpers that start after it.
func TestGateway(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "gateway.toml"))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	gw := cfg.Service("gateway")
	if gw == nil {
		t.Fatal(`Service("gateway") = nil`)
	}
	if !reflect.DeepEqual(gw.RestartNow, []int{75}) || !reflect.DeepEqual(gw.NeverRestart, []int{78}) {
		t.Errorf("gateway restart_now, never_restart = %v, %v; want [75], [78]", gw.RestartNow, gw.NeverRestart)
	}
	if sig, ok := gw.Signals[unix.SIGHUP]; !ok || sig != 0 {
		t.Errorf("gateway signals[SIGHUP] = %v, %v; want 0 (not forwarded), true", sig, ok)
	}
	if _, ok := gw.Signals[unix.SIGUSR1]; ok {
		t.Errorf("gateway signals has SIGUSR1; want it absent (default routing)")
	}
	if !gw.Critical || gw.Restart != RestartOnFailure || gw.StopTimeout != 25*time.Second || gw.User != "hermes" {
		t.Errorf("gateway = %+v; want critical, on-failure, stop_timeout 25s, user hermes", gw)
	}
	if want := []string{"curl", "-fsS", "http://127.0.0.1:8642/health"}; !reflect.DeepEqual(gw.Ready.Exec, want) {
		t.Errorf("gateway ready = %q, want %q", gw.Ready.Exec, want)
	}
	if got, want := cfg.StartLevels(), [][]string{{"gateway"}, {"browser", "mcp-files"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("StartLevels() = %v, want %v", got, want)
	}
	if cfg.Control.Mode != 0o660 || cfg.Control.Group != "hermes" || cfg.Shutdown.Grace != 30*time.Second {
		t.Errorf("control, shutdown = %+v, %+v; want mode 0660, group hermes, grace 30s", cfg.Control, cfg.Shutdown)
	}
	if cfg.Service("nope") != nil {
		t.Errorf(`Service("nope") != nil`)
	}
}

func TestStartLevels(t *testing.T) {
	svc := func(name string, after ...string) Service { return Service{Name: name, After: after} }
	tests := []struct {
		name string
		svcs []Service
		want [][]string
	}{
		{"none", nil, nil},
		{"independent", []Service{svc("b"), svc("a")}, [][]string{{"a", "b"}}},
		{"diamond", []Service{svc("d", "b", "c"), svc("c", "a"), svc("b", "a"), svc("a"), svc("e")},
			[][]string{{"a", "e"}, {"b", "c"}, {"d"}}},
		{"longest path decides", []Service{svc("a"), svc("b", "a"), svc("c", "a", "b")},
			[][]string{{"a"}, {"b"}, {"c"}}},
		{"hand-made cycle is still started", []Service{svc("a"), svc("b", "c"), svc("c", "b", "x")},
			[][]string{{"a"}, {"b", "c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Services: tt.svcs}
			if got := c.StartLevels(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StartLevels() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMainTable: [main] sets the command after --'s process keys; it is
// still critical, never restarted, named main; keys that are a service's
// alone are refused.
func TestMainTable(t *testing.T) {
	cfg, err := Parse([]byte("[main]\nuser = \"1000\"\nstop_signal = \"SIGINT\"\nstop_timeout = \"3s\"\n"+
		"ready = \"tcp:127.0.0.1:8080\"\nready_timeout = \"2m\"\nsignals = { SIGHUP = \"SIGUSR1\" }\nlog_prefix = true\nenv = { A = \"b\" }\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := MainService([]string{"gw"}, cfg.Main)
	if m.Name != MainName || !m.Critical || m.Restart != RestartNever || m.User != "1000" || m.StopSignal != unix.SIGINT ||
		m.StopTimeout != 3*time.Second || m.Ready.TCP != "127.0.0.1:8080" || m.ReadyTimeout != 2*time.Minute ||
		m.Signals[unix.SIGHUP] != unix.SIGUSR1 || !m.LogPrefix || m.Env["A"] != "b" || m.Command[0] != "gw" {
		t.Errorf("MainService with [main] = %+v", m)
	}
	for body, want := range map[string]string{
		"[main]\nrestart = \"always\"\n":      "main: restart: unknown key",
		"[main]\nafter = [\"db\"]\n":          "main: after: unknown key",
		"[main]\nready = \"notify\"\n":        "main: ready: [main] takes started, exec:, tcp: or http://",
		"[main]\nstop_signal = \"SIGNOPE\"\n": "main: stop_signal: ",
	} {
		if _, err := Parse([]byte(body), "t.toml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", body, err, want)
		}
	}
}

func TestMainService(t *testing.T) {
	argv := []string{"sh", "-c", "exit 3"}
	got := MainService(argv, nil)
	argv[0] = "changed" // the service keeps its own copy
	want := defaultService()
	want.Name, want.Command, want.Restart, want.Critical = "main", []string{"sh", "-c", "exit 3"}, RestartNever, true
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MainService() = %+v, want %+v", got, want)
	}
	if got.StopSignal != unix.SIGTERM || got.Backoff != time.Second || got.ReadyTimeout != time.Minute {
		t.Errorf("MainService() defaults = %v, %v, %v; want SIGTERM, 1s, 1m", got.StopSignal, got.Backoff, got.ReadyTimeout)
	}
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%s) error = %v, want one naming the path", path, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[jobs]\nmax_running = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || err.Error() != bad+":2:1: jobs: max_running: 0 is less than 1" {
		t.Errorf("Load(%s) error = %v, want one naming the file and the key", bad, err)
	}
}

func TestParseControlLimits(t *testing.T) {
	cfg, err := Parse([]byte("[control]\nidle_timeout = \"30s\"\nmax_connections = 100\nmax_connections_per_uid = 10\n"), "c.toml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	c := cfg.Control
	if c.IdleTimeout != 30*time.Second || c.MaxConnections != 100 || c.MaxConnectionsPerUID != 10 {
		t.Errorf("[control] = idle_timeout %v, max_connections %d, max_connections_per_uid %d; want 30s, 100, 10",
			c.IdleTimeout, c.MaxConnections, c.MaxConnectionsPerUID)
	}
	cfg, err = Parse([]byte("[control]\nreserved_connections = 0\nread_header_timeout = \"3s\"\n"+
		"max_body_bytes = 2048\nmax_url_bytes = 1500\nmax_header_bytes = 4096\n"), "c.toml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	c = cfg.Control
	if c.ReservedConnections != 0 || c.ReadHeaderTimeout != 3*time.Second || c.MaxBodyBytes != 2048 || c.MaxURLBytes != 1500 || c.MaxHeaderBytes != 4096 {
		t.Errorf("[control] = reserved_connections %d, read_header_timeout %v, max_body_bytes %d, max_url_bytes %d, max_header_bytes %d; want 0, 3s, 2048, 1500, 4096",
			c.ReservedConnections, c.ReadHeaderTimeout, c.MaxBodyBytes, c.MaxURLBytes, c.MaxHeaderBytes)
	}
}

// defaultControl is [control] with every default but socket.
func defaultControl(socket string, set bool) Control {
	return paged(Control{Socket: socket, SocketSet: set, Mode: 0o600, IdleTimeout: DefaultIdleTimeout,
		MaxConnections: DefaultMaxConnections, MaxConnectionsPerUID: DefaultMaxConnectionsPerUID})
}

// limited is j with the request and record limits at their defaults.
func limited(j Jobs) Jobs {
	j.MaxLabels, j.MaxLabelKeyBytes, j.MaxLabelValueBytes = DefaultMaxLabels, DefaultMaxLabelKeyBytes, DefaultMaxLabelValueBytes
	j.MaxArgv, j.MaxArgvBytes, j.MaxEnv, j.MaxEnvBytes = DefaultMaxArgv, DefaultMaxArgvBytes, DefaultMaxEnv, DefaultMaxEnvBytes
	j.MaxDirBytes, j.RecordArgvBytes, j.MaxRecordBytes = DefaultMaxDirBytes, DefaultRecordArgvBytes, DefaultMaxRecordBytes
	j.NProc, j.UnitsPids, j.Stop = DefaultNProc, DefaultUnitsPids, DefaultJobsStop
	return j
}

// paged is c with the page, subscriber and parked-fd limits at their defaults.
func paged(c Control) Control {
	c.PageSize, c.MaxPageSize = DefaultPageSize, DefaultMaxPageSize
	c.MaxSubscribers, c.MaxSubscribersPerUID = DefaultMaxSubscribers, DefaultMaxSubscribersPerUID
	c.MaxParkedFDs, c.MaxParkedFDsPerUID = DefaultMaxParkedFDs, DefaultMaxParkedFDsPerUID
	c.ReservedConnections, c.ReadHeaderTimeout = DefaultReservedConnections, DefaultReadHeaderTimeout
	c.MaxBodyBytes, c.MaxURLBytes, c.MaxHeaderBytes = DefaultMaxBodyBytes, DefaultMaxURLBytes, DefaultMaxHeaderBytes
	return c
}

func TestNProcFor(t *testing.T) {
	for _, c := range []struct {
		limit int64
		want  int
	}{{0, 0}, {-1, 0}, {10, 5}, {36, 18}, {40, 8}, {100, 68}, {210, 158}, {1000, 750}, {4096, 3584}, {1 << 20, 1<<20 - 512}} {
		if got := NProcFor(c.limit); got != c.want {
			t.Errorf("NProcFor(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}

func TestJobsNProc(t *testing.T) {
	for _, c := range []struct {
		toml string
		want int
		err  string
	}{
		{"", NProcAuto, ""},
		{`nproc = "auto"`, NProcAuto, ""},
		{`nproc = "off"`, 0, ""},
		{`nproc = 0`, 0, ""},
		{`nproc = 200`, 200, ""},
		{`nproc = -3`, 0, `jobs: nproc: -3 is not "auto", "off" or a number of processes`},
		{`nproc = "many"`, 0, `jobs: nproc: "many" is not "auto", "off" or a number of processes`},
		{`nproc = 1.5`, 0, `jobs: nproc: must be "auto", "off" or an integer, not a float`},
	} {
		f, err := Parse([]byte("[jobs]\n"+c.toml+"\n"), "t.toml")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one containing %q", c.toml, err, c.err)
			}
			continue
		}
		if err != nil || f.Jobs.NProc != c.want {
			t.Errorf("%s: nproc %v (err %v), want %d", c.toml, f, err, c.want)
		}
	}
}

// TestDefaultsAsDocumented pins the defaults that used to live outside this
// table (main.go, supervisor/, control/) to the values README states.
func TestDefaultsAsDocumented(t *testing.T) {
	if DefaultCleanupGrace != 2*time.Second || DefaultJobDir != "/" || DefaultMode != 0o600 || DefaultLogFormat != "text" {
		t.Errorf("cleanup grace %v, job dir %q, socket mode %04o, log format %q: want 2s, /, 0600, text (README)",
			DefaultCleanupGrace, DefaultJobDir, DefaultMode, DefaultLogFormat)
	}
	c, err := Parse(nil, "defaults")
	if err != nil || c.Control.Mode != DefaultMode {
		t.Errorf("Parse(nil): mode %v, %v; want %v", c.Control.Mode, err, DefaultMode)
	}
}

func TestJobsUnitsPids(t *testing.T) {
	for _, c := range []struct {
		toml string
		want int
		err  string
	}{
		{"", UnitsPidsAuto, ""},
		{`units_pids = "auto"`, UnitsPidsAuto, ""},
		{`units_pids = "off"`, 0, ""},
		{`units_pids = 0`, 0, ""},
		{`units_pids = 300`, 300, ""},
		{`units_pids = -3`, 0, `jobs: units_pids: -3 is not "auto", "off" or a number of tasks`},
		{`units_pids = "all"`, 0, `jobs: units_pids: "all" is not "auto", "off" or a number of tasks`},
		{`units_pids = true`, 0, `jobs: units_pids: must be "auto", "off" or an integer, not a bool`},
	} {
		f, err := Parse([]byte("[jobs]\n"+c.toml+"\n"), "t.toml")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one containing %q", c.toml, err, c.err)
			}
			continue
		}
		if err != nil || f.Jobs.UnitsPids != c.want {
			t.Errorf("%s: units_pids %v (err %v), want %d", c.toml, f, err, c.want)
		}
	}
}
