//go:build linux

// Package spawn turns a Spec into a running child and returns its pid. It
// never waits: the reaper owns every exit, and Start must be called inside
// reaper.Start so that the pid is registered before it can be reaped.
//
// It uses syscall.ForkExec rather than os.StartProcess: tend signals children
// through the reaper's table (only while they are registered and unreaped),
// so a pidfd per child would only be one more fd to keep and release.
package spawn

import (
	"errors"
	"fmt"
	"os"
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

// Start forks and execs the child described by s and returns its pid. A
// failure of execve (or of the setup before it) is reported as an
// *ExecError; the child is then already reaped, by syscall.ForkExec itself.
func Start(s Spec) (int, error) {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return 0, &ExecError{Path: "", Err: errors.New("empty command")}
	}
	path, err := LookPath(s.Argv[0], envPath(s.Env))
	if err != nil {
		return 0, &ExecError{Path: s.Argv[0], Err: err}
	}
	if s.Dir != "" {
		// The child's chdir failing would come back as a bare errno that
		// reads like the program's own; name the directory instead.
		if st, err := os.Stat(s.Dir); err != nil || !st.IsDir() {
			if err == nil {
				err = unix.ENOTDIR
			}
			return 0, &ExecError{Path: s.Argv[0], Err: fmt.Errorf("working directory %s: %w", s.Dir, errnoOf(err))}
		}
	}
	files := s.Files
	if files == nil {
		files = []uintptr{0, 1, 2}
	}
	if s.InheritFDs {
		files = withInherited(files)
	}
	attr := &syscall.ProcAttr{
		Dir:   s.Dir,
		Env:   s.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: s.Cred,
			Setsid:     s.Setsid,
			Setpgid:    s.Setpgid && !s.Setsid,
			Foreground: s.Foreground && !s.Setsid,
			Ctty:       0, // with Foreground: tend's fd 0, checked by ForegroundTTY
		},
	}
	pid, err := syscall.ForkExec(path, s.Argv, attr)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == syscall.EAGAIN {
			// fork itself failed (pids.max, RLIMIT_NPROC): not the
			// command's fault, so not an ExecError.
			return 0, fmt.Errorf("fork %s: %w", path, err)
		}
		return 0, &ExecError{Path: path, Err: err}
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

// LookPath finds file as execvp(3) would: a name with a slash is used as
// is, any other is searched in the colon-separated path (an empty entry
// meaning the current directory). It reports ENOENT when nothing is found
// and EACCES when only non-executable candidates are.
func LookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	denied := false
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + file
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if err := unix.Access(p, unix.X_OK); err != nil {
			denied = true
			continue
		}
		return p, nil
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
