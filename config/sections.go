//go:build linux

package config

import (
	"fmt"

	"github.com/tendinit/tend/signals"
	"golang.org/x/sys/unix"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxSocketPath is the longest path bind(2) takes: sun_path is 108 bytes
// with the terminating NUL (unix(7)).
const maxSocketPath = 107

// maxFDsPerRequest is how many fds one request may pass (stdin, stdout,
// stderr): a parked-fd limit below it would refuse every passing request.
const maxFDsPerRequest = 3

// minRequestBytes is the least of [control] max_body_bytes, max_url_bytes
// and max_header_bytes: tend's own clients send heads and bodies of a few
// hundred bytes, which a smaller limit would refuse.
const minRequestBytes = 1024

// minRecordBytes is the least [jobs] max_record_bytes: a few of the
// largest records the request limits allow by default.
const minRecordBytes = 64 << 10

// atMost reports key's value n over the limit of key limitKey.
func (t *table) atMost(key string, n int, limitKey string, limit int) {
	if n > limit {
		t.errorf(key, "%d is more than %s (%d)", n, limitKey, limit)
	}
}

// control reads [control].
func (d *decoder) control(t *table) Control {
	c := Control{Socket: DefaultSocket, Mode: DefaultMode}
	if s, ok := t.str("socket"); ok {
		c.Socket, c.SocketSet = s, true
		switch {
		case s == "": // no socket
		case !filepath.IsAbs(s):
			t.errorf("socket", "%q is not an absolute path", s)
		case len(s) > maxSocketPath:
			t.errorf("socket", "%q is longer than %d bytes, the limit of a unix socket path", s, maxSocketPath)
		}
	} else if _, present := t.m["socket"]; present {
		c.SocketSet = true // of the wrong type: already reported
	}
	if s, ok := t.str("mode"); ok {
		// A string, not a TOML integer: mode = 660 would silently be decimal.
		m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
		switch {
		case err != nil:
			t.errorf("mode", "%q is not an octal file mode such as \"0660\"", s)
		case m&^0o777 != 0:
			t.errorf("mode", "%q has bits outside 0777", s)
		default:
			c.Mode = os.FileMode(m)
		}
	}
	c.IdleTimeout = t.duration("idle_timeout", DefaultIdleTimeout, true)
	c.MaxConnections = t.integer("max_connections", DefaultMaxConnections, 1)
	c.MaxConnectionsPerUID = t.integer("max_connections_per_uid", DefaultMaxConnectionsPerUID, 1)
	c.ReservedConnections = t.integer("reserved_connections", DefaultReservedConnections, 0)
	c.ReadHeaderTimeout = t.duration("read_header_timeout", DefaultReadHeaderTimeout, true)
	c.MaxBodyBytes = t.integer("max_body_bytes", DefaultMaxBodyBytes, minRequestBytes)
	c.MaxURLBytes = t.integer("max_url_bytes", DefaultMaxURLBytes, minRequestBytes)
	c.MaxHeaderBytes = t.integer("max_header_bytes", DefaultMaxHeaderBytes, minRequestBytes)
	c.Group, _ = t.str("group")
	if v, ok := t.str("reload_on"); ok && v != "" {
		sig, err := signals.Parse(v)
		switch {
		case err != nil:
			t.errorf("reload_on", "%w", err)
		case sig == unix.SIGTERM || sig == unix.SIGINT || !signals.Forwardable(sig):
			t.errorf("reload_on", "%s cannot be the reload signal: want one tend would forward, such as SIGHUP", signals.Name(sig))
		default:
			c.ReloadOn = sig
		}
	}
	c.PageSize = t.integer("page_size", DefaultPageSize, 1)
	c.MaxPageSize = t.integer("max_page_size", DefaultMaxPageSize, 1)
	c.MaxSubscribers = t.integer("max_subscribers", DefaultMaxSubscribers, 1)
	c.MaxSubscribersPerUID = t.integer("max_subscribers_per_uid", DefaultMaxSubscribersPerUID, 1)
	c.MaxParkedFDs = t.integer("max_parked_fds", DefaultMaxParkedFDs, maxFDsPerRequest)
	c.MaxParkedFDsPerUID = t.integer("max_parked_fds_per_uid", DefaultMaxParkedFDsPerUID, maxFDsPerRequest)
	t.atMost("page_size", c.PageSize, "max_page_size", c.MaxPageSize)
	t.atMost("max_subscribers_per_uid", c.MaxSubscribersPerUID, "max_subscribers", c.MaxSubscribers)
	t.atMost("max_parked_fds_per_uid", c.MaxParkedFDsPerUID, "max_parked_fds", c.MaxParkedFDs)
	// connect(2) on a unix socket needs write permission on it (unix(7)), so
	// a group without it could never connect: say so now, not as EACCES later.
	if c.Group != "" && c.Mode&0o020 == 0 {
		t.errorf("group", "members of %q cannot connect with mode %04o: connecting needs group write (use \"0660\")", c.Group, c.Mode)
	}
	t.unknown()
	return c
}

// CheckKilledExitCode validates [shutdown] killed_exit_code (and its flag,
// --killed-exit-code).
func CheckKilledExitCode(n int) error {
	if n < 0 || n > 255 {
		return fmt.Errorf("%d is not an exit code: want 1-255 (137 is SIGKILL's 128+9), or 0 for the code of a clean stop", n)
	}
	return nil
}

// shutdown reads [shutdown].
func (d *decoder) shutdown(t *table) Shutdown {
	s := Shutdown{Grace: DefaultGrace}
	if v, ok := t.str("grace"); ok && strings.TrimSpace(v) != "" {
		if d, err := time.ParseDuration(v); err == nil && d == 0 {
			// 0 would mean "kill at once" to some and "never" to others.
			t.errorf("grace", "\"0\" is not a budget: give your runtime's stop timeout, e.g. \"30s\" (tend kills what is left when it ends)")
			return s
		}
	}
	s.Grace = t.duration("grace", DefaultGrace, true)
	s.KilledExitCode = t.integer("killed_exit_code", DefaultKilledExitCode, 0)
	if err := CheckKilledExitCode(s.KilledExitCode); err != nil {
		t.errorf("killed_exit_code", "%v", err)
		s.KilledExitCode = DefaultKilledExitCode
	}
	t.unknown()
	return s
}

// jobs reads [jobs].
func (d *decoder) jobs(t *table) Jobs {
	j := Jobs{
		MaxRunning: t.integer("max_running", DefaultMaxRunning, 1),
		MaxQueued:  t.integer("max_queued", DefaultMaxQueued, 0),
		Timeout:    t.duration("timeout", 0, false),
		StopGrace:  t.duration("stop_grace", DefaultJobStopGrace, false),
		Keep:       t.duration("keep", DefaultKeep, true),
		MaxRecords: t.integer("max_records", DefaultMaxRecords, 1),

		MaxLabels:          t.integer("max_labels", DefaultMaxLabels, 0),
		MaxLabelKeyBytes:   t.integer("max_label_key_bytes", DefaultMaxLabelKeyBytes, 1),
		MaxLabelValueBytes: t.integer("max_label_value_bytes", DefaultMaxLabelValueBytes, 0),
		MaxArgv:            t.integer("max_argv", DefaultMaxArgv, 1),
		MaxArgvBytes:       t.integer("max_argv_bytes", DefaultMaxArgvBytes, 1),
		MaxEnv:             t.integer("max_env", DefaultMaxEnv, 0),
		MaxEnvBytes:        t.integer("max_env_bytes", DefaultMaxEnvBytes, 0),
		MaxDirBytes:        t.integer("max_dir_bytes", DefaultMaxDirBytes, 1),
		RecordArgvBytes:    t.integer("record_argv_bytes", DefaultRecordArgvBytes, 1),
		MaxRecordBytes:     t.integer("max_record_bytes", DefaultMaxRecordBytes, minRecordBytes),
	}
	t.atMost("record_argv_bytes", j.RecordArgvBytes, "max_argv_bytes", j.MaxArgvBytes)
	j.NProc = t.autoCount("nproc", DefaultNProc, "processes")
	j.UnitsPids = t.autoCount("units_pids", DefaultUnitsPids, "tasks")
	j.Stop = DefaultJobsStop
	if v, ok := t.str("stop"); ok {
		if st, err := ParseJobsStop(v); err != nil {
			t.errorf("stop", "%w", err)
		} else {
			j.Stop = st
		}
	}
	t.unknown()
	return j
}

// defaults reads [defaults].
func (d *decoder) defaults(t *table) Defaults {
	def := Defaults{Track: TrackAuto}
	if v, ok := t.str("track"); ok {
		tr, err := ParseTrack(v)
		if err != nil || tr == "" {
			t.errorf("track", "%q is not one of auto, cgroup, subreaper, group", v)
		} else {
			def.Track = tr
		}
	}
	t.unknown()
	return def
}

// zombies reads [zombies].
func (d *decoder) zombies(t *table) Zombies {
	z := Zombies{
		Scan:      t.duration("scan", 0, false),
		WarnAt:    t.integer("warn_at", DefaultZombieWarnAt, 1),
		HealthMax: t.integer("health_max", 0, 0),
	}
	t.unknown()
	return z
}

// health reads [health].
func (d *decoder) health(t *table) Health {
	var h Health
	if v, ok := t.str("include"); ok {
		switch v {
		case "critical":
		case "all":
			h.IncludeAll = true
		default:
			t.errorf("include", "%q is not \"critical\" or \"all\"", v)
		}
	}
	t.unknown()
	return h
}

// autoCount reads a count that may be derived from tend's pids limit
// ([jobs] nproc, units_pids): "auto" (-1, NProcAuto and UnitsPidsAuto),
// "off" or 0 (none), or a count >= 1 of what (processes, tasks).
func (t *table) autoCount(key string, def int, what string) int {
	v, present := t.get(key)
	if !present {
		return def
	}
	switch v := v.(type) {
	case string:
		switch v {
		case "auto":
			return -1
		case "off":
			return 0
		}
		t.errorf(key, "%q is not \"auto\", \"off\" or a number of %s", v, what)
	case int64:
		if v >= 0 && v <= math.MaxInt32 {
			return int(v)
		}
		t.errorf(key, "%d is not \"auto\", \"off\" or a number of %s (0 to %d)", v, what, math.MaxInt32)
	default:
		t.typeErr(key, "\"auto\", \"off\" or an integer", v)
	}
	return def
}
