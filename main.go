// Command tend is a PID-1 init and process supervisor for containers: it
// reaps every orphan, forwards signals, and stops everything cleanly. This
// file is the CLI; it is the only place that calls os.Exit.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/client"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/outlet"
	"github.com/tendinit/tend/signals"
	"github.com/tendinit/tend/spawn"
	"github.com/tendinit/tend/supervisor"
)

// version and commit may be set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "0.1.0"
	commit  = ""
)

const gcPercent = 50

const (
	exitUsage   = 2 // bad flags or no command, in every mode
	exitFailure = 1 // tend itself failed before the main process ran
)

func main() {
	// First statement: catch every catchable signal before anything else
	// can take tend down (DESIGN.md §1.5). A client command (its name the
	// first word) needs none of it: the runtime's defaults are an ordinary
	// program's, and catching ~60 signals is a round trip each to the
	// runtime's signal thread, a third of `tend spawn`'s own time.
	var sigs *signals.Set
	if !clientWord(os.Args) {
		sigs = signals.Notify()
	}
	if err := signals.ClearInheritedMask(); err != nil { // returns unless it must exec tend afresh
		fmt.Fprintf(os.Stderr, "tend: children inherit the signal mask tend was started with: %v\n", err)
	}
	if err := spawn.AdoptInheritedFDs(); err != nil {
		// Without /proc the inherited fds cannot be listed: children get
		// them all, as from tini. Say so; it is no reason not to run.
		fmt.Fprintf(os.Stderr, "tend: inherited fds left as they are: %v\n", err)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// PID 1 holds little but keeps it for the container's life, and
		// its memory is the container's: trade some GC work under load for
		// a heap goal of 1.5x the live heap instead of 2x.
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args, sigs))
}

// usageError marks errors that exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args []string, sigs *signals.Set) (code int) {
	defer func() {
		// No panic may escape PID 1 with Go's status 2 and a stack trace
		// as the only report; say what happened and exit like a failed init.
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "tend: internal error: %v\n%s", p, debug.Stack())
			code = exitFailure
		}
	}()
	cliArgs, argv := splitArgs(args)
	if argv == nil {
		var err error
		if cliArgs, err = subcommandArgs(cliArgs); err != nil {
			fmt.Fprintf(os.Stderr, "tend: %v\n", err)
			return exitUsage
		}
	}
	code = -1
	app := newApp(sigs, argv, &code)
	err := app.Run(cliArgs)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "tend: %s\n%s", ue.msg, usageText)
		return exitUsage
	case err != nil && code < 0:
		if ec, ok := err.(cli.ExitCoder); ok && ec.ExitCode() != 0 {
			fmt.Fprintf(os.Stderr, "tend: %v\n", err)
			return ec.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "tend: %v\n", err)
		return exitFailure
	case code < 0:
		return 0 // --help, --version
	}
	return code
}

const usageText = `usage: tend [flags] [--] command [args...]
       tend --config FILE [flags] [-- command [args...]]
run 'tend --help' for the flags
`

// valueFlags take a value in the next argument; splitArgs must skip it.
var valueFlags = map[string]bool{
	"-p": true, "--parent-death-signal": true, "-e": true, "--expect-exit": true,
	"-r": true, "--rewrite": true, "--grace": true, "--cleanup-grace": true,
	"--log-format": true, "--config": true, "--socket": true, "--killed-exit-code": true, "--jobs-stop": true,
	"--zombie-scan": true, "--zombie-warn-at": true,
}

// splitArgs finds the `--` that ends tend's own flags, so that everything
// after it is the command even when a word names a subcommand (`tend --
// status` runs a program called status). Scanning stops at the first word
// that is not a flag: from there on it is the command's.
//
// It also spells tend's long flags that have a short alias in their short
// form: urfave/cli refuses "two forms of the same flag", so `-e 3
// --expect-exit 4` would fail although either spelling alone works.
func splitArgs(args []string) (cliArgs, argv []string) {
	args = append([]string(nil), args...)
	for i := 1; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		if short, ok := shortForms[name]; ok {
			args[i] = short
			if hasValue {
				args[i] += "=" + value
			}
		}
		a := args[i]
		switch {
		case a == "--":
			return args[:i], args[i+1:]
		case valueFlags[a]:
			i++
		case strings.HasPrefix(a, "-") && a != "-":
		default:
			return args, nil
		}
	}
	return args, nil
}

// subcommandArgs reads the word that names a subcommand in args (the
// first one that is not tend's flag, with no `--` before it): `tend help`
// and `tend help CMD` show the help (tend has no command called help: the
// word would otherwise run a program called help, which `tend -- help`
// still does), and the flags after a client command's arguments are moved
// before them (client.FlagsFirst).
func subcommandArgs(args []string) ([]string, error) {
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if valueFlags[a] {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
	}
	if i >= len(args) {
		return args, nil
	}
	own, word, rest := args[:i:i], args[i], args[i+1:]
	if word != "help" {
		return append(append(own, word), client.FlagsFirst(word, rest)...), nil
	}
	switch {
	case len(rest) == 0:
		return append(own, "--help"), nil
	case len(rest) == 1 && slices.Contains(client.Names(), rest[0]):
		return append(own, rest[0], "--help"), nil
	}
	return nil, fmt.Errorf("help %s: want one of %s (to run a program called help, write tend -- help ...)",
		strings.Join(rest, " "), strings.Join(client.Names(), ", "))
}

// clientWord reports whether args name a client command first (args[1]),
// with no flag before it: only then does tend know, before parsing, that
// it is not an init.
func clientWord(args []string) bool {
	return len(args) > 1 && slices.Contains(client.Names(), args[1])
}

// shortForms maps tend's own long flags to their short aliases.
var shortForms = map[string]string{
	"--subreaper": "-s", "--process-group": "-g", "--single-child": "-c",
	"--parent-death-signal": "-p", "--expect-exit": "-e", "--rewrite": "-r",
	"--verbose": "-v", "--warn-on-reap": "-w",
}

// envTwin names the environment twin of a flag: --cleanup-grace is
// TEND_CLEANUP_GRACE.
func envTwin(name string) []string {
	return []string{"TEND_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// envHelp ends `tend --help` with the variables tend reads that are not
// shown beside a flag: tini's (read by hand, with tini's rules), -v's
// count, and the clients' and children's TEND_SOCKET.
const envHelp = `
ENVIRONMENT:
   Each flag's TEND_ twin is shown beside it; a flag wins over its twin, a twin over the config file.
   Children never get these twins, nor TEND_CONFIG, TEND_VERBOSE or TEND_PIDFD.
   TEND_VERBOSE=N           -v's twin, a count: 1 info, 2 debug
   TINI_VERBOSITY=N         tini's scale, wins over -v: 0 errors, 1 warnings, 2 info, 3 debug
   TINI_SUBREAPER           as -s, when set at all (tini's rule)
   TINI_KILL_PROCESS_GROUP  as -g, when set at all (tini's rule)
   TEND_PIDFD=0             signal children without pidfds (default: pidfds where the kernel has them)
   TEND_SOCKET              where the client commands look for tend (default /run/tend.sock); set in
                            every child to the socket tend serves
   GOGC                     tend's own garbage collector (default 50)
`

func newApp(sigs *signals.Set, argv []string, code *int) *cli.App {
	return &cli.App{
		Name:                   "tend",
		Usage:                  "a PID-1 init and process supervisor for containers",
		UsageText:              "tend [flags] [--] command [args...]",
		HideHelpCommand:        true,
		Commands:               client.Commands(code), // each sets *code
		UseShortOptionHandling: true,
		CustomAppHelpTemplate:  cli.AppHelpTemplate + envHelp,
		Writer:                 os.Stdout,
		ErrWriter:              os.Stderr,
		ExitErrHandler:         func(*cli.Context, error) {}, // exit codes are decided in run
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "subreaper", Aliases: []string{"s"}, EnvVars: envTwin("subreaper"),
				Usage: "accepted for tini compatibility: tend registers as subreaper whenever it is not PID 1"},
			&cli.BoolFlag{Name: "process-group", Aliases: []string{"g"}, EnvVars: envTwin("process-group"),
				Usage: "send signals to the main process's group, not only to it"},
			&cli.BoolFlag{Name: "single-child", Aliases: []string{"c"}, EnvVars: envTwin("single-child"),
				Usage: "dumb-init's -c: signal only the main process (tend's default; overrides -g)"},
			&cli.StringFlag{Name: "parent-death-signal", Aliases: []string{"p"}, EnvVars: envTwin("parent-death-signal"),
				Usage: "ask the kernel to send tend `SIGNAL` when its parent dies (forwarded like any other)"},
			&cli.IntSliceFlag{Name: "expect-exit", Aliases: []string{"e"}, EnvVars: envTwin("expect-exit"),
				Usage: "report exit `CODE` of the main process as 0 (repeatable)"},
			&cli.StringSliceFlag{Name: "rewrite", Aliases: []string{"r"}, EnvVars: envTwin("rewrite"),
				Usage: "dumb-init's `S:R`: forward signal S as R (names or numbers; R 0 drops S); repeatable"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Count: new(int), // read with c.Count
				Usage: "log more: -v info, -vv debug (default: warnings); TINI_VERBOSITY overrides"},
			&cli.BoolFlag{Name: "warn-on-reap", Aliases: []string{"w"}, EnvVars: envTwin("warn-on-reap"),
				Usage: "log a warning for every orphan reaped"},
			&cli.StringFlag{Name: "grace", EnvVars: envTwin("grace"), // read by durationFlag
				Usage: "the stop budget `D` (a duration with its unit: 30s): on SIGTERM/SIGINT (or a critical stop), kill what is left D after (default: none in init mode, the runtime's stop timeout decides; [shutdown] grace with --config; 0 is refused)"},
			&cli.StringFlag{Name: "cleanup-grace", Value: config.DefaultCleanupGrace.String(), EnvVars: envTwin("cleanup-grace"),
				Usage: "after the main process exits, SIGTERM what is left and SIGKILL it `D` after"},
			&cli.StringFlag{Name: "killed-exit-code", EnvVars: envTwin("killed-exit-code"), // parsed below, to name a bad value
				Usage: "exit with `CODE` (1-255, e.g. 137) when the stop had to SIGKILL anything (default: a clean stop's code; with --config it overrides [shutdown] killed_exit_code)"},
			&cli.StringFlag{Name: "track", EnvVars: envTwin("track"), // parsed below, to name a bad value
				Usage: "track the processes of services and jobs by `MODE`: auto, cgroup, subreaper or group (overrides [defaults] track; default auto; init mode's main process is always its own group, as tini's child)"},
			&cli.StringFlag{Name: "jobs-stop", EnvVars: envTwin("jobs-stop"), // parsed below, to name a bad value
				Usage: "stop the jobs `WHEN` the shutdown begins: first (and wait for them), with_main (default) or after_main (once the main process has exited) (overrides [jobs] stop)"},
			&cli.StringFlag{Name: "zombie-scan", EnvVars: envTwin("zombie-scan"), // parsed below, to name a bad value
				Usage: "every `D`, look for live processes holding zombies they never waited for, and warn (zombie.held) of each holding --zombie-warn-at (overrides [zombies] scan; default: only when asked, tend zombies)"},
			&cli.StringFlag{Name: "zombie-warn-at", EnvVars: envTwin("zombie-warn-at"),
				Usage: "warn of a parent holding `N` zombies or more (overrides [zombies] warn_at; default 10)"},
			&cli.StringFlag{Name: "log-format", Value: config.DefaultLogFormat, EnvVars: envTwin("log-format"),
				Usage: "log `FORMAT` on stderr: text or json"},
			&cli.StringFlag{Name: "config", EnvVars: envTwin("config"),
				Usage: "supervise the services of this TOML `FILE` (the command after -- becomes the critical service main)"},
			&cli.StringFlag{Name: "socket", EnvVars: []string{"TEND_CONTROL_SOCKET"},
				Usage: "serve the control API on this Unix socket `PATH` (supervisor mode: overrides [control] socket); " +
					"TEND_SOCKET is where clients look, and what children get"},
			&cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version on stdout and exit (-V: dumb-init's spelling)"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintf(c.App.Writer, "tend version %s - git.%s\n", version, commitID())
				return nil
			}
			if argv == nil {
				argv = c.Args().Slice()
			}
			if c.String("config") == "" && len(argv) == 0 {
				return usageError{"missing command (or --config FILE)"}
			}
			n, err := runInit(c, argv, sigs)
			if err != nil {
				return err
			}
			*code = n
			return nil
		},
	}
}

// fileFlags puts the flags that override the file's keys into f: at the
// start, and into a file reloaded later, so a reload sees the same.
func fileFlags(c *cli.Context, f *config.Config) error {
	if s := c.String("socket"); s != "" {
		f.Control.Socket = s
	}
	if c.IsSet("killed-exit-code") {
		v := c.String("killed-exit-code")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			err = fmt.Errorf("%q is not a number: want 1-255 (137 is SIGKILL's 128+9), or 0 for the code of a clean stop", v)
		} else {
			err = config.CheckKilledExitCode(n)
		}
		if err != nil {
			return usageError{fmt.Sprintf("--killed-exit-code (or TEND_KILLED_EXIT_CODE): %v", err)}
		}
		f.Shutdown.KilledExitCode = n
	}
	if c.IsSet("track") {
		v := c.String("track")
		tr, err := config.ParseTrack(v)
		if err != nil || tr == "" {
			return usageError{fmt.Sprintf("--track (or TEND_TRACK): %q is not one of auto, cgroup, subreaper, group", v)}
		}
		f.Defaults.Track = tr
	}
	if c.IsSet("zombie-scan") {
		v := c.String("zombie-scan")
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return usageError{fmt.Sprintf("--zombie-scan (or TEND_ZOMBIE_SCAN): %q is not a duration such as \"1m\" (0: only when asked)", v)}
		}
		f.Zombies.Scan = d
	}
	if c.IsSet("zombie-warn-at") {
		v := c.String("zombie-warn-at")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return usageError{fmt.Sprintf("--zombie-warn-at (or TEND_ZOMBIE_WARN_AT): %q is not a number of zombies (1 or more)", v)}
		}
		f.Zombies.WarnAt = n
	}
	if c.IsSet("jobs-stop") {
		st, err := config.ParseJobsStop(c.String("jobs-stop"))
		if err != nil {
			return usageError{fmt.Sprintf("--jobs-stop (or TEND_JOBS_STOP): %v", err)}
		}
		f.Jobs.Stop = st
	}
	return nil
}

// runInit runs tend as an init, in init or supervisor mode (one loop for
// both), with the control API when a socket is configured, and returns
// tend's exit code.
func runInit(c *cli.Context, argv []string, sigs *signals.Set) (int, error) {
	if sigs == nil {
		sigs = signals.Notify() // not reached: clientWord named a client command
	}
	stdout, stderr := outlet.New(1, 0), outlet.New(2, 0)
	defer func() {
		// tend's last words must reach its stderr before it exits. After
		// supervisor.Run this returns at once: Run flushed both by its
		// teardown deadline. Before it (a refused config), both flush side
		// by side by one deadline.
		by := time.Now().Add(outletFlush)
		done := make(chan struct{})
		go func() { defer close(done); stdout.CloseBy(by) }()
		stderr.CloseBy(by)
		<-done
	}()
	cfg, err := initConfig(c, argv, sigs, stderr)
	if err != nil {
		return -1, err
	}
	if path := c.String("config"); path != "" {
		if cfg.File, err = config.LoadWith(path, config.Options{CheckUser: checkUser}); err != nil {
			return -1, cli.Exit(fmt.Sprintf("config refused: %v", err), exitUsage)
		}
		cfg.GraceSet = cfg.Grace != 0
		if cfg.Grace == 0 {
			cfg.Grace = cfg.File.Shutdown.Grace // flag and env win over the file
		}
		cfg.Reload = func() (*config.Config, error) {
			f, err := config.LoadWith(path, config.Options{CheckUser: checkUser})
			if err == nil {
				err = fileFlags(c, f)
			}
			return f, err
		}
		cfg.SocketExplicit = cfg.File.Control.SocketSet
	} else {
		// Init mode: every default, no service, no socket unless asked.
		cfg.File, _ = config.Parse(nil, "defaults")
		cfg.File.Control.Socket = ""
		cfg.Init = true
	}
	if s := c.String("socket"); s != "" {
		cfg.SocketExplicit = true
	}
	if err := fileFlags(c, cfg.File); err != nil {
		return -1, err
	}
	stop := make(chan struct{})
	defer close(stop)
	sigCh := make(chan unix.Signal)
	sigs.Funnel(sigCh, stop)
	cfg.Signals, cfg.SIGCHLD = sigCh, sigs.CHLD
	cfg.Stdout, cfg.Stderr = stdout, stderr
	n, err := supervisor.Run(cfg)
	var ce *supervisor.ConfigError
	switch {
	case n < 0 && errors.As(err, &ce):
		return -1, cli.Exit(fmt.Sprintf("config refused: %v", err), exitUsage)
	case n < 0:
		return -1, err // a socket that was asked for cannot be served: exit 1
	}
	return n, nil // Run logged its errors before closing tend's stderr
}

// checkUser looks a service's user up, so that an unknown one is refused
// with every other problem of the file.
func checkUser(spec string) error {
	_, err := spawn.LookupUser(spec)
	var unknown user.UnknownUserError
	var unknownGroup user.UnknownGroupError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%q: no such user", string(unknown))
	case errors.As(err, &unknownGroup):
		return fmt.Errorf("%q: no such group", string(unknownGroup))
	}
	return err
}

// outletFlush bounds how long tend waits at exit for its stdout and stderr
// to take what is queued when it exits before supervisor.Run (which flushes
// them within its own teardown bound).
const outletFlush = time.Second

// initConfig turns flags and environment into the loop's config.
func initConfig(c *cli.Context, argv []string, sigs *signals.Set, logOut io.Writer) (supervisor.Config, error) {
	var cfg supervisor.Config
	log, err := newLogger(logOut, c.String("log-format"), c.Count("verbose"))
	if err != nil {
		return cfg, err
	}
	if s := c.String("parent-death-signal"); s != "" {
		sig, err := signals.Parse(s)
		if err != nil {
			return cfg, usageError{fmt.Sprintf("-p: %v", err)}
		}
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0); err != nil {
			return cfg, fmt.Errorf("prctl(PR_SET_PDEATHSIG, %s): %w", signals.Name(sig), err)
		}
	}
	for _, code := range c.IntSlice("expect-exit") {
		if code < 0 || code > 255 {
			return cfg, usageError{fmt.Sprintf("-e: exit code %d out of range 0-255", code)}
		}
		cfg.ExpectZero = append(cfg.ExpectZero, code)
	}
	cfg.Rewrite, err = parseRewrites(c.StringSlice("rewrite"))
	if err != nil {
		return cfg, err
	}
	if c.IsSet("grace") {
		if cfg.Grace, err = durationFlag(c, "grace"); err != nil {
			return cfg, err
		}
		if cfg.Grace <= 0 {
			return cfg, usageError{"--grace: 0 is not a budget: leave it out to let your container runtime's stop timeout decide, or give one such as --grace 30s"}
		}
	}
	if cfg.CleanupGrace, err = durationFlag(c, "cleanup-grace"); err != nil {
		return cfg, err
	}
	if cfg.CleanupGrace < 0 {
		return cfg, usageError{"--cleanup-grace: negative duration"}
	}
	_, tiniGroup := os.LookupEnv("TINI_KILL_PROCESS_GROUP") // tini: on when set at all
	cfg.Group = (c.Bool("process-group") || tiniGroup) && !c.Bool("single-child")
	if len(argv) > 0 {
		cfg.Main = argv
	}
	cfg.Env = childEnv(os.Environ(), c.App.Flags)
	cfg.Log = log
	cfg.WarnReap = c.Bool("warn-on-reap")
	cfg.PidFDs = os.Getenv("TEND_PIDFD") != "0"
	cfg.Version = version
	warnIgnored(log, sigs.Ignored)
	return cfg, nil
}

// warnIgnored says once, at start, which signals tend cannot receive
// because it was started with them ignored (nohup, a non-interactive
// shell's `tend ... &`). They stay ignored on purpose: catching them
// (signal.Notify) would also take SIG_IGN away from the children, who
// inherit it from tend as they would from tini. TTIN and TTOU are never
// forwarded anyway, so their being ignored changes nothing for tend.
func warnIgnored(log *slog.Logger, ignored []unix.Signal) {
	var lost, names []string
	for _, sig := range ignored {
		names = append(names, signals.Name(sig))
		if sig != unix.SIGTTIN && sig != unix.SIGTTOU {
			lost = append(lost, signals.Name(sig))
		}
	}
	if len(lost) == 0 {
		if len(names) > 0 {
			log.Debug("signals ignored at start stay ignored", "sigs", strings.Join(names, ","))
		}
		return
	}
	log.Warn("tend was started with signals ignored: it will not receive them, and its children inherit them ignored; "+
		"to have them, start tend in the foreground (not with nohup, nor as a script's background job) "+
		"or through `env --default-signal="+strings.Join(lost, ",")+" tend ...`",
		"sigs", strings.Join(lost, ","))
}

// durationFlag reads a duration flag (or its env twin) with the parser's
// own words: urfave/cli's DurationFlag says only "parse error", where `--grace
// 5` needs to hear that the unit is missing.
func durationFlag(c *cli.Context, name string) (time.Duration, error) {
	v := c.String(name)
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err == nil {
		return d, nil
	}
	msg := fmt.Sprintf("--%s (or %s) %q: %v", name, envTwin(name)[0], v, err)
	if _, nerr := strconv.ParseFloat(strings.TrimSpace(v), 64); nerr == nil {
		msg += fmt.Sprintf(": a duration needs a unit, e.g. %ss (ms, s, m, h)", strings.TrimSpace(v))
	}
	return 0, usageError{msg}
}

// parseRewrites reads dumb-init's -r S:R pairs.
func parseRewrites(pairs []string) (map[unix.Signal]unix.Signal, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := map[unix.Signal]unix.Signal{}
	for _, p := range pairs {
		from, to, ok := strings.Cut(p, ":")
		if !ok {
			return nil, usageError{fmt.Sprintf("-r %q: want FROM:TO, e.g. TERM:QUIT", p)}
		}
		fs, err := signals.Parse(from)
		if err != nil {
			return nil, usageError{fmt.Sprintf("-r %q: %v", p, err)}
		}
		if why := signals.NotForwarded(fs); why != "" {
			return nil, usageError{fmt.Sprintf("-r %q: %s (%d) is %s, so rewriting it would have no effect", p, signals.Name(fs), fs, why)}
		}
		var ts unix.Signal
		if strings.TrimSpace(to) != "0" {
			if ts, err = signals.Parse(to); err != nil {
				return nil, usageError{fmt.Sprintf("-r %q: %v", p, err)}
			}
			if signals.Reserved(ts) {
				return nil, usageError{fmt.Sprintf("-r %q: %s (%d) is reserved for libc's threads (glibc 32 and 33, musl 34): tend does not send it", p, signals.Name(ts), ts)}
			}
		}
		out[fs] = ts
	}
	return out, nil
}

// newLogger builds the stderr logger. Default level warn; -v info; -vv
// debug. TINI_VERBOSITY, when set, wins with tini's scale (0 errors only, 1
// warnings, 2 info, 3 and up debug); TEND_VERBOSE is -v's twin, a count.
func newLogger(w io.Writer, format string, verbose int) (*slog.Logger, error) {
	level := slog.LevelWarn - slog.Level(4*verbose)
	if verbose == 0 {
		if n, err := strconv.Atoi(os.Getenv("TEND_VERBOSE")); err == nil && n > 0 {
			level = slog.LevelWarn - slog.Level(4*n)
		}
	}
	if v, ok := os.LookupEnv("TINI_VERBOSITY"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, usageError{fmt.Sprintf("TINI_VERBOSITY=%q: want a number >= 0", v)}
		}
		level = slog.LevelError - slog.Level(4*n)
	}
	if level < slog.LevelDebug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", format)}
}

// childEnv is tend's environment without tend's own settings: the env twins
// of its flags and TEND_CONFIG/TEND_VERBOSE are tend's, not the children's
// (a child that is itself a tend must not pick them up).
func childEnv(env []string, flags []cli.Flag) []string {
	own := map[string]bool{"TEND_CONFIG": true, "TEND_VERBOSE": true, "TEND_PIDFD": true}
	for _, f := range flags {
		if ef, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, name := range ef.GetEnvVars() {
				own[name] = true
			}
		}
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !own[name] {
			out = append(out, kv)
		}
	}
	return out
}

// commitID is the commit tend was built from: -X main.commit, else the
// build's vcs.revision, shortened to 12 hex characters.
func commitID() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value[:min(12, len(s.Value))]
			}
		}
	}
	return "unknown"
}
