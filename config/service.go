//go:build linux

package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tendinit/tend/signals"
	"golang.org/x/sys/unix"
)

// validName is what a service name may be made of; names appear in URLs
// (/v1/services/{name}) and log prefixes, so nothing needs escaping.
func validName(name string) bool { return name != "" && onlyOf(name, "._-") }

// isValidName reports whether name may name a service from the file. "."
// and ".." are refused too: HTTP clients and muxes clean them out of paths.
func isValidName(name string) bool {
	return name != MainName && name != "." && name != ".." && validName(name)
}

// service reads one [[service]] table.
func (d *decoder) service(t *table) Service {
	s := defaultService()
	s.Line = t.at.line
	s.Name = t.name()
	if _, present := t.m["command"]; !present {
		t.errorf("command", "missing")
	} else if s.Command = t.strs("command"); s.Command != nil && len(s.Command) == 0 {
		t.errorf("command", "empty")
	} else if s.Command != nil && s.Command[0] == "" {
		t.errorf("command", "the program name is empty")
	}
	if dir, ok := t.str("dir"); ok {
		if s.Dir = dir; dir == "" {
			t.errorf("dir", "empty")
		}
	}
	s.Env = t.env("env")
	d.process(t, &s)
	t.restarts(&s)
	s.Critical = t.boolean("critical")
	s.After = t.strs("after") // checked once every name is known
	if s.Watchdog = t.duration("watchdog", 0, true); s.Watchdog > 0 && !s.Ready.Notify {
		// The pings come over NOTIFY_SOCKET, which only ready = "notify" gives.
		t.errorf("watchdog", "needs ready = \"notify\": WATCHDOG=1 comes over $NOTIFY_SOCKET")
	}
	s.Checks = t.checks("check")
	if v, ok := t.str("type"); ok {
		switch v {
		case "simple":
		case "oneshot":
			s.Oneshot = true
			// A oneshot's readiness is its exit 0: nothing else may say so.
			for _, k := range []string{"ready", "watchdog", "check"} {
				if _, present := t.m[k]; present {
					t.errorf(k, "a oneshot is ready when it exits 0: no %s", k)
				}
			}
			if s.Restart == RestartAlways {
				t.errorf("restart", "\"always\" would run a oneshot forever: on-failure or never")
			}
		default:
			t.errorf("type", "%q is not simple or oneshot", v)
		}
	}
	if v, ok := t.str("track"); ok {
		tr, err := ParseTrack(v)
		if err != nil || tr == "" {
			t.errorf("track", "%q is not one of auto, cgroup, subreaper, group", v)
		}
		s.Track = tr
	}
	if v, ok := t.str("kill_mode"); ok {
		switch s.KillMode = KillMode(v); s.KillMode {
		case KillUnit, KillMainOnly:
		default:
			t.errorf("kill_mode", "%q is not one of unit, main-only", v)
		}
	}
	t.processSettings(&s)
	s.MemoryMax = t.limit("memory_max", DefaultMemoryMax, ParseMemoryMax)
	s.PidsMax = t.limit("pids_max", DefaultPidsMax, ParsePidsMax)
	t.unknown()
	return s
}

// process reads the keys a service and [main] share: how the process
// runs, stops, says it is ready and gets its signals.
func (d *decoder) process(t *table, s *Service) {
	if user, ok := t.str("user"); ok {
		s.User = user
		if err := checkUser(user); err != nil {
			t.errorf("user", "%w", err)
		} else if d.opts.CheckUser != nil {
			if err := d.opts.CheckUser(user); err != nil {
				t.errorf("user", "%w", err)
			}
		}
	}
	if v, ok := t.get("stop_signal"); ok {
		sig, err := parseSignal(v)
		if err != nil {
			t.errorf("stop_signal", "%w", err)
		} else {
			s.StopSignal = sig
		}
	}
	s.StopTimeout = t.duration("stop_timeout", Unset, false)
	if r, ok := t.str("ready"); ok {
		var err error
		if s.Ready, err = parseReady(r); err != nil {
			t.errorf("ready", "%w", err)
		}
	}
	s.ReadyTimeout = t.duration("ready_timeout", DefaultReadyTimeout, true)
	s.Signals = t.signalMap("signals")
	s.LogPrefix = t.boolean("log_prefix")
}

// mainTable reads [main]: the settings of the command after --, a
// critical service that is never restarted. nil when the table is absent.
func (d *decoder) mainTable(t *table) *Service {
	if t.m == nil {
		return nil
	}
	s := defaultService()
	s.Line = t.at.line
	s.Env = t.env("env")
	d.process(t, &s)
	if s.Ready.FD > 0 || s.Ready.Notify {
		// Init mode's main keeps tend's own fds and stdio; a notify
		// socket would be fine, but keep [main] to the polled probes.
		t.errorf("ready", "[main] takes started, exec:, tcp: or http:// (fd:N and notify are for services)")
	}
	t.unknown()
	return &s
}

// rlimitNames are the resources of rlimits, as setrlimit(2) names them
// less RLIMIT_, lower case.
var rlimitNames = map[string]int{"cpu": unix.RLIMIT_CPU, "fsize": unix.RLIMIT_FSIZE, "data": unix.RLIMIT_DATA,
	"stack": unix.RLIMIT_STACK, "core": unix.RLIMIT_CORE, "rss": unix.RLIMIT_RSS, "nproc": unix.RLIMIT_NPROC,
	"nofile": unix.RLIMIT_NOFILE, "memlock": unix.RLIMIT_MEMLOCK, "as": unix.RLIMIT_AS, "locks": unix.RLIMIT_LOCKS,
	"sigpending": unix.RLIMIT_SIGPENDING, "msgqueue": unix.RLIMIT_MSGQUEUE, "nice": unix.RLIMIT_NICE,
	"rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME}

// processSettings reads umask, nice, rlimits, no_new_privs, env_file and
// env_file_optional.
func (t *table) processSettings(s *Service) {
	if v, ok := t.str("umask"); ok {
		// A string, as [control] mode: umask = 022 would be decimal.
		m, err := strconv.ParseUint(strings.TrimPrefix(v, "0o"), 8, 32)
		if err != nil || m > 0o777 {
			t.errorf("umask", "%q is not an octal mask such as \"0027\"", v)
		} else {
			s.Umask = int(m)
		}
	}
	if _, present := t.m["nice"]; present {
		n := t.integer("nice", 0, -20)
		if n > 19 {
			t.errorf("nice", "%d is not a nice value from -20 to 19", n)
		}
		s.Nice, s.NiceSet = n, true
	}
	sub := t.table("rlimits")
	for _, k := range slices.Sorted(maps.Keys(sub.m)) {
		res, known := rlimitNames[k]
		v, _ := sub.get(k)
		at := sub.posOf(k)
		if !known {
			t.errorAt(at, "rlimits", "%q is not a resource: want one of %s", k, strings.Join(slices.Sorted(maps.Keys(rlimitNames)), ", "))
			continue
		}
		cur, hi, err := parseRlimit(v)
		if err != nil {
			t.errorAt(at, "rlimits", "%s: %v", k, err)
			continue
		}
		s.Rlimits = append(s.Rlimits, Rlimit{Name: k, Resource: res, Cur: cur, Max: hi})
	}
	s.NoNewPrivs = t.boolean("no_new_privs")
	if v, ok := t.str("env_file"); ok {
		if !strings.HasPrefix(v, "/") {
			t.errorf("env_file", "%q is not an absolute path", v)
		}
		s.EnvFile = v
	}
	s.EnvFileOptional = t.boolean("env_file_optional")
	if s.EnvFileOptional && s.EnvFile == "" {
		t.errorf("env_file_optional", "without env_file")
	}
}

// parseRlimit reads a limit: a number (soft = hard), "unlimited", or
// "SOFT:HARD" with either side a number or "unlimited", SOFT <= HARD.
func parseRlimit(v any) (cur, hi uint64, err error) {
	one := func(s string) (uint64, error) {
		if s == "unlimited" || s == "infinity" {
			return Unlimited, nil
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == Unlimited {
			return 0, fmt.Errorf("%q is not a number or \"unlimited\"", s)
		}
		return n, nil
	}
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return 0, 0, fmt.Errorf("%d is negative", v)
		}
		return uint64(v), uint64(v), nil
	case string:
		c, h, pair := strings.Cut(v, ":")
		if cur, err = one(c); err != nil {
			return 0, 0, err
		}
		hi = cur
		if pair {
			if hi, err = one(h); err != nil {
				return 0, 0, err
			}
		}
		if cur > hi {
			return 0, 0, fmt.Errorf("soft %s is above hard %s", c, h)
		}
		return cur, hi, nil
	}
	return 0, 0, fmt.Errorf("must be a number, \"unlimited\" or \"SOFT:HARD\", not %s", tomlType(v))
}

// restarts reads the keys of the restart policy into s.
func (t *table) restarts(s *Service) {
	if p, ok := t.str("restart"); ok {
		switch s.Restart = Policy(p); s.Restart {
		case RestartAlways, RestartOnFailure, RestartNever:
		default:
			t.errorf("restart", "%q is not one of always, on-failure, never", p)
		}
	}
	s.RestartNow, s.NeverRestart = t.codes("restart_now"), t.codes("never_restart")
	for _, code := range s.RestartNow {
		if slices.Contains(s.NeverRestart, code) {
			t.errorf("never_restart", "exit code %d is also in restart_now", code)
		}
	}
	s.Backoff = t.duration("backoff", DefaultBackoff, true)
	s.BackoffMax = t.duration("backoff_max", DefaultBackoffMax, true)
	if s.BackoffMax < s.Backoff {
		t.errorf("backoff_max", "%v is less than backoff %v", s.BackoffMax, s.Backoff)
	}
	s.MaxRestarts = t.integer("max_restarts", DefaultMaxRestarts, 0)
	s.RestartWindow = t.duration("restart_window", DefaultRestartWindow, true)
}

// name reads and checks the name of the service table t and, once it is
// valid, makes errors about t name the service rather than its index.
func (t *table) name() string {
	if _, present := t.m["name"]; !present {
		t.errorf("name", "missing")
		return ""
	}
	name, ok := t.str("name")
	switch {
	case !ok: // reported
	case name == MainName:
		t.errorf("name", "%q is reserved for the command after --", name)
	case name == "." || name == "..":
		t.errorf("name", "%q is a path element, not a usable name", name)
	case !validName(name):
		t.errorf("name", "%q is not made of letters, digits, '.', '_' and '-'", name)
	default:
		t.label = fmt.Sprintf("service %q", name)
	}
	return name
}

// env reads a table of environment variables, or nil.
func (t *table) env(key string) map[string]string {
	sub := t.table(key)
	if sub.m == nil {
		return nil
	}
	env := make(map[string]string, len(sub.m))
	for _, k := range slices.Sorted(maps.Keys(sub.m)) {
		v, _ := sub.get(k)
		s, ok := v.(string)
		at := sub.posOf(k)
		switch {
		case strings.IndexByte(k, 0) >= 0:
			t.errorAt(at, key, "variable name %q contains a NUL byte", k)
		case k == "":
			t.errorAt(at, key, "empty variable name")
		case strings.IndexByte(k, '=') >= 0:
			// execve(2) would read "A=B=c" as variable A set to "B=c".
			t.errorAt(at, key, "%q is not a variable name: it contains '='", k)
		case !ok:
			t.errorAt(at, key, "%s: must be a string, not %s", joinPath("", k), tomlType(v))
		case strings.IndexByte(s, 0) >= 0:
			t.errorAt(at, key, "%s: contains a NUL byte", joinPath("", k))
		default:
			env[k] = s
		}
	}
	return env
}

// signalMap reads a table of signal routes, or nil.
func (t *table) signalMap(key string) map[unix.Signal]unix.Signal {
	sub := t.table(key)
	if sub.m == nil {
		return nil
	}
	routes := make(map[unix.Signal]unix.Signal, len(sub.m))
	given := map[unix.Signal]string{} // spelling of each key, to name duplicates
	for _, k := range slices.Sorted(maps.Keys(sub.m)) {
		v, _ := sub.get(k)
		at := sub.posOf(k)
		if strings.IndexByte(k, 0) >= 0 {
			t.errorAt(at, key, "signal name %q contains a NUL byte", k)
			continue
		}
		from, err := signals.Parse(k)
		if err != nil {
			t.errorAt(at, key, "%w", err)
			continue
		}
		if !signals.Forwardable(from) {
			t.errorAt(at, key, "%s is never forwarded", signals.Name(from))
			continue
		}
		if prev, dup := given[from]; dup {
			t.errorAt(at, key, "%s and %s name the same signal", prev, k)
			continue
		}
		given[from] = k
		if s, ok := v.(string); ok && s == "" {
			routes[from] = 0 // not forwarded to this service
			continue
		}
		to, err := parseSignal(v)
		if err != nil {
			t.errorAt(at, key, "%s: %w", k, err)
			continue
		}
		routes[from] = to
	}
	return routes
}

// parseSignal reads a signal given as a name or number, as a TOML string or
// integer.
func parseSignal(v any) (unix.Signal, error) {
	switch v := v.(type) {
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return 0, fmt.Errorf("contains a NUL byte")
		}
		return signals.Parse(v)
	case int64:
		return signals.Parse(strconv.FormatInt(v, 10))
	}
	return 0, fmt.Errorf("must be a signal name or number, not %s", tomlType(v))
}

// parseReady reads "started", "notify", "fd:N" or a probe (parseProbe).
func parseReady(s string) (Ready, error) {
	switch {
	case s == "started":
		return Ready{}, nil
	case s == "notify":
		return Ready{Notify: true}, nil
	case strings.HasPrefix(s, "fd:"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "fd:"))
		if err != nil || n < 3 || n > 255 {
			return Ready{}, fmt.Errorf("fd: %q is not a number 3-255 (0-2 are stdio)", strings.TrimPrefix(s, "fd:"))
		}
		return Ready{FD: n}, nil
	}
	p, err := parseProbe(s)
	if errors.Is(err, errNotProbe) {
		return Ready{}, fmt.Errorf("%q is not \"started\", \"notify\", \"fd:N\", \"exec:CMD\", \"tcp:HOST:PORT\" or \"http://HOST:PORT/PATH\"", s)
	}
	return Ready{Probe: p}, err
}

// errNotProbe: a string of none of the probe forms.
var errNotProbe = errors.New("not a probe")

// parseProbe reads "exec:CMD", "tcp:HOST:PORT" or "http://HOST[:PORT]/PATH".
// A network probe may only reach the container itself: HOST is localhost,
// a loopback address or one of this machine's own interface addresses (a
// probe of another host would make one service's health someone else's).
func parseProbe(s string) (Probe, error) {
	switch {
	case strings.HasPrefix(s, "exec:"):
		argv, err := splitArgs(strings.TrimPrefix(s, "exec:"))
		if err != nil {
			return Probe{}, fmt.Errorf("exec: %w", err)
		}
		return Probe{Exec: argv}, nil
	case strings.HasPrefix(s, "tcp:"):
		addr := strings.TrimPrefix(s, "tcp:")
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return Probe{}, fmt.Errorf("%q: %q is not HOST:PORT: %v", s, addr, err)
		}
		if err := checkProbeHost(host, port, false); err != nil {
			return Probe{}, fmt.Errorf("%q: %w", s, err)
		}
		return Probe{TCP: addr}, nil
	case strings.HasPrefix(s, "http://"):
		u, err := url.Parse(s)
		if err != nil {
			return Probe{}, fmt.Errorf("%q: %v", s, err)
		}
		if u.User != nil || u.Fragment != "" {
			return Probe{}, fmt.Errorf("%q: no user info or #fragment in a probe URL", s)
		}
		if err := checkProbeHost(u.Hostname(), u.Port(), true); err != nil {
			return Probe{}, fmt.Errorf("%q: %w", s, err)
		}
		return Probe{HTTP: s}, nil
	}
	return Probe{}, errNotProbe
}

// checks reads the [[service.check]] tables of a service.
func (t *table) checks(key string) []Check {
	var out []Check
	for i, ct := range t.tables(key) {
		c := Check{Name: fmt.Sprintf("check-%d", i+1)}
		ct.label = fmt.Sprintf("%s: %s[%d]", t.label, key, i)
		if name, ok := ct.str("name"); ok {
			switch {
			case !validName(name) || name == "." || name == "..":
				ct.errorf("name", "%q is not made of letters, digits, '.', '_' and '-'", name)
			case slices.ContainsFunc(out, func(o Check) bool { return o.Name == name }):
				ct.errorf("name", "%q is already the name of another check of this service", name)
			default:
				c.Name = name
			}
		}
		if _, present := ct.m["probe"]; !present {
			ct.errorf("probe", "missing: \"exec:CMD\", \"tcp:HOST:PORT\" or \"http://HOST:PORT/PATH\"")
		} else if v, ok := ct.str("probe"); ok {
			p, err := parseProbe(v)
			switch {
			case errors.Is(err, errNotProbe):
				ct.errorf("probe", "%q is not \"exec:CMD\", \"tcp:HOST:PORT\" or \"http://HOST:PORT/PATH\"", v)
			case err != nil:
				ct.errorf("probe", "%w", err)
			}
			c.Probe = p
		}
		c.Period = ct.duration("period", DefaultCheckPeriod, true)
		c.Timeout = ct.duration("timeout", DefaultCheckTimeout, true)
		c.Threshold = ct.integer("threshold", DefaultCheckThreshold, 1)
		c.OnFailure = DefaultOnFailure
		if v, ok := ct.str("on_failure"); ok {
			switch c.OnFailure = OnFailure(v); c.OnFailure {
			case OnFailureRestart, OnFailureStop, OnFailureIgnore:
			default:
				ct.errorf("on_failure", "%q is not one of restart, stop, ignore", v)
			}
		}
		ct.unknown()
		out = append(out, c)
	}
	return out
}

// ownAddrs lists this machine's interface addresses; tests replace it.
var ownAddrs = net.InterfaceAddrs

// checkProbeHost accepts localhost, a loopback address or an address of
// this machine's own interfaces, and a port 1-65535 (optional for http).
func checkProbeHost(host, port string, portOptional bool) error {
	if port != "" || !portOptional {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not 1-65535", port)
		}
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("host %q: an IP address or localhost (no name lookups: a probe must reach this container)", host)
	}
	if ip.IsLoopback() {
		return nil
	}
	addrs, err := ownAddrs()
	if err != nil {
		return fmt.Errorf("host %s: cannot list this container's addresses: %v", host, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return nil
		}
	}
	return fmt.Errorf("host %s is not loopback nor an address of this container: a probe must reach the container itself", host)
}

// checkUser checks the form of a user: a name, or uid[:gid] in numbers.
// Whether it exists is for the one who starts the service to find out.
func checkUser(u string) error {
	uid, gid, hasGID := strings.Cut(u, ":")
	switch {
	case u == "":
		return fmt.Errorf("empty")
	case hasGID && (!isID(uid) || !isID(gid)):
		return fmt.Errorf("%q is not a name or uid[:gid]", u)
	case strings.ContainsAny(u, " \t\n/\x00"):
		return fmt.Errorf("%q is not a user name", u)
	}
	return nil
}

// isID reports whether s is a decimal uid or gid. 4294967295 is (uid_t)-1,
// which setuid(2) reads as "leave unchanged".
func isID(s string) bool {
	n, err := strconv.ParseUint(s, 10, 32)
	return err == nil && n != 1<<32-1
}
