//go:build linux

// Package spawn turns a Spec into a running child, in two steps that keep
// slow work away from the reaper's lock (DESIGN.md §1.9):
//
//   - Prepare resolves the program in PATH and opens the working directory.
//     It touches the filesystem and can block (a hung NFS or FUSE path), so
//     the caller runs it on a blocking.Pool worker, as the identity the child
//     will have, so that a lookup never sees more than the child could.
//   - Prepared.Start only forks and execs; it runs inside reaper.Start. The
//     child enters its directory through the fd Prepare opened
//     (/proc/self/fd/N), so a slow directory cannot hold the lock. A hung
//     executable (FUSE, NFS) can still stall execve in the vfork'd child,
//     and with it the parent: that one limit remains.
//
// It never waits: the reaper owns every exit. It uses syscall.ForkExec
// rather than os.StartProcess: the reaper's handle is what signals a child,
// with an optional pidfd from SysProcAttr.PidFD.
package spawn

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit codes for a command that could not be run, as shells and tini use them.
const (
	ExitNotExecutable = 126
	ExitNotFound      = 127
)

// Spec says how to start one child.
type Spec struct {
	Argv []string // Argv[0] is looked up in the PATH of Env (or tend's PATH)
	Env  []string // the child's whole environment
	Dir  string   // working directory; "" keeps tend's

	// Cred, if set, is the uid, gid and supplementary groups to run as.
	Cred *syscall.Credential

	// Setsid puts the child in a new session (jobs); Setpgid in a new
	// process group (the main process, services). Never both: setpgid after
	// setsid fails with EPERM.
	Setsid  bool
	Setpgid bool

	// Foreground makes the child's new process group the foreground group
	// of the controlling tty on fd 0. Set it only when that tty is tend's
	// controlling tty (see ForegroundTTY): otherwise TIOCSPGRP fails the
	// whole start with ENOTTY.
	Foreground bool

	// Files are the child's fds 0, 1, 2 (and more); nil means tend's own
	// stdin, stdout and stderr. Every other fd of tend is close-on-exec.
	Files []uintptr

	// InheritFDs passes on the fds above 2 that tend itself inherited (see
	// AdoptInheritedFDs), as tini does: for the main process and services,
	// never for jobs.
	InheritFDs bool
}

// ExecError is a command that could not be started: not found, not
// executable, or refused by execve.
type ExecError struct {
	Path string
	Err  error
}

func (e *ExecError) Error() string {
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		return fmt.Sprintf("exec %s: %v (%s)", e.Path, e.Err, unix.ErrnoName(errno))
	}
	return fmt.Sprintf("exec %s: %v", e.Path, e.Err)
}
func (e *ExecError) Unwrap() error { return e.Err }

// Code is the conventional exit status for this failure: 127 when the
// program does not exist, 126 when it exists but cannot be executed.
func (e *ExecError) Code() int {
	if errors.Is(e.Err, unix.ENOENT) || errors.Is(e.Err, unix.ENOTDIR) {
		return ExitNotFound
	}
	return ExitNotExecutable
}

// Prepared is a Spec whose program has been found and whose working
// directory is open: all Start has left to do is fork and exec.
type Prepared struct {
	spec     Spec
	path     string
	dirFD    int // O_PATH fd of spec.Dir, or -1
	cgroupFD int // the cgroup v2 directory the child starts in (clone3), or -1
}

// Cred is the credential p's child gets, nil for tend's own.
func (p *Prepared) Cred() *syscall.Credential { return p.spec.Cred }

// AsRoot returns a copy of p whose child keeps tend's credentials: for a
// trampoline that drops them itself once it has done what needs root.
func (p *Prepared) AsRoot() *Prepared {
	q := *p
	q.spec.Cred = nil
	return &q
}

// InCgroup returns a copy of p whose child is created inside the cgroup
// of the directory fd (clone3 CLONE_INTO_CGROUP): it never runs a moment
// outside it, so no fork of its can escape. The fd stays the caller's.
func (p *Prepared) InCgroup(fd int) *Prepared {
	q := *p
	q.cgroupFD = fd
	return &q
}

// Path is the program that Start will execute.
func (p *Prepared) Path() string { return p.path }

// Spec is the spec p was prepared from. Files may be set on the copy
// returned, for Start (see WithFiles).
func (p *Prepared) Spec() Spec { return p.spec }

// WithFiles returns a copy of p that starts the child with files as its fds
// 0, 1, 2 (and more). Both share the directory fd: Release only one.
func (p *Prepared) WithFiles(files []uintptr) *Prepared {
	q := *p
	q.spec.Files = files
	return &q
}

// Via returns a copy of p that starts path with argv and env instead of
// p's program (a wrapper: the unit helper, which runs p's program itself),
// with extra appended to its fds after the stdio and, with InheritFDs,
// after tend's inherited fds, which stay at their numbers for the program
// to pass on. The directory, credentials, session and stdio stay p's. Both
// share the directory fd: Release only one. first is the fd number the
// first of extra gets.
func (p *Prepared) Via(path string, argv, env []string, extra ...uintptr) (q *Prepared, first int) {
	c := *p
	c.path = path
	c.spec.Argv, c.spec.Env = argv, env
	files := c.spec.Files
	if files == nil {
		files = []uintptr{0, 1, 2}
	}
	if c.spec.InheritFDs {
		files = withInherited(files)
		c.spec.InheritFDs = false // placed: Start must not place them again
	}
	first = len(files)
	c.spec.Files = append(append([]uintptr(nil), files...), extra...)
	return &c, first
}

// Prepare finds the program and opens the working directory, with the
// rights of the thread it runs on (see blocking.Pool). Failures are
// *ExecError naming the path and the errno; a caller who may not see a
// directory gets EACCES whether or not what it asked for exists. Release the
// result when it will not be started, or once it has been.
func Prepare(s Spec) (*Prepared, error) {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return nil, &ExecError{Path: "", Err: errors.New("empty command")}
	}
	p := &Prepared{spec: s, dirFD: -1, cgroupFD: -1}
	if s.Dir != "" {
		// The child's chdir failing would come back as a bare errno that
		// reads like the program's own; name the directory instead.
		fd, err := unix.Open(s.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			// O_PATH needs no permission on the directory itself: check
			// that the child may enter it (search permission, as fsuid).
			err = unix.Faccessat(fd, ".", unix.X_OK, unix.AT_EACCESS)
			if err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			return nil, &ExecError{Path: s.Argv[0], Err: fmt.Errorf("working directory %s: %w", s.Dir, errnoOf(err))}
		}
		p.dirFD = fd
	}
	path, err := lookPath(s.Argv[0], envPath(s.Env), p.dirFD)
	if err != nil {
		p.Release()
		return nil, &ExecError{Path: s.Argv[0], Err: err}
	}
	p.path = path
	return p, nil
}

// Release closes the directory fd. Closing an O_PATH fd never blocks.
func (p *Prepared) Release() {
	if p.dirFD >= 0 {
		unix.Close(p.dirFD)
		p.dirFD = -1
	}
}

// Start forks and execs the child and returns its pid; with pidfd set it
// also asks the kernel for a pidfd (SysProcAttr.PidFD, -1 where there is
// none). A failure of execve (or of the setup before it) is an *ExecError;
// the child is then already reaped, by syscall.ForkExec itself, which is
// why Start must run inside reaper.Start.
func (p *Prepared) Start(pidfd *int) (int, error) {
	s := p.spec
	files := s.Files
	if files == nil {
		files = []uintptr{0, 1, 2}
	}
	if s.InheritFDs {
		files = withInherited(files)
	}
	dir := s.Dir
	if p.dirFD >= 0 {
		// The child chdirs before its exec, while tend's fds (this one
		// close-on-exec) are still open in it; a process may always use
		// its own /proc/self/fd, even after setuid made it non-dumpable.
		dir = "/proc/self/fd/" + strconv.Itoa(p.dirFD)
	}
	attr := &syscall.ProcAttr{
		Dir:   dir,
		Env:   s.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: s.Cred,
			Setsid:     s.Setsid,
			Setpgid:    s.Setpgid && !s.Setsid,
			Foreground: s.Foreground && !s.Setsid,
			Ctty:       0, // with Foreground: tend's fd 0, checked by ForegroundTTY
			PidFD:      pidfd,
		},
	}
	if p.cgroupFD >= 0 {
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, p.cgroupFD
	}
	pid, err := syscall.ForkExec(p.path, s.Argv, attr)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == syscall.EAGAIN {
			// fork itself failed (pids.max, RLIMIT_NPROC): not the
			// command's fault, so not an ExecError.
			return 0, fmt.Errorf("fork %s: %w", p.path, err)
		}
		return 0, &ExecError{Path: p.path, Err: err}
	}
	return pid, nil
}

// errnoOf unwraps a *PathError to its errno, so messages say "working
// directory /x: no such file or directory (ENOENT)" once.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// envPath returns the PATH in env, or tend's own when env has none.
func envPath(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return os.Getenv("PATH")
}

// DefaultPath is searched when there is no PATH at all, as execvp(3) does.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LookPath finds file as execvp(3) would: a name with a slash is used as
// is, any other is searched in the colon-separated path (an empty entry
// meaning the current directory). It reports ENOENT when nothing is found
// and EACCES when only non-executable candidates are.
func LookPath(file, path string) (string, error) { return lookPath(file, path, -1) }

// lookPath is LookPath with relative names resolved from dirFD (the
// child's working directory) when it is not -1. Access is checked with
// faccessat(AT_EACCESS), that is with the thread's fsuid, fsgid and groups
// (access(2) would use the real uid, root's).
func lookPath(file, path string, dirFD int) (string, error) {
	at := unix.AT_FDCWD
	if dirFD >= 0 {
		at = dirFD
	}
	// check says whether p may be executed; isDir is reported apart:
	// execve(2) of a directory is EACCES, but a search skips directories.
	check := func(p string) (isDir bool, err error) {
		var st unix.Stat_t
		if err := unix.Fstatat(at, p, &st, 0); err != nil {
			return false, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return true, unix.EACCES
		}
		return false, unix.Faccessat(at, p, unix.X_OK, unix.AT_EACCESS)
	}
	if strings.Contains(file, "/") {
		if _, err := check(file); err != nil {
			return "", err
		}
		return file, nil
	}
	if path == "" {
		path = DefaultPath
	}
	denied := false
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + file
		switch isDir, err := check(p); {
		case err == nil:
			return p, nil
		case errors.Is(err, unix.EACCES) && !isDir:
			denied = true
		}
	}
	if denied {
		return "", unix.EACCES
	}
	return "", unix.ENOENT
}

// SetEnv returns a copy of env in which key has value: earlier definitions
// of key are dropped, the new one comes last. env itself is not changed.
func SetEnv(env []string, key, value string) []string {
	prefix := key + "="
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return append(out, prefix+value)
}
