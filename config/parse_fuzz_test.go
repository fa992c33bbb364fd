//go:build linux

package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"

	"github.com/tendinit/tend/signals"
)

// FuzzParseRoundTrip feeds Parse arbitrary files. It must never panic; a refused
// file gets an error and no Config; an accepted file has sane values only
// (every invariant the supervisor relies on), and written back as TOML it
// parses again to the same Config.
func FuzzParseRoundTrip(f *testing.F) {
	for _, path := range []string{"testdata/gateway.toml", "../examples/agent/tend.toml", "../examples/postgres/tend.toml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(full))
	f.Add([]byte(""))
	f.Add([]byte("[control]\nsocket = \"\"\n"))
	f.Add([]byte("[[service]]\nname = \"a\"\ncommand = [\"true\"]\nafter = [\"a\"]\n"))
	f.Add([]byte("service = [{name = \"x\", command = [\"sh\"]}]\n"))
	f.Add([]byte("[[service]]\nname=\"b\"\ncommand=[\"x\"]\nready=\"exec:'a b' \\\"c\\\\\"\"\nsignals={1=\"\",HUP=2}\n"))
	f.Add([]byte("[health]\ninclude=\"all\"\n[[service]]\nname=\"n\"\ncommand=[\"x\"]\nready=\"notify\"\nwatchdog=\"3s\"\n" +
		"[[service.check]]\nprobe=\"tcp:127.0.0.1:1\"\n[[service.check]]\nname=\"e\"\nprobe=\"exec:a 'b c'\"\non_failure=\"ignore\"\nthreshold=2\n"))
	f.Add([]byte("[[service]]\nname=\"p\"\ncommand=[\"x\"]\numask=\"0027\"\nnice=-3\nrlimits={nofile=10,core=\"0:unlimited\"}\nno_new_privs=true\nenv_file=\"/e\"\nenv_file_optional=true\n"))
	f.Add([]byte("[main]\nuser=\"1000:1000\"\nready=\"tcp:127.0.0.1:9\"\nstop_signal=\"INT\"\nsignals={HUP=\"USR1\"}\n"))
	f.Add([]byte("[[service]]\nname=\"a\"\ncommand=[\"a\",\"\\u0000\"]\ndir=\"/\\u0000\"\nenv={A=\"\\u0000\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.toml")
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse refused the file (%v) but returned a Config", err)
			}
			checkProblems(t, err, "fuzz.toml")
			return
		}
		if cfg == nil {
			t.Fatal("Parse accepted the file but returned no Config")
		}
		checkSane(t, cfg)
		again, err := Parse(encode(t, cfg), "again.toml")
		if err != nil {
			t.Fatalf("the accepted Config written back is refused: %v\nfile:\n%s", err, encode(t, cfg))
		}
		if a, b := normalize(cfg), normalize(again); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the Config:\nfirst  %+v\nsecond %+v", a, b)
		}
	})
}

// checkProblems fails unless err is a *multierror.Error of Problems of
// source, each with a message on one line, in file order, and printed one
// per line under a count.
func checkProblems(t *testing.T, err error, source string) {
	t.Helper()
	var merr *multierror.Error
	if !errors.As(err, &merr) || len(merr.Errors) == 0 {
		t.Fatalf("Parse error %#v is not a *multierror.Error with errors", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if n := len(merr.Errors); n > 1 {
		if want := fmt.Sprintf("%d errors in %s:", n, source); lines[0] != want {
			t.Errorf("Parse error header = %q, want %q", lines[0], want)
		}
		lines = lines[1:]
	}
	if len(lines) != len(merr.Errors) {
		t.Fatalf("Parse error has %d lines for %d problems:\n%v", len(lines), len(merr.Errors), err)
	}
	var last *Problem
	for i, e := range merr.Errors {
		p, ok := e.(*Problem)
		if !ok || p.File != source || p.Err == nil || p.Err.Error() == "" || lines[i] != p.Error() {
			t.Fatalf("problem %d = %#v (%q), want a *Problem of %s printed on line %d", i, e, e, source, i)
		}
		// Only the decoder may not know where its own error is.
		if at := fmt.Sprintf("%s:%d:%d: ", source, p.Line, p.Col); !strings.HasPrefix(p.Error(), at) &&
			(p.Line != 0 || !errors.As(p, new(toml.ParseError))) {
			t.Fatalf("problem %d = %q, want it to start with %q", i, p, at)
		}
		if last != nil && cmpPos(pos{last.Line, last.Col}, pos{p.Line, p.Col}) > 0 {
			t.Errorf("problem %q comes before %q, out of file order", last, p)
		}
		last = p
	}
}

// checkSane fails unless every value of cfg is one the supervisor can use.
func checkSane(t *testing.T, cfg *Config) {
	t.Helper()
	c := cfg.Control
	if c.Mode&^0o777 != 0 {
		t.Errorf("control.mode %o has bits outside 0777", c.Mode)
	}
	if c.Socket != "" && (c.Socket[0] != '/' || len(c.Socket) > maxSocketPath) {
		t.Errorf("control.socket %q is not an absolute path that bind(2) takes", c.Socket)
	}
	if strings.Contains(c.Socket+c.Group, "\x00") {
		t.Errorf("control socket %q or group %q contains a NUL byte", c.Socket, c.Group)
	}
	if c.Group != "" && c.Mode&0o020 == 0 {
		t.Errorf("control.group %q with mode %o: members could not connect", c.Group, c.Mode)
	}
	if cfg.Shutdown.Grace <= 0 {
		t.Errorf("shutdown.grace %v, want > 0", cfg.Shutdown.Grace)
	}
	if k := cfg.Shutdown.KilledExitCode; k < 0 || k > 255 {
		t.Errorf("shutdown.killed_exit_code %d, want 0-255", k)
	}
	j := cfg.Jobs
	if j.MaxRunning < 1 || j.MaxQueued < 0 || j.Timeout < 0 || j.StopGrace < 0 || j.Keep <= 0 {
		t.Errorf("jobs %+v out of range", j)
	}
	names := map[string]bool{}
	for _, s := range cfg.Services {
		if !isValidName(s.Name) || names[s.Name] {
			t.Errorf("service name %q invalid or duplicate", s.Name)
		}
		names[s.Name] = true
		if len(s.Command) == 0 || s.Command[0] == "" {
			t.Errorf("service %q: command %q", s.Name, s.Command)
		}
		switch s.Restart {
		case RestartAlways, RestartOnFailure, RestartNever:
		default:
			t.Errorf("service %q: restart %q", s.Name, s.Restart)
		}
		if s.Backoff <= 0 || s.BackoffMax < s.Backoff || s.RestartWindow <= 0 || s.ReadyTimeout <= 0 ||
			(s.StopTimeout < 0 && s.StopTimeout != Unset) || s.MaxRestarts < 0 {
			t.Errorf("service %q: durations or counts out of range: %+v", s.Name, s)
		}
		for _, code := range append(slices.Clone(s.RestartNow), s.NeverRestart...) {
			if code < 0 || code > 255 {
				t.Errorf("service %q: exit code %d", s.Name, code)
			}
		}
		for _, code := range s.RestartNow {
			if slices.Contains(s.NeverRestart, code) {
				t.Errorf("service %q: code %d both restarts and never restarts", s.Name, code)
			}
		}
		if s.StopSignal < 1 || s.StopSignal > signals.RTMax {
			t.Errorf("service %q: stop_signal %d", s.Name, s.StopSignal)
		}
		for from, to := range s.Signals {
			if !signals.Forwardable(from) || to < 0 || to > signals.RTMax {
				t.Errorf("service %q: signal route %d -> %d", s.Name, from, to)
			}
		}
		for k, v := range s.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
				t.Errorf("service %q: env %q = %q", s.Name, k, v)
			}
		}
		// execve(2), chdir(2) and the rest take no NUL in a string.
		strs := append(append([]string{s.Dir, s.User}, s.Command...), s.Ready.Exec...)
		if i := slices.IndexFunc(strs, func(v string) bool { return strings.Contains(v, "\x00") }); i >= 0 {
			t.Errorf("service %q: %q contains a NUL byte", s.Name, strs[i])
		}
		if s.Ready.Exec != nil && len(s.Ready.Exec) == 0 {
			t.Errorf("service %q: ready exec with no argv", s.Name)
		}
		if s.User != "" && checkUser(s.User) != nil {
			t.Errorf("service %q: user %q", s.Name, s.User)
		}
	}
	for _, s := range cfg.Services {
		for _, dep := range s.After {
			if !names[dep] || dep == s.Name {
				t.Errorf("service %q: after %q is unknown or itself", s.Name, dep)
			}
		}
	}
	started := 0
	for _, level := range cfg.StartLevels() {
		started += len(level)
	}
	if started != len(cfg.Services) {
		t.Errorf("StartLevels covers %d services of %d (a cycle slipped through)", started, len(cfg.Services))
	}
}

// encode writes cfg as a TOML file Parse reads back to the same Config.
func encode(t *testing.T, cfg *Config) []byte {
	t.Helper()
	c, j := cfg.Control, cfg.Jobs
	doc := map[string]any{
		"control": map[string]any{"socket": c.Socket, "mode": "0" + strconv.FormatUint(uint64(c.Mode), 8), "group": c.Group,
			"idle_timeout": c.IdleTimeout.String(), "max_connections": c.MaxConnections, "max_connections_per_uid": c.MaxConnectionsPerUID,
			"page_size": c.PageSize, "max_page_size": c.MaxPageSize,
			"max_subscribers": c.MaxSubscribers, "max_subscribers_per_uid": c.MaxSubscribersPerUID,
			"max_parked_fds": c.MaxParkedFDs, "max_parked_fds_per_uid": c.MaxParkedFDsPerUID,
			"reserved_connections": c.ReservedConnections, "read_header_timeout": c.ReadHeaderTimeout.String(),
			"max_body_bytes": c.MaxBodyBytes, "max_url_bytes": c.MaxURLBytes, "max_header_bytes": c.MaxHeaderBytes,
			"reload_on": map[bool]string{true: strconv.Itoa(int(c.ReloadOn))}[c.ReloadOn != 0]},
		"shutdown": map[string]any{"grace": cfg.Shutdown.Grace.String(), "killed_exit_code": cfg.Shutdown.KilledExitCode},
		"defaults": map[string]any{"track": string(cfg.Defaults.Track)},
		"health":   map[string]any{"include": map[bool]string{true: "all", false: "critical"}[cfg.Health.IncludeAll]},
		"zombies": map[string]any{"scan": cfg.Zombies.Scan.String(), "warn_at": cfg.Zombies.WarnAt,
			"health_max": cfg.Zombies.HealthMax},
		"jobs": map[string]any{
			"max_running": cfg.Jobs.MaxRunning, "max_queued": cfg.Jobs.MaxQueued,
			"timeout": cfg.Jobs.Timeout.String(), "stop_grace": cfg.Jobs.StopGrace.String(), "keep": cfg.Jobs.Keep.String(),
			"max_records": cfg.Jobs.MaxRecords,
			"max_labels":  j.MaxLabels, "max_label_key_bytes": j.MaxLabelKeyBytes, "max_label_value_bytes": j.MaxLabelValueBytes,
			"max_argv": j.MaxArgv, "max_argv_bytes": j.MaxArgvBytes, "max_env": j.MaxEnv, "max_env_bytes": j.MaxEnvBytes,
			"max_dir_bytes": j.MaxDirBytes, "record_argv_bytes": j.RecordArgvBytes, "max_record_bytes": j.MaxRecordBytes,
			"nproc": any(j.NProc), "units_pids": any(j.UnitsPids), "stop": string(j.Stop),
		},
	}
	if j.NProc == NProcAuto {
		doc["jobs"].(map[string]any)["nproc"] = "auto"
	}
	if j.UnitsPids == UnitsPidsAuto {
		doc["jobs"].(map[string]any)["units_pids"] = "auto"
	}
	var svcs []map[string]any
	for _, s := range cfg.Services {
		m := serviceDoc(s)
		svcs = append(svcs, m)
	}
	if svcs != nil {
		doc["service"] = svcs
	}
	if cfg.Main != nil {
		all, m := serviceDoc(*cfg.Main), map[string]any{}
		for _, k := range []string{"user", "stop_signal", "stop_timeout", "ready", "ready_timeout", "signals", "log_prefix", "env"} {
			if v, ok := all[k]; ok {
				m[k] = v
			}
		}
		doc["main"] = m
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		t.Fatalf("encode the accepted Config %+v: %v", cfg, err)
	}
	return b.Bytes()
}

// serviceDoc is s as the keys of its [[service]] table.
func serviceDoc(s Service) map[string]any {
	m := map[string]any{
		"name": s.Name, "command": s.Command, "restart": string(s.Restart),
		"restart_now": ints(s.RestartNow), "never_restart": ints(s.NeverRestart),
		"backoff": s.Backoff.String(), "backoff_max": s.BackoffMax.String(),
		"max_restarts": s.MaxRestarts, "restart_window": s.RestartWindow.String(),
		"critical": s.Critical, "stop_signal": int64(s.StopSignal),
		"ready_timeout": s.ReadyTimeout.String(), "log_prefix": s.LogPrefix, "kill_mode": string(s.KillMode),
	}
	if s.Track != "" {
		m["track"] = string(s.Track)
	}
	if s.StopTimeout != Unset {
		m["stop_timeout"] = s.StopTimeout.String()
	}
	if s.Dir != "" {
		m["dir"] = s.Dir
	}
	if s.Env != nil {
		m["env"] = s.Env
	}
	if s.User != "" {
		m["user"] = s.User
	}
	if s.After != nil {
		m["after"] = s.After
	}
	switch {
	case s.Ready.Probe.Set():
		m["ready"] = probeText(s.Ready.Probe)
	case s.Ready.FD > 0:
		m["ready"] = "fd:" + strconv.Itoa(s.Ready.FD)
	case s.Ready.Notify:
		m["ready"] = "notify"
	}
	if s.Oneshot {
		m["type"] = "oneshot"
	}
	if s.Umask >= 0 {
		m["umask"] = "0" + strconv.FormatUint(uint64(s.Umask), 8)
	}
	if s.NiceSet {
		m["nice"] = s.Nice
	}
	if len(s.Rlimits) > 0 {
		rl := map[string]any{}
		text := func(v uint64) string {
			if v == Unlimited {
				return "unlimited"
			}
			return strconv.FormatUint(v, 10)
		}
		for _, r := range s.Rlimits {
			rl[r.Name] = text(r.Cur) + ":" + text(r.Max)
		}
		m["rlimits"] = rl
	}
	if s.NoNewPrivs {
		m["no_new_privs"] = true
	}
	if s.EnvFile != "" {
		m["env_file"], m["env_file_optional"] = s.EnvFile, s.EnvFileOptional
	}
	if s.Watchdog > 0 {
		m["watchdog"] = s.Watchdog.String()
	}
	var checks []map[string]any
	for _, c := range s.Checks {
		checks = append(checks, map[string]any{"name": c.Name, "probe": probeText(c.Probe), "period": c.Period.String(),
			"timeout": c.Timeout.String(), "threshold": c.Threshold, "on_failure": string(c.OnFailure)})
	}
	if checks != nil {
		m["check"] = checks
	}
	if s.Signals != nil {
		routes := map[string]any{}
		for from, to := range s.Signals {
			if to == 0 {
				routes[strconv.Itoa(int(from))] = ""
			} else {
				routes[strconv.Itoa(int(from))] = int64(to)
			}
		}
		m["signals"] = routes
	}
	return m
}

func ints(codes []int) []int64 {
	if codes == nil {
		return []int64{}
	}
	out := make([]int64, len(codes))
	for i, c := range codes {
		out[i] = int64(c)
	}
	return out
}

// probeText is p as the config spells it, an exec probe's words quoted.
func probeText(p Probe) string {
	if p.Exec != nil {
		return "exec:" + shellQuote(p.Exec)
	}
	return p.String()
}

// shellQuote quotes argv for splitArgs: each word in single quotes.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// normalize drops what a round trip may change without changing meaning:
// lines, whether the socket key was written, nil versus empty code lists.
func normalize(cfg *Config) Config {
	out := *cfg
	out.Control.SocketSet = false
	out.Services = slices.Clone(cfg.Services)
	for i := range out.Services {
		s := &out.Services[i]
		s.Line = 0
		if len(s.RestartNow) == 0 {
			s.RestartNow = nil
		}
		if len(s.NeverRestart) == 0 {
			s.NeverRestart = nil
		}
	}
	if cfg.Main != nil {
		m := *cfg.Main
		m.Line = 0
		out.Main = &m
	}
	return out
}
