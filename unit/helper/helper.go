//go:build linux

// Package helper is tend's side of the unit helper: a small process, a
// re-exec of tend's own binary, that stands between tend and one unit (a
// service run or a job). Its code is in internal/boot, whose init takes over
// the process before any other package is initialised; this package builds
// the helper's argv and environment and speaks its protocol (see Conn).
//
// Two modes:
//   - Subreaper (where no writable cgroup v2 exists): the helper is
//     PR_SET_CHILD_SUBREAPER for the unit alone, so whatever the unit forks,
//     setsids or double-forks stays its descendant; it reaps them, names them,
//     counts them and kills them, and reports the main process's raw wait
//     status.
//   - Exec (a trampoline): it joins the unit's cgroups, sets limits, drops to
//     the unit's credentials and execs the command; for where clone3 with
//     CLONE_INTO_CGROUP is refused, and for units limited through cgroup v1
//     directories, which no clone can put a child in.
//
// This package never starts, waits for or signals a process itself: tend
// starts Exe with the argv, environment and fds described here, under the
// reaper's lock like any child.
package helper

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tendinit/tend/unit/helper/internal/boot"
)

// Exe is tend's own binary, the helper when no standalone one is
// installed (see Locate). It is read at the moment of the exec, so a
// replaced binary on disk is not run.
const Exe = "/proc/self/exe"

// Fds of the helper, besides its stdio 0-2.
const (
	FDControl = 3 // Subreaper: the control socket; Exec: the report socket
	FDCgroup  = 4 // Exec with Cgroup: an O_DIRECTORY fd of the unit's cgroup
)

// cgroupOpt is the option that joins the n cgroup directories whose fds
// follow the control socket's, first, or "" when n is 0.
func cgroupOpt(first, n int) string {
	if n == 0 {
		return ""
	}
	fds := make([]string, n)
	for i := range fds {
		fds[i] = strconv.Itoa(first + i)
	}
	return boot.OptCgroup + "=" + strings.Join(fds, ",")
}

// KillMode says what happens to the rest of the unit when its main process
// exits.
type KillMode string

const (
	// KillUnit gives what is left the stop signal, SIGKILL after the stop
	// timeout, and ends the helper once the unit is empty.
	KillUnit KillMode = boot.KillUnit
	// KillMainOnly ends the helper at once; the leftovers reparent to tend.
	KillMainOnly KillMode = boot.KillMainOnly
)

// Subreaper describes a helper in subreaper mode. tend applies the unit's
// credentials, session or process group, stdio, working directory and fd
// FDControl itself when it starts Exe; the main process gets its own
// process group inside the helper's session.
type Subreaper struct {
	Path string   // the executable, already looked up
	Argv []string // Argv[0] included
	Env  []string // the command's whole environment

	StopSignal  syscall.Signal // for leftovers after the main exits; 0: SIGTERM
	StopTimeout time.Duration  // then SIGKILL; 0: at once
	KillMode    KillMode       // "": KillUnit
	NProc       int            // > 0: RLIMIT_NPROC soft = hard = NProc for the command
	Setsid      bool           // the command leads a session (jobs), not only a group
	CtlFD       int            // the control socket's fd in the helper; 0: FDControl
	// Cgroups is how many cgroup directory fds (O_PATH or O_DIRECTORY)
	// follow the control socket's: the unit's cgroup v1 directories,
	// which the helper joins (writing "0" to each cgroup.procs) before it
	// forks the command.
	Cgroups int
	Process Process
	// PidFD has the helper pass a pidfd of the command with Started
	// (Message.FD), opened before it can reap the command. Off, the
	// message carries no fd: a unit that does not want one holds none.
	PidFD bool
}

// Process is what the command gets set in the helper before its exec (or
// the fork the command inherits it from): umask, nice, resource limits,
// no_new_privs. The zero Process sets nothing.
type Process struct {
	Umask      int // with UmaskSet: 0-0777
	UmaskSet   bool
	Nice       int
	NiceSet    bool
	Rlimits    []Rlimit
	NoNewPrivs bool
}

// Rlimit is one resource limit; Cur and Max of ^uint64(0) are unlimited.
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// Set reports whether p sets anything.
func (p Process) Set() bool { return p.UmaskSet || p.NiceSet || len(p.Rlimits) > 0 || p.NoNewPrivs }

// opts are p's option words.
func (p Process) opts() []string {
	var out []string
	if p.UmaskSet {
		out = append(out, opt(boot.OptUmask, p.Umask))
	}
	if p.NiceSet {
		out = append(out, opt(boot.OptNice, p.Nice))
	}
	for _, r := range p.Rlimits {
		out = append(out, boot.OptRlimit+"="+strconv.Itoa(r.Resource)+":"+limitText(r.Cur)+":"+limitText(r.Max))
	}
	if p.NoNewPrivs {
		out = append(out, opt(boot.OptNoNewPrivs, 1))
	}
	return out
}

func limitText(v uint64) string {
	if v == ^uint64(0) {
		return "-1"
	}
	return strconv.FormatUint(v, 10)
}

// Exec describes a helper in exec-trampoline mode. tend starts it as root,
// with fd FDControl the report socket and, if Cgroup, fd FDCgroup.
type Exec struct {
	Path string
	Argv []string
	Env  []string

	Cgroup bool                // join the cgroup of fd FDCgroup (CtlFD+1 when CtlFD is set)
	V1     int                 // join as many cgroup v1 directories, fds after those
	CtlFD  int                 // the report socket's fd; 0: FDControl
	NProc  int                 // > 0: RLIMIT_NPROC soft = hard = NProc
	Cred   *syscall.Credential // nil: stay root; Groups set unless NoSetGroups
	// Process is set as root, before the credentials are dropped: a
	// limit may be raised and nice lowered.
	Process Process
}

// Args returns the helper's argv and environment for s.
func (s Subreaper) Args() (argv, env []string, err error) {
	sig := s.StopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	mode := s.KillMode
	if mode == "" {
		mode = KillUnit
	}
	if sig < 1 || sig > 64 || s.StopTimeout < 0 || (mode != KillUnit && mode != KillMainOnly) {
		return nil, nil, fmt.Errorf("unit helper: bad options (signal %d, timeout %v, kill mode %q)", sig, s.StopTimeout, mode)
	}
	opts := []string{
		opt(boot.OptStopSignal, int(sig)),
		opt(boot.OptStopTimeout, int(s.StopTimeout.Milliseconds())),
		boot.OptKillMode + "=" + string(mode),
	}
	if s.NProc > 0 {
		opts = append(opts, opt(boot.OptNProc, s.NProc))
	}
	if s.Setsid {
		opts = append(opts, opt(boot.OptSetsid, 1))
	}
	if s.PidFD {
		opts = append(opts, opt(boot.OptPidFD, 1))
	}
	opts = append(opts, s.Process.opts()...)
	ctl := FDControl
	if s.CtlFD != 0 && s.CtlFD != FDControl {
		if s.CtlFD < FDControl {
			return nil, nil, fmt.Errorf("unit helper: control fd %d would sit on stdio", s.CtlFD)
		}
		opts = append(opts, opt(boot.OptCtlFD, s.CtlFD))
		ctl = s.CtlFD
	}
	if s.Cgroups < 0 {
		return nil, nil, fmt.Errorf("unit helper: %d cgroups", s.Cgroups)
	}
	if o := cgroupOpt(ctl+1, s.Cgroups); o != "" {
		opts = append(opts, o)
	}
	return build(boot.ModeSubreaper, opts, s.Path, s.Argv, s.Env)
}

// Args returns the helper's argv and environment for e.
func (e Exec) Args() (argv, env []string, err error) {
	var opts []string
	cg := FDCgroup
	if e.CtlFD != 0 && e.CtlFD != FDControl {
		if e.CtlFD < FDControl {
			return nil, nil, fmt.Errorf("unit helper: report fd %d would sit on stdio", e.CtlFD)
		}
		opts = append(opts, opt(boot.OptCtlFD, e.CtlFD))
		cg = e.CtlFD + 1
	}
	n := e.V1
	if e.Cgroup {
		n++
	}
	if e.V1 < 0 {
		return nil, nil, fmt.Errorf("unit helper: %d cgroup v1 directories", e.V1)
	}
	if o := cgroupOpt(cg, n); o != "" {
		opts = append(opts, o)
	}
	if e.NProc > 0 {
		opts = append(opts, opt(boot.OptNProc, e.NProc))
	}
	opts = append(opts, e.Process.opts()...)
	if c := e.Cred; c != nil {
		if !c.NoSetGroups {
			g := make([]string, len(c.Groups))
			for i, id := range c.Groups {
				g[i] = strconv.FormatUint(uint64(id), 10)
			}
			opts = append(opts, boot.OptGroups+"="+strings.Join(g, ","))
		}
		opts = append(opts, opt(boot.OptGID, int(c.Gid)), opt(boot.OptUID, int(c.Uid)))
	}
	return build(boot.ModeExec, opts, e.Path, e.Argv, e.Env)
}

func opt(key string, n int) string { return key + "=" + strconv.Itoa(n) }

// build assembles argv (name, mode, options, --, path, argv) and env (the
// command's, with the marker added last and any stray copy removed).
func build(mode string, opts []string, path string, cmd, cmdEnv []string) ([]string, []string, error) {
	if path == "" || len(cmd) == 0 {
		return nil, nil, errors.New("unit helper: empty command")
	}
	for _, s := range append([]string{path}, cmd...) {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, nil, fmt.Errorf("unit helper: NUL byte in %q", s)
		}
	}
	argv := append([]string{boot.Name, mode}, opts...)
	argv = append(append(argv, "--", path), cmd...)
	env := make([]string, 0, len(cmdEnv)+1)
	for _, kv := range cmdEnv {
		if !strings.HasPrefix(kv, boot.Marker+"=") {
			env = append(env, kv)
		}
	}
	return argv, append(env, boot.Marker+"="+boot.MarkerValue), nil
}
