//go:build linux

package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = time.Second

// maxSunPath is the size of sockaddr_un.sun_path, its terminating NUL
// included (unix(7)).
const maxSunPath = 108

// Listener is the control socket. Its Accept returns connections that know
// their peer's credentials and collect the fds passed over them.
type Listener struct {
	ul      *net.UnixListener
	path    string
	gid     int // the socket's group: members may talk to tend
	dev     uint64
	ino     uint64 // identify our socket file, so Close never removes another's
	nextID  atomic.Uint64
	closing sync.Once
	err     error // of the first Close

	closeFDs func(...int) // for passed fds nobody claims; nil: close at once
}

// Listen creates the Unix socket at path with exactly mode (permission bits)
// and, when group is not "", that group (a name or a numeric gid). The socket
// never exists at path with a wider mode, not even briefly: it is bound inside
// a fresh private directory next to path, chmod'ed and chown'ed there, then
// renamed over path. A stale socket at path (nobody accepts on it) is
// replaced; a live one, or any other kind of file, is an error.
func Listen(path string, mode os.FileMode, group string) (*Listener, error) {
	gid, err := resolveGroup(group)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("socket directory %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("socket directory %s: not a directory", dir)
	}
	stale, err := checkExisting(path)
	if err != nil {
		return nil, err
	}
	// MkdirTemp creates the directory 0700: until the rename, nobody but us
	// can reach the socket whatever mode bind(2) gave it (0777 &^ umask).
	tmp, err := os.MkdirTemp(dir, ".tend")
	if err != nil {
		return nil, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	ul, err := bindPrivate(filepath.Join(tmp, "s"), path, mode, gid, stale)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		ul.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// The group members are checked against is the file's own: without
	// a chown it is our fsgid, or the directory's when that is setgid.
	return &Listener{ul: ul, path: path, gid: int(st.Gid), dev: st.Dev, ino: st.Ino}, nil
}

// bindPrivate binds tmp, gives it its group and mode, and renames it to path.
// stale says a dead socket is at path and may be replaced.
func bindPrivate(tmp, path string, mode os.FileMode, gid int, stale bool) (*net.UnixListener, error) {
	for _, p := range []string{path, tmp} {
		if len(p) >= maxSunPath {
			return nil, fmt.Errorf("socket %s: path %s is %d bytes, the limit is %d", path, p, len(p), maxSunPath-1)
		}
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	// The file moves away from the name Go bound; Close must not unlink a
	// name that may by then be someone else's.
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		ul.Close()
		return nil, err
	}
	if gid >= 0 {
		// Chown before chmod: chown(2) may clear mode bits, chmod sets them last.
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("socket %s: group %d: %w", path, gid, err))
		}
	}
	if err := os.Chmod(tmp, mode.Perm()); err != nil {
		return fail(fmt.Errorf("socket %s: mode %v: %w", path, mode.Perm(), err))
	}
	flags := uint(unix.RENAME_NOREPLACE)
	if stale {
		flags = 0 // rename(2) atomically replaces the dead socket
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, flags)
	if errors.Is(err, unix.EINVAL) && flags != 0 {
		// A filesystem without RENAME_NOREPLACE: the check in
		// checkExisting is all we have.
		err = unix.Rename(tmp, path)
	}
	if errors.Is(err, unix.EEXIST) {
		return fail(fmt.Errorf("socket %s appeared while binding: another server is starting", path))
	}
	if err != nil {
		return fail(fmt.Errorf("rename socket to %s: %w", path, err))
	}
	return ul, nil
}

// checkExisting looks at what is at path. It returns stale=true for a socket
// nobody accepts on, false when nothing is there, and an error otherwise.
func checkExisting(path string) (stale bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return false, fmt.Errorf("socket %s: exists and is not a socket (%v)", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return false, fmt.Errorf("another server is listening on %s", path)
	}
	// Only ECONNREFUSED proves nobody listens. EAGAIN from connect(2) on a
	// Unix socket means a full backlog: someone is alive but busy.
	if errors.Is(err, unix.ECONNREFUSED) {
		return true, nil
	}
	return false, fmt.Errorf("socket %s: cannot tell whether it is in use: %w", path, err)
}

// resolveGroup turns a group name or number into a gid; "" is -1 (no chown).
func resolveGroup(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	// A number needs no entry in /etc/group: containers often have none.
	if gid, err := strconv.Atoi(group); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("socket group %q: negative gid", group)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("socket group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// Accept waits for the next connection and returns it wrapped (see conn). A
// connection whose peer credentials cannot be read is dropped.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		uc, err := l.ul.AcceptUnix()
		if err != nil {
			return nil, err
		}
		closer := l.closeFDs
		if closer == nil {
			closer = closeNow
		}
		c, err := newConn(uc, l.nextID.Add(1), closer)
		if err == nil {
			return c, nil
		}
		uc.Close() // the peer is gone already, or the kernel refused: next one
	}
}

// Close stops listening and removes the socket file if it is still ours: a
// newer tend may have replaced it. Close is idempotent.
func (l *Listener) Close() error {
	l.closing.Do(func() {
		var st unix.Stat_t
		// A small race remains between this Lstat and the unlink; rename is
		// the only atomic step, and a newer tend always renames.
		if unix.Lstat(l.path, &st) == nil && st.Dev == l.dev && st.Ino == l.ino {
			if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				l.err = fmt.Errorf("remove socket %s: %w", l.path, err)
			}
		}
		if err := l.ul.Close(); err != nil && l.err == nil {
			l.err = err
		}
	})
	return l.err
}

// Addr returns the socket's address.
func (l *Listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Path returns the socket's path.
func (l *Listener) Path() string { return l.path }

// Group returns the socket's group: its members may talk to tend.
func (l *Listener) Group() int { return l.gid }
