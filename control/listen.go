//go:build linux

package control

import (
	"errors"
	"fmt"
	"github.com/tendinit/tend/internal/ratelog"
	"log/slog"
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
// their peer's credentials and collect the fds passed over them, within the
// connection limits (see admission).
type Listener struct {
	ul   *net.UnixListener
	path string
	dir  int    // O_DIRECTORY fd of the socket's directory, held until Close
	name string // the socket's name in dir
	gid  int    // the socket's group: members may talk to tend
	dev  uint64
	ino  uint64 // identify our socket file, so Close never removes another's
	// viaPath says /proc was not there: the socket was bound by a path
	// inside the private directory rather than through its fd.
	viaPath bool

	nextID  atomic.Uint64
	closing sync.Once
	done    chan struct{} // closed by Close: ends Accept's retry waits
	err     error         // of the first Close

	closeFDs func(...int)   // for passed fds nobody claims; nil: close at once
	log      *slog.Logger   // nil: discard
	admit    *admission     // nil: no connection limits
	answers  *headAnswers   // tend's answers in place of net/http's; nil: net/http's
	uid      int            // tend's own uid: it shares root's reserve
	refusals sync.WaitGroup // refuse's goroutines

	refusalsMu sync.Mutex
	refused    map[*conn]struct{} // guarded by refusalsMu: being refused
	closed     bool               // guarded by refusalsMu: no more refusals
	// acceptLog and refuseLog rate-limit what Accept logs.
	acceptLog, refuseLog ratelog.Limiter
	// accept is l.ul.AcceptUnix and wait is l.pause; faked in tests.
	accept func() (*net.UnixConn, error)
	wait   func(time.Duration) bool
}

// Listen creates the Unix socket at path with exactly mode (permission bits)
// and, when group is not "", that group (a name or a numeric gid).
//
// Every step after opening the socket's directory goes through fds, never
// through a path someone else can change (DESIGN.md §1.7): the directory is
// opened O_NOFOLLOW and refused when a uid other than root's and tend's
// could replace entries in it (owned by one, or group/other-writable
// without the sticky bit); the socket is bound inside a fresh 0700
// directory made in it, with the umask set so that bind(2) gives it exactly
// mode, opened O_PATH there, checked, chown'ed through that fd and renamed
// into place from the private directory's fd. So the socket never exists at
// path with a wider mode, not even briefly, and nothing but the socket is
// ever chmod'ed or chown'ed. A stale socket at path (nobody accepts on it)
// is replaced; a live one, or any other kind of file, is an error.
func Listen(path string, mode os.FileMode, group string) (*Listener, error) {
	gid, err := resolveGroup(group)
	if err != nil {
		return nil, err
	}
	path = filepath.Clean(path)
	if len(path) >= maxSunPath {
		return nil, fmt.Errorf("socket %s: the path is %d bytes, the limit is %d (sun_path)", path, len(path), maxSunPath-1)
	}
	dirPath, name := filepath.Dir(path), filepath.Base(path)
	if name == "/" || name == "." || name == ".." {
		return nil, fmt.Errorf("socket %s: not a file name", path)
	}
	dfd, err := openSocketDir(dirPath)
	if err != nil {
		return nil, err
	}
	l := &Listener{path: path, dir: dfd, name: name, done: make(chan struct{}),
		refused: map[*conn]struct{}{}}
	l.accept = func() (*net.UnixConn, error) { return l.ul.AcceptUnix() }
	l.wait = l.pause
	if err := l.create(dirPath, mode.Perm(), gid); err != nil {
		unix.Close(dfd)
		return nil, err
	}
	return l, nil
}

// openSocketDir opens the socket's directory and refuses one that someone
// other than root or tend may write to (safeDir).
func openSocketDir(dir string) (int, error) {
	// O_NOFOLLOW: a symlink as the last component is refused (ELOOP), its
	// owner could point it elsewhere between two uses.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	var lst unix.Stat_t
	switch {
	// With O_DIRECTORY a symlink fails with ENOTDIR, else ELOOP; the lstat
	// only names the cause.
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR) && unix.Lstat(dir, &lst) == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK:
		return -1, fmt.Errorf("socket directory %s is a symlink: refused, name the directory itself in [control] socket / --socket", dir)
	case errors.Is(err, unix.ENOTDIR):
		return -1, fmt.Errorf("socket directory %s: not a directory", dir)
	case err != nil:
		return -1, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if err := safeDir(dir, &st, os.Geteuid()); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// safeDir refuses a directory that a uid other than root and euid may
// write to (issue 13): its owner, and anyone group or other write
// permission lets in. The sticky bit is no exception: it stops others
// renaming tend's entries, but not taking the socket's name before tend
// does, nor filling the directory.
func safeDir(dir string, st *unix.Stat_t, euid int) error {
	whose := "root's"
	if euid != 0 {
		whose = fmt.Sprintf("root's or of tend's uid %d", euid)
	}
	if st.Uid != 0 && int(st.Uid) != euid {
		return fmt.Errorf("socket directory %s is owned by uid %d: refused, its owner could replace the socket; "+
			"put [control] socket / --socket in a directory of %s that only its owner may write to", dir, st.Uid, whose)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("socket directory %s has mode %04o: refused, group or others may write to it (sticky or not) and could take or replace the socket; "+
			"put [control] socket / --socket in a directory of %s that only its owner may write to (mode 0755 or 0700, as /run), or chmod go-w %s",
			dir, st.Mode&0o7777, whose, dir)
	}
	return nil
}

// Close stops listening and removes the socket file if it is still ours: a
// newer tend may have replaced it. Close is idempotent.
func (l *Listener) Close() error {
	l.closing.Do(func() {
		close(l.done)
		var st unix.Stat_t
		// Through the directory fd. A small race remains between this stat
		// and the unlink; rename is the only atomic step, and a newer tend
		// always renames.
		if unix.Fstatat(l.dir, l.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == l.dev && st.Ino == l.ino {
			if err := unix.Unlinkat(l.dir, l.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				l.err = fmt.Errorf("remove socket %s: %w", l.path, err)
			}
		}
		if err := l.ul.Close(); err != nil && l.err == nil {
			l.err = err
		}
		unix.Close(l.dir)
		l.endRefusals()
	})
	return l.err
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

// Addr returns the socket's address.
func (l *Listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Path returns the socket's path.
func (l *Listener) Path() string { return l.path }

// Group returns the socket's group: its members may talk to tend.
func (l *Listener) Group() int { return l.gid }

// ViaPath says /proc was not mounted, so the socket was bound by its path
// inside the private directory (whose mode bind(2) still got right from the
// umask) rather than through the directory's fd.
func (l *Listener) ViaPath() bool { return l.viaPath }
