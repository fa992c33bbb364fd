//go:build linux

package boot

import (
	"errors"
	"syscall"
)

// The option words of argv, each KEY=VALUE, before "--".
const (
	OptStopSignal  = "stop-signal"     // subreaper: signal number for leftovers
	OptStopTimeout = "stop-timeout-ms" // subreaper: then SIGKILL
	OptKillMode    = "kill-mode"       // subreaper: KillUnit or KillMainOnly
	OptNProc       = "nproc"           // both: RLIMIT_NPROC soft = hard
	OptCtlFD       = "ctl-fd"          // both: the control (report) socket's fd when not 3
	OptSetsid      = "setsid"          // subreaper: 1: the command leads a session, not only a group
	OptCgroup      = "cgroup"          // both: comma-separated fds of cgroup directories to join (v2, v1 ...)
	OptUID         = "uid"             // exec: setuid
	OptGID         = "gid"             // exec: setgid
	OptGroups      = "groups"          // exec: comma-separated; empty: setgroups(0)
	OptUmask       = "umask"           // both: the command's umask (a number, 0-0777)
	OptNice        = "nice"            // both: its nice value, -20 to 19
	OptRlimit      = "rlimit"          // both, repeatable: RESOURCE:SOFT:HARD (numbers; -1 is unlimited)
	OptNoNewPrivs  = "no-new-privs"    // both: 1: PR_SET_NO_NEW_PRIVS before the exec
	OptPidFD       = "pidfd"           // subreaper: 1: pass a pidfd of the command with started
)

// rlimit is one OptRlimit.
type rlimit struct {
	res      int
	cur, max uint64
}

// Kill modes: what happens to the unit when its main process exits.
const (
	KillUnit     = "unit"      // stop and kill what is left, then exit
	KillMainOnly = "main-only" // exit at once; leftovers reparent to tend
)

// ctlFD is the control socket (subreaper) or the report socket (exec): 3,
// or OptCtlFD's when the command inherits fds of its own from 3 on. Set
// once by run, before anything uses it.
var ctlFD = 3

// options are the parsed argv of either mode; -1 means not given.
type options struct {
	stopSig     syscall.Signal
	stopTimeout int64 // milliseconds
	mainOnly    bool
	nproc       int64
	setsid      bool
	pidfd       bool // pass a pidfd of the command (SCM_RIGHTS) with started
	ctlFD       int
	cgroupFDs   []int // joined in order before the command starts
	uid, gid    int
	groups      []int
	setGroups   bool
	path        string
	argv        []string

	// The command's process settings, applied before its exec (both
	// modes): umask < 0 and !niceSet leave tend's.
	umask      int
	nice       int
	niceSet    bool
	rlimits    []rlimit
	noNewPrivs bool
}

func parseOptions(args []string) (*options, error) {
	o := &options{stopSig: syscall.SIGTERM, stopTimeout: 10000, nproc: -1, uid: -1, gid: -1, umask: -1}
	for i, a := range args {
		if a == "--" {
			rest := args[i+1:]
			if len(rest) < 2 || rest[0] == "" {
				return nil, errors.New("want -- PATH ARGV0 [ARGS...]")
			}
			o.path, o.argv = rest[0], rest[1:]
			return o, nil
		}
		if err := o.set(a); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("missing --")
}

// set applies one KEY=VALUE word.
func (o *options) set(word string) error {
	key, val, ok := cut(word, '=')
	if !ok {
		return errors.New("bad option " + word)
	}
	var n int64
	var err error
	if key == OptRlimit {
		return o.setRlimit(val)
	}
	if key != OptKillMode && key != OptGroups && key != OptCgroup {
		if n, err = atoi(val); err != nil {
			return errors.New("bad option " + word)
		}
	}
	switch key {
	case OptStopSignal:
		if n < 1 || n > 64 {
			return errors.New("bad option " + word)
		}
		o.stopSig = syscall.Signal(n)
	case OptStopTimeout:
		o.stopTimeout = n
	case OptKillMode:
		if val != KillUnit && val != KillMainOnly {
			return errors.New("bad option " + word)
		}
		o.mainOnly = val == KillMainOnly
	case OptNProc:
		o.nproc = n
	case OptCtlFD:
		if n < 3 || n > 1<<20 {
			return errors.New("bad option " + word)
		}
		o.ctlFD = int(n)
	case OptSetsid:
		if n != 0 && n != 1 {
			return errors.New("bad option " + word)
		}
		o.setsid = n == 1
	case OptPidFD:
		if n != 0 && n != 1 {
			return errors.New("bad option " + word)
		}
		o.pidfd = n == 1
	case OptCgroup:
		return o.setCgroups(val)
	case OptUID:
		o.uid = int(n)
	case OptGID:
		o.gid = int(n)
	case OptGroups:
		return o.setGroupList(val)
	case OptUmask:
		if n < 0 || n > 0o777 {
			return errors.New("bad option " + word)
		}
		o.umask = int(n)
	case OptNice:
		if n < -20 || n > 19 {
			return errors.New("bad option " + word)
		}
		o.nice, o.niceSet = int(n), true
	case OptNoNewPrivs:
		o.noNewPrivs = n == 1
	default:
		return errors.New("unknown option " + word)
	}
	return nil
}

// setRlimit reads RESOURCE:SOFT:HARD.
func (o *options) setRlimit(val string) error {
	r, rest, _ := cut(val, ':')
	c, m, _ := cut(rest, ':')
	res, err1 := atoi(r)
	cur, err2 := atoi(c)
	max, err3 := atoi(m)
	if err1 != nil || err2 != nil || err3 != nil || res < 0 || res > 15 || cur < -1 || max < -1 {
		return errors.New("bad rlimit " + val)
	}
	o.rlimits = append(o.rlimits, rlimit{res: int(res), cur: uint64(cur), max: uint64(max)}) // -1: RLIM_INFINITY
	return nil
}

// setCgroups reads the fds of OptCgroup: at least one, each above stdio.
func (o *options) setCgroups(val string) error {
	o.cgroupFDs = nil
	for {
		var f string
		f, val, _ = cut(val, ',')
		n, err := atoi(f)
		if err != nil || n < 3 || n > 1<<20 {
			return errors.New("bad cgroup fd " + f)
		}
		o.cgroupFDs = append(o.cgroupFDs, int(n))
		if val == "" {
			return nil
		}
	}
}

func (o *options) setGroupList(val string) error {
	o.setGroups = true
	for val != "" {
		var g string
		g, val, _ = cut(val, ',')
		n, err := atoi(g)
		if err != nil {
			return errors.New("bad group " + g)
		}
		o.groups = append(o.groups, int(n))
	}
	return nil
}

// cmdline reads this process's argv from /proc/self/cmdline: os.Args is
// filled in by package os's init, which must not run here.
func cmdline() ([]string, error) {
	fd, err := syscall.Open("/proc/self/cmdline", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		b = append(b, buf[:n]...)
	}
	var args []string
	for len(b) > 0 {
		var a []byte
		a, b, _ = cutBytes(b, 0)
		args = append(args, string(a))
	}
	return args, nil
}
