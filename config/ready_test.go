//go:build linux

package config

import (
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseReady: every dialect read, every bad one refused naming what
// is wrong; a network probe only of the container itself.
func TestParseReady(t *testing.T) {
	ownAddrs = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)}}, nil
	}
	t.Cleanup(func() { ownAddrs = net.InterfaceAddrs })
	for _, tc := range []struct {
		in   string
		want Ready
		err  string // "" = accepted
	}{
		{"started", Ready{}, ""},
		{"exec:true", Ready{Probe: Probe{Exec: []string{"true"}}}, ""},
		{"tcp:127.0.0.1:5432", Ready{Probe: Probe{TCP: "127.0.0.1:5432"}}, ""},
		{"tcp:localhost:80", Ready{Probe: Probe{TCP: "localhost:80"}}, ""},
		{"tcp:[::1]:80", Ready{Probe: Probe{TCP: "[::1]:80"}}, ""},
		{"tcp:10.1.2.3:8080", Ready{Probe: Probe{TCP: "10.1.2.3:8080"}}, ""},
		{"http://127.0.0.1:8080/healthz", Ready{Probe: Probe{HTTP: "http://127.0.0.1:8080/healthz"}}, ""},
		{"http://localhost/", Ready{Probe: Probe{HTTP: "http://localhost/"}}, ""},
		{"http://10.1.2.3:81/a?b=c", Ready{Probe: Probe{HTTP: "http://10.1.2.3:81/a?b=c"}}, ""},
		{"tcp:8.8.8.8:53", Ready{}, "not loopback nor an address of this container"},
		{"tcp:example.com:80", Ready{}, "an IP address or localhost"},
		{"tcp:127.0.0.1", Ready{}, "is not HOST:PORT"},
		{"tcp:127.0.0.1:0", Ready{}, `port "0" is not 1-65535`},
		{"tcp:127.0.0.1:70000", Ready{}, "is not 1-65535"},
		{"tcp:127.0.0.1:http", Ready{}, "is not 1-65535"},
		{"http://10.9.9.9/", Ready{}, "not loopback nor an address"},
		{"http://u:p@127.0.0.1/", Ready{}, "no user info"},
		{"http://127.0.0.1:99999/", Ready{}, "1-65535"},
		{"https://127.0.0.1/", Ready{}, `is not "started", "notify", "fd:N", "exec:CMD", "tcp:HOST:PORT" or "http://HOST:PORT/PATH"`},
		{"ready", Ready{}, "is not \"started\""},
		{"notify", Ready{Notify: true}, ""},
		{"fd:3", Ready{FD: 3}, ""},
		{"fd:255", Ready{FD: 255}, ""},
		{"fd:2", Ready{}, `"2" is not a number 3-255`},
		{"fd:256", Ready{}, "3-255"},
		{"fd:x", Ready{}, "3-255"},
	} {
		got, err := parseReady(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseReady(%q) = %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseReady(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (got.TCP != tc.want.TCP || got.HTTP != tc.want.HTTP || got.FD != tc.want.FD || got.Notify != tc.want.Notify || len(got.Exec) != len(tc.want.Exec)):
			t.Errorf("parseReady(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if tc.err == "" && got.Polled() != (tc.in != "started") {
			t.Errorf("parseReady(%q).Polled() = %v", tc.in, got.Polled())
		}
	}
}

// TestParseChecks: [[service.check]] with every default, every key, and
// every bad value refused naming the check's key; watchdog only with
// ready = "notify"; [health] include.
func TestParseChecks(t *testing.T) {
	cfg, err := Parse([]byte(`
[health]
include = "all"
[[service]]
name = "web"
command = ["nginx"]
ready = "notify"
watchdog = "30s"
[[service.check]]
probe = "http://127.0.0.1:8080/healthz"
[[service.check]]
name = "db"
probe = "tcp:127.0.0.1:5432"
period = "2s"
timeout = "500ms"
threshold = 1
on_failure = "ignore"
[[service.check]]
probe = "exec:pg_isready -q"
on_failure = "stop"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	want := []Check{
		{Name: "check-1", Probe: Probe{HTTP: "http://127.0.0.1:8080/healthz"}, Period: DefaultCheckPeriod, Timeout: DefaultCheckTimeout, Threshold: DefaultCheckThreshold, OnFailure: OnFailureRestart},
		{Name: "db", Probe: Probe{TCP: "127.0.0.1:5432"}, Period: 2 * time.Second, Timeout: 500 * time.Millisecond, Threshold: 1, OnFailure: OnFailureIgnore},
		{Name: "check-3", Probe: Probe{Exec: []string{"pg_isready", "-q"}}, Period: DefaultCheckPeriod, Timeout: DefaultCheckTimeout, Threshold: DefaultCheckThreshold, OnFailure: OnFailureStop},
	}
	if !reflect.DeepEqual(s.Checks, want) || s.Watchdog != 30*time.Second || !s.Ready.Notify || !cfg.Health.IncludeAll {
		t.Errorf("got checks %+v watchdog %v ready %+v health %+v", s.Checks, s.Watchdog, s.Ready, cfg.Health)
	}
	if got := want[2].Probe.String(); got != "exec:pg_isready -q" {
		t.Errorf("Probe.String() = %q", got)
	}

	for _, tc := range []struct{ body, want string }{
		{`[[service.check]]
period = "1s"`, `service "s": check[0]: probe: missing`},
		{`[[service.check]]
probe = "started"`, `probe: "started" is not "exec:CMD", "tcp:HOST:PORT" or "http://HOST:PORT/PATH"`},
		{`[[service.check]]
probe = "tcp:8.8.8.8:53"`, "not loopback nor an address of this container"},
		{`[[service.check]]
probe = "tcp:127.0.0.1:1"
period = "0"`, "period: must be more than 0"},
		{`[[service.check]]
probe = "tcp:127.0.0.1:1"
timeout = "-1s"`, "timeout: negative duration"},
		{`[[service.check]]
probe = "tcp:127.0.0.1:1"
threshold = 0`, "threshold: "},
		{`[[service.check]]
probe = "tcp:127.0.0.1:1"
on_failure = "panic"`, `on_failure: "panic" is not one of restart, stop, ignore`},
		{`[[service.check]]
probe = "tcp:127.0.0.1:1"
intervall = "1s"`, "intervall: unknown key"},
		{`[[service.check]]
name = "a b"
probe = "tcp:127.0.0.1:1"`, `name: "a b" is not made of letters`},
		{`[[service.check]]
name = "x"
probe = "tcp:127.0.0.1:1"
[[service.check]]
name = "x"
probe = "tcp:127.0.0.1:2"`, `name: "x" is already the name of another check`},
		{`watchdog = "10s"`, `watchdog: needs ready = "notify"`},
		{`ready = "notify"
watchdog = "0"`, "watchdog: must be more than 0"},
		{`check = 3`, "check: "},
	} {
		src := "[[service]]\nname = \"s\"\ncommand = [\"x\"]\n" + tc.body + "\n"
		if _, err := Parse([]byte(src), "t.toml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n: %v; want an error with %q", tc.body, err, tc.want)
		}
	}
	if _, err := Parse([]byte("[health]\ninclude = \"some\"\n"), "t.toml"); err == nil || !strings.Contains(err.Error(), `health: include: "some" is not "critical" or "all"`) {
		t.Errorf("[health] include = \"some\": %v", err)
	}
}

// TestParseJobsStop: [jobs] stop takes first, with_main (the default) and
// after_main, and refuses the rest naming them.
func TestParseJobsStop(t *testing.T) {
	for in, want := range map[string]JobsStop{"": JobsStopWithMain, `stop = "first"`: JobsStopFirst,
		`stop = "with_main"`: JobsStopWithMain, `stop = "after_main"`: JobsStopAfterMain} {
		cfg, err := Parse([]byte("[jobs]\n"+in+"\n"), "t.toml")
		if err != nil || cfg.Jobs.Stop != want {
			t.Errorf("[jobs] %s: %+v, %v; want %s", in, cfg, err, want)
		}
	}
	if _, err := Parse([]byte("[jobs]\nstop = \"later\"\n"), "t.toml"); err == nil ||
		!strings.Contains(err.Error(), `jobs: stop: "later" is not one of first, with_main, after_main`) {
		t.Errorf(`stop = "later": %v`, err)
	}
}

// TestParseOneshot: type = "oneshot" is read; what cannot go with it is
// refused naming the key.
func TestParseOneshot(t *testing.T) {
	cfg, err := Parse([]byte("[[service]]\nname = \"m\"\ncommand = [\"x\"]\ntype = \"oneshot\"\n[[service]]\nname = \"s\"\ncommand = [\"x\"]\ntype = \"simple\"\n"), "t.toml")
	if err != nil || !cfg.Services[0].Oneshot || cfg.Services[1].Oneshot {
		t.Fatalf("%+v, %v", cfg, err)
	}
	for body, want := range map[string]string{
		`ready = "exec:true"`:                      "ready: a oneshot is ready when it exits 0: no ready",
		"[[service.check]]\nprobe = \"exec:true\"": "check: a oneshot is ready when it exits 0: no check",
		`restart = "always"`:                       `restart: "always" would run a oneshot forever`,
		"ready = \"notify\"\nwatchdog = \"1s\"":    "watchdog: a oneshot is ready when it exits 0: no watchdog",
	} {
		src := "[[service]]\nname = \"m\"\ncommand = [\"x\"]\ntype = \"oneshot\"\n" + body + "\n"
		if _, err := Parse([]byte(src), "t.toml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", body, err, want)
		}
	}
	if _, err := Parse([]byte("[[service]]\nname = \"m\"\ncommand = [\"x\"]\ntype = \"forking\"\n"), "t.toml"); err == nil ||
		!strings.Contains(err.Error(), `type: "forking" is not simple or oneshot`) {
		t.Errorf("type forking: %v", err)
	}
}
