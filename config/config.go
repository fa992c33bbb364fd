//go:build linux

// Package config reads tend's supervisor file (TOML, DESIGN.md §4) into a
// Config with every default filled in. It refuses the whole file when
// anything in it is wrong, reporting every problem at once, so that a bad
// config is refused before anything starts. It owns no state and never
// touches processes, sockets or users: names and paths are checked for form
// only, and resolving them is left to the packages that use them (a caller
// that resolves users can have that done inside the same report of errors,
// with Options.CheckUser).
package config

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"
)

// Defaults of DESIGN.md §4, the values in its brackets: the only table of
// defaults. The flags (main.go), the control server and the loop take
// theirs from here.
const (
	DefaultSocket = "/run/tend.sock"
	DefaultMode   = os.FileMode(0o600)
	DefaultGrace  = 10 * time.Second
	// DefaultKilledExitCode is [shutdown] killed_exit_code: 0, a forced
	// stop exits with the same code as a clean one.
	DefaultKilledExitCode = 0
	DefaultMaxRunning     = 64
	DefaultMaxQueued      = 256
	DefaultJobStopGrace   = 5 * time.Second
	DefaultKeep           = time.Hour
	DefaultMaxRecords     = 10000
	// What one POST /v1/jobs may carry ([jobs] max_labels and the rest):
	// far more than a dispatcher sends, small enough that a record's size
	// is bounded without looking at the body cap.
	DefaultMaxLabels          = 32
	DefaultMaxLabelKeyBytes   = 128
	DefaultMaxLabelValueBytes = 256
	DefaultMaxArgv            = 4096
	DefaultMaxArgvBytes       = 128 << 10 // MAX_ARG_STRLEN: one argument as long as execve takes
	DefaultMaxEnv             = 1024
	DefaultMaxEnvBytes        = 64 << 10
	DefaultMaxDirBytes        = 4095 // PATH_MAX less its NUL
	// DefaultRecordArgvBytes is how much of its argv a record keeps.
	DefaultRecordArgvBytes = 4 << 10
	// DefaultMaxRecordBytes is the byte budget of exit records, shared
	// fairly among the uids that hold them.
	DefaultMaxRecordBytes = 64 << 20
	// DefaultNProc is [jobs] nproc: RLIMIT_NPROC for non-root jobs derived
	// from tend's own pids limit (NProcAuto).
	DefaultNProc = NProcAuto
	// DefaultUnitsPids is [jobs] units_pids: every unit under one pids
	// cgroup whose pids.max is NProcFor of tend's own pids limit
	// (UnitsPidsAuto), where tend can make one.
	DefaultUnitsPids = UnitsPidsAuto
	// Bounds of the API's answers and of what callers may hold open
	// ([control] page_size and the rest).
	DefaultPageSize             = 100
	DefaultMaxPageSize          = 1000
	DefaultMaxSubscribers       = 256
	DefaultMaxSubscribersPerUID = 32
	DefaultMaxParkedFDs         = 1024
	DefaultMaxParkedFDsPerUID   = 192
	// Unset is the value of a duration that was not given, where unset
	// and 0 mean different things (stop_timeout: 0 is SIGKILL at once).
	Unset                = time.Duration(-1)
	DefaultBackoff       = time.Second
	DefaultBackoffMax    = 30 * time.Second
	DefaultMaxRestarts   = 10
	DefaultRestartWindow = 10 * time.Minute
	DefaultReadyTimeout  = 60 * time.Second
	// ReadyProbeTimeout bounds each try of an exec ready probe: one that
	// hangs is killed and tried again, within ready_timeout.
	ReadyProbeTimeout = 5 * time.Second
	// [[service.check]]: Kubernetes' period and threshold, a timeout that
	// a slow command still meets, and a liveness probe's restart.
	DefaultCheckPeriod    = 10 * time.Second
	DefaultCheckTimeout   = 5 * time.Second
	DefaultCheckThreshold = 3
	DefaultOnFailure      = OnFailureRestart
	// [zombies]: no scan unless asked; a warning at 10 held by one parent.
	DefaultZombieWarnAt = 10
	DefaultStopSignal   = unix.SIGTERM
	// DefaultCleanupGrace is --cleanup-grace: after the main process
	// exits, what is left gets SIGTERM, then SIGKILL this long after.
	DefaultCleanupGrace = 2 * time.Second
	// DefaultJobDir is a job's working directory when its request names
	// none: the one directory every uid can enter.
	DefaultJobDir = "/"
	// DefaultLogFormat is --log-format: tend's own log lines on stderr.
	DefaultLogFormat = "text"
	// NoLimit is a memory_max or pids_max that limits nothing: the key
	// absent (the default: today's behaviour, nothing made for it) or "max".
	NoLimit          int64 = 0
	DefaultMemoryMax       = NoLimit
	DefaultPidsMax         = NoLimit
	// [control]: the keep-alive idle timeout and the connection limits.
	DefaultIdleTimeout          = 2 * time.Minute
	DefaultMaxConnections       = 1024
	DefaultMaxConnectionsPerUID = 256
	// DefaultReservedConnections is root's and tend's uid's room beyond
	// max_connections: enough for a few `tend` commands during a flood.
	DefaultReservedConnections = 16
	// A request's size limits: far more than any tend client sends (a
	// job request at every [jobs] cap is about 200 KiB), far less than a
	// flood of them could make tend hold.
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxURLBytes    = 8 << 10
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultReadHeaderTimeout closes a connection whose request head does
	// not arrive in time: a silent connection holds a place for no more.
	DefaultReadHeaderTimeout = 10 * time.Second
)

// MainName is the reserved name of the service made from the command after --.
const MainName = "main"

// Config is a whole supervisor file. Parse fills in every default, so a
// zero field means the user asked for zero (or the default is zero).
type Config struct {
	Control  Control
	Shutdown Shutdown
	Jobs     Jobs
	Defaults Defaults
	Health   Health
	Zombies  Zombies
	// Main is [main]: how the command after -- runs (user, env, ready,
	// stop_signal, stop_timeout, signals, log_prefix); nil: the defaults.
	Main     *Service
	Services []Service // in file order; StartLevels gives the start order
}

// Control is the [control] table: the control socket.
type Control struct {
	Socket    string      // "" = no socket
	SocketSet bool        // the key was present: failing to bind is then fatal, not a warning
	Mode      os.FileMode // permission bits only (within 0777)
	Group     string      // group name or gid, not resolved here; "" = the socket's default
	// IdleTimeout closes a keep-alive connection idle this long, > 0.
	IdleTimeout time.Duration
	// MaxConnections and MaxConnectionsPerUID bound the connections open
	// at once, overall and per peer uid, >= 1 (root and tend's uid have a
	// small reserve beyond MaxConnections).
	MaxConnections       int
	MaxConnectionsPerUID int
	// ReservedConnections is how many more than MaxConnections root and
	// tend's uid may open, >= 0.
	ReservedConnections int
	// ReadHeaderTimeout closes a connection whose request head has not
	// arrived this long after it began, > 0.
	ReadHeaderTimeout time.Duration
	// What one request may carry, >= minRequestBytes each: its body (413),
	// its URL (414), its request line and headers (431; net/http allows
	// 4 KiB of slack beyond it).
	MaxBodyBytes   int
	MaxURLBytes    int `key:"max_url_bytes"` // not max_urlbytes
	MaxHeaderBytes int

	PageSize             int // jobs in a GET /v1/jobs page (and in GET /v1/status) without ?limit; >= 1
	MaxPageSize          int // the largest ?limit; >= PageSize
	MaxSubscribers       int // GET /v1/events streams open at once; >= 1
	MaxSubscribersPerUID int // of those, one uid's; 1..MaxSubscribers
	MaxParkedFDs         int // passed fds held for requests not handled yet; >= 3
	MaxParkedFDsPerUID   int // of those, one uid's; 3..MaxParkedFDs
	// ReloadOn is the signal that makes tend re-read its file (as POST
	// /v1/reload does) instead of forwarding it; 0: none.
	ReloadOn unix.Signal
}

// Shutdown is the [shutdown] table.
type Shutdown struct {
	Grace time.Duration // the whole stop budget, > 0
	// KilledExitCode (1-255) is tend's exit code when the shutdown had to
	// SIGKILL anything; 0 = the code of a clean stop.
	KilledExitCode int
}

// Jobs is the [jobs] table: limits of jobs started through the control API.
type Jobs struct {
	MaxRunning int           // >= 1; beyond it jobs queue
	MaxQueued  int           // >= 0; beyond it the API answers 429
	Timeout    time.Duration // default wall time limit per job; 0 = none
	StopGrace  time.Duration // SIGTERM to SIGKILL of a job's group; 0 = at once
	Keep       time.Duration // how long exit records stay queryable, > 0
	MaxRecords int           // exit records kept at most, the oldest forgotten first; >= 1
	// Stop is when the shutdown stops the jobs, relative to the main
	// service (the command after --, else the services stopped first).
	Stop JobsStop

	// What one job request may carry (a refusal names the key).
	MaxLabels          int // labels; >= 0
	MaxLabelKeyBytes   int // bytes of a label's key; >= 1
	MaxLabelValueBytes int // bytes of a label's value; >= 0
	MaxArgv            int // argv's strings; >= 1
	MaxArgvBytes       int // argv's bytes in all; >= 1
	MaxEnv             int // env's strings; >= 0
	MaxEnvBytes        int // env's bytes in all; >= 0
	MaxDirBytes        int // dir's bytes; >= 1
	// RecordArgvBytes is how much of argv a record keeps (the rest is cut,
	// the record says so); >= 1.
	RecordArgvBytes int
	// MaxRecordBytes is the budget of exit records (their estimated heap
	// size), each uid's fair share of it protected; >= 64 KiB.
	MaxRecordBytes int
	// NProc is the RLIMIT_NPROC (soft = hard) a job that runs as a
	// non-root uid gets: how many processes that uid may have when it
	// forks. NProcAuto: tend's pids limit less a reserve (NProcFor), or
	// none where tend has no pids limit; 0: none.
	NProc int
	// UnitsPids is the pids.max of the one cgroup that holds every unit
	// (service runs and jobs, root's too), so that together they cannot
	// spend the pids tend keeps for itself. UnitsPidsAuto: NProcFor of
	// tend's pids limit, or none where tend has no pids limit; 0: off (no
	// such cgroup); else that many tasks. Only where tend can make pids
	// cgroups (a writable v2 hierarchy with pids, or a v1 pids one).
	UnitsPids int
}

// UnitsPidsAuto is [jobs] units_pids = "auto".
const UnitsPidsAuto = -1

// NProcAuto is [jobs] nproc = "auto".
const NProcAuto = -1

// NProcFor is what nproc = "auto" gives under a pids limit of limit
// tasks: the limit less a reserve for root (tend's own threads, services,
// root's jobs) of a quarter of it, at least 32 and at most 512 tasks; a
// limit too small for that reserve is halved. limit <= 0 is no limit: 0.
func NProcFor(limit int64) int {
	if limit <= 0 {
		return 0
	}
	reserve := min(max(limit/4, 32), 512)
	n := limit - reserve
	if n < 8 {
		n = limit / 2
	}
	return int(max(min(n, math.MaxInt32), 1))
}

// Defaults is the [defaults] table: what services and jobs get unless they
// say otherwise.
type Defaults struct {
	Track Track
}

// Track is how the processes of a unit (a service run, a job) are tracked,
// so that nothing it starts outlives it.
type Track string

// The tracking modes.
const (
	TrackAuto      Track = "auto"      // the best available: cgroup, else subreaper
	TrackCgroup    Track = "cgroup"    // a cgroup v2 per unit (where writable)
	TrackSubreaper Track = "subreaper" // a unit helper, the unit's own subreaper
	TrackGroup     Track = "group"     // the process group only (escapers are not caught)
)

// ParseTrack reads a track value; "" is "".
func ParseTrack(s string) (Track, error) {
	switch t := Track(s); t {
	case "", TrackAuto, TrackCgroup, TrackSubreaper, TrackGroup:
		return t, nil
	}
	return "", fmt.Errorf("%q is not one of auto, cgroup, subreaper, group", s)
}

// KillMode says what happens to the rest of a unit when its main process
// ends.
type KillMode string

// The kill modes, in the spirit of systemd's KillMode.
const (
	KillUnit     KillMode = "unit"      // the rest gets the stop signal, then SIGKILL
	KillMainOnly KillMode = "main-only" // the rest is left to live (reaped by tend when it exits)
)

// Policy is a service's restart policy.
type Policy string

// The restart policies.
const (
	RestartAlways    Policy = "always"
	RestartOnFailure Policy = "on-failure"
	RestartNever     Policy = "never"
)

// Service is one [[service]] table, or the main command (see MainService).
type Service struct {
	Name          string
	Command       []string          // argv; Command[0] is looked up in PATH by spawn
	Dir           string            // "" = tend's working directory
	Env           map[string]string // added to tend's own environment; nil = none
	User          string            // name or uid[:gid], not resolved here; "" = tend's
	Restart       Policy
	RestartNow    []int // exit codes that restart at once, whatever the policy
	NeverRestart  []int // exit codes that never restart
	Backoff       time.Duration
	BackoffMax    time.Duration
	MaxRestarts   int // restarts allowed within RestartWindow, then failed for good
	RestartWindow time.Duration
	Critical      bool
	StopSignal    unix.Signal
	StopTimeout   time.Duration // Unset = what is left of Shutdown.Grace; 0 = SIGKILL at once
	After         []string      // names of services that must be ready first
	// Oneshot (type = "oneshot") is a service that runs to its end: it
	// is ready when it exits 0 (and stays so), failed otherwise (after its
	// restart policy); its dependents wait for that.
	Oneshot      bool
	Ready        Ready
	ReadyTimeout time.Duration
	// Watchdog (ready = "notify" only; 0 = none) restarts a ready run that
	// has not sent WATCHDOG=1 for this long, as a failure.
	Watchdog time.Duration
	Checks   []Check // run while the service is ready, in file order
	// Signals routes signals sent to tend: a value of 0 means the key signal
	// is not forwarded to this service; a signal absent from the map takes
	// the default route (INT and TERM start the shutdown, the rest are
	// forwarded as they are). nil = all default.
	Signals   map[unix.Signal]unix.Signal
	LogPrefix bool
	Track     Track    // "" = [defaults] track
	KillMode  KillMode // [unit]
	// MemoryMax (bytes) and PidsMax (tasks) limit each run of the service
	// in a cgroup of its own (README, "Units"); NoLimit = none.
	MemoryMax int64
	PidsMax   int64
	// The process settings each run gets before its exec: Umask (-1:
	// tend's), Nice (with NiceSet), Rlimits, NoNewPrivs; and EnvFile, a
	// KEY=VALUE file read at start (missing: an error unless
	// EnvFileOptional), its variables under the env table's.
	Umask           int
	Nice            int
	NiceSet         bool
	Rlimits         []Rlimit
	NoNewPrivs      bool
	EnvFile         string
	EnvFileOptional bool
	Line            int // line of the service's table in the file; 0 = unknown
}

// Rlimit is one entry of rlimits: a resource and its soft and hard limits
// (Unlimited for none).
type Rlimit struct {
	Name     string // as in the file: "nofile"
	Resource int    // RLIMIT_NOFILE
	Cur, Max uint64
}

// Unlimited is RLIM_INFINITY.
const Unlimited = ^uint64(0)

// Ready says when a service counts as ready. At most one of its ways is
// set; none means ready as soon as started.
type Ready struct {
	// Probe, when set, is polled until it succeeds (each try bounded:
	// ReadyProbeTimeout for a command, 1 s for tcp and http).
	Probe
	// FD (3-255) is the notification fd of s6 and dinit: the service is
	// ready when it writes a newline to its fd FD, a pipe tend reads.
	FD int
	// Notify is systemd's sd_notify: the service is ready when a process
	// of its unit sends READY=1 to $NOTIFY_SOCKET.
	Notify bool
}

// String is r as the config spells it (Probe's String would say "" for
// notify and fd).
func (r Ready) String() string {
	switch {
	case r.Notify:
		return "notify"
	case r.FD > 0:
		return "fd:" + strconv.Itoa(r.FD)
	case r.Probe.Set():
		return r.Probe.String()
	}
	return "started"
}

// Polled reports whether readiness waits for something after the start
// (a probe tend repeats, the notification fd, or sd_notify).
func (r Ready) Polled() bool { return r.Probe.Set() || r.FD > 0 || r.Notify }

// Probe is one way to ask a service whether it is well: a command that
// exits 0, a tcp port that accepts, or an http GET that answers 200-399.
// At most one field is set.
type Probe struct {
	// Exec is a command, run with the service's user, env and dir.
	Exec []string
	// TCP ("HOST:PORT") succeeds when a connection to it is accepted.
	TCP string
	// HTTP (an http:// URL) succeeds when a GET of it answers 200-399
	// (Kubernetes' rule), redirects not followed, no proxy.
	HTTP string
}

// Set reports whether p names a probe.
func (p Probe) Set() bool { return p.Exec != nil || p.TCP != "" || p.HTTP != "" }

// String is p as the config spells it.
func (p Probe) String() string {
	switch {
	case p.Exec != nil:
		return "exec:" + strings.Join(p.Exec, " ")
	case p.TCP != "":
		return "tcp:" + p.TCP
	}
	return p.HTTP
}

// JobsStop is [jobs] stop (and --jobs-stop).
type JobsStop string

const (
	// JobsStopFirst stops every job, and waits for them, before any
	// service gets its stop signal.
	JobsStopFirst JobsStop = "first"
	// JobsStopWithMain stops the jobs together with the main service.
	JobsStopWithMain JobsStop = "with_main"
	// JobsStopAfterMain stops the jobs once the main service has exited:
	// a gateway can drain its own workers on its SIGTERM.
	JobsStopAfterMain JobsStop = "after_main"
	DefaultJobsStop            = JobsStopWithMain
)

// ParseJobsStop reads first, with_main or after_main.
func ParseJobsStop(s string) (JobsStop, error) {
	switch v := JobsStop(s); v {
	case JobsStopFirst, JobsStopWithMain, JobsStopAfterMain:
		return v, nil
	}
	return "", fmt.Errorf("%q is not one of first, with_main, after_main", s)
}

// OnFailure is what a [[service.check]] that failed threshold times in a
// row does.
type OnFailure string

const (
	// OnFailureRestart stops the run and starts it again, as a failure:
	// the backoff and max_restarts apply, whatever the restart policy.
	OnFailureRestart OnFailure = "restart"
	// OnFailureStop stops the service for good: it has failed (a critical
	// one stops the container).
	OnFailureStop OnFailure = "stop"
	// OnFailureIgnore only reports it: status, events and /v1/health.
	OnFailureIgnore OnFailure = "ignore"
)

// Check is one [[service.check]]: a probe repeated while the service is
// ready.
type Check struct {
	Name      string // unique within the service; default "check-N" (N from 1)
	Probe     Probe
	Period    time.Duration // from the end of one probe to the start of the next
	Timeout   time.Duration // a probe still running then is killed and has failed
	Threshold int           // failures in a row that make the check fail
	OnFailure OnFailure
}

// Zombies is the [zombies] table: tend's watch for zombies that live
// parents never waited for (PID 1 cannot reap those).
type Zombies struct {
	// Scan is the interval of the scan of /proc; 0 (the default) scans
	// only when asked (GET /v1/zombies, tend zombies): no wake-ups.
	Scan time.Duration
	// WarnAt is the count at which a parent's zombies are logged and a
	// zombie.held event published, once per crossing; >= 1.
	WarnAt int
	// HealthMax > 0 fails /v1/health while a scan found a parent holding
	// more zombies than it; 0: never.
	HealthMax int
}

// Health is the [health] table: what GET /v1/health counts.
type Health struct {
	// IncludeAll counts every service; false (include = "critical", the
	// default) only the critical ones.
	IncludeAll bool
}

// Options are checks that Parse leaves to the caller, made inside the
// same collection of errors, so that a file is refused with every problem
// at once. The zero Options makes none.
type Options struct {
	// CheckUser, when set, is given the user of each service whose user is
	// well-formed (the package itself never resolves users); its error is
	// reported at that service's user key, after `service "NAME": user: `.
	CheckUser func(spec string) error
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) { return LoadWith(path, Options{}) }

// LoadWith reads and parses the file at path, with the checks of o.
func LoadWith(path string, o Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseWith(data, path, o)
}

// Parse parses a config file's contents; source names it in errors. There
// is no Config unless the file is entirely valid. The error is a
// *multierror.Error of *Problem, each naming source, the line and column,
// and the table or service and key at fault, sorted by position; it prints
// one problem per line, under a count when there are several. A TOML
// syntax error is reported alone: nothing after it can be read.
func Parse(data []byte, source string) (*Config, error) { return ParseWith(data, source, Options{}) }

// ParseWith is Parse with the checks of o.
func ParseWith(data []byte, source string, o Options) (*Config, error) {
	if source == "" {
		source = "config"
	}
	d := &decoder{source: source, opts: o, errs: &multierror.Error{ErrorFormat: perLine(source)}}
	// Decoding into a plain map, rather than into structs, lets every key be
	// read by hand: the decoder's struct mapping matches keys case-
	// insensitively ("Restart" would pass as "restart") and stops at the
	// first type mismatch, while a strict file must refuse the first and
	// report every one of the second.
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		d.syntax(err)
		return nil, d.result()
	}
	d.at = scanPositions(data)
	root := d.root(raw)
	cfg := &Config{
		Control:  d.control(root.table("control")),
		Shutdown: d.shutdown(root.table("shutdown")),
		Jobs:     d.jobs(root.table("jobs")),
		Defaults: d.defaults(root.table("defaults")),
		Health:   d.health(root.table("health")),
		Zombies:  d.zombies(root.table("zombies")),
		Main:     d.mainTable(root.table("main")),
	}
	services := root.tables("service")
	root.unknown() // every top-level key has been asked for by now
	for _, t := range services {
		cfg.Services = append(cfg.Services, d.service(t))
	}
	d.checkNames(services, cfg.Services)
	d.checkAfter(services, cfg.Services)
	if err := d.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Service returns the service called name, or nil.
func (c *Config) Service(name string) *Service {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i]
		}
	}
	return nil
}

// MainService returns the service made from the command after --: named
// "main", critical, never restarted, with the settings of [main] (tmpl,
// nil: the defaults).
func MainService(argv []string, tmpl *Service) Service {
	s := defaultService()
	if tmpl != nil {
		s = *tmpl
	}
	s.Name = MainName
	s.Command = append([]string(nil), argv...)
	s.Restart = RestartNever
	s.Critical = true
	return s
}

// defaultService is a service with every default of §4 and no name or command.
func defaultService() Service {
	return Service{
		Restart:       RestartOnFailure,
		Backoff:       DefaultBackoff,
		BackoffMax:    DefaultBackoffMax,
		MaxRestarts:   DefaultMaxRestarts,
		RestartWindow: DefaultRestartWindow,
		StopSignal:    DefaultStopSignal,
		StopTimeout:   Unset,
		ReadyTimeout:  DefaultReadyTimeout,
		KillMode:      KillUnit,
		MemoryMax:     DefaultMemoryMax,
		PidsMax:       DefaultPidsMax,
		Umask:         -1,
	}
}
