//go:build linux

package control

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The steps of Listen after the socket's directory is open, each through an
// fd. A private directory is named by privatePrefix and a random suffix;
// privateTries names are tried before giving up (EEXIST: someone took the
// name first).
const (
	privatePrefix = ".tend-"
	privateTries  = 16
	boundName     = "s" // the socket's name inside the private directory
)

// procSelfFD is where an fd of ours has a path: binding through it keeps
// the path short and free of anyone else's names. A variable for tests.
var procSelfFD = "/proc/self/fd/"

// umaskMu serialises the umask changes of concurrent Listens; nothing else
// in tend changes the umask.
var umaskMu sync.Mutex

// create makes the socket in l.dir under l.name (see Listen).
func (l *Listener) create(dirPath string, mode os.FileMode, gid int) (err error) {
	stale, err := l.checkExisting()
	if err != nil {
		return err
	}
	priv, pfd, err := l.makePrivate(dirPath)
	if err != nil {
		return err
	}
	defer func() {
		// Empty by now unless a step failed: the socket was renamed away.
		unix.Unlinkat(pfd, boundName, 0)
		unix.Unlinkat(l.dir, priv, unix.AT_REMOVEDIR)
		unix.Close(pfd)
	}()
	l.viaPath = !sameFile(procSelfFD+strconv.Itoa(pfd), pfd)
	addr := procSelfFD + strconv.Itoa(pfd) + "/" + boundName
	if l.viaPath {
		// No /proc: bind by the path. The private directory is ours and
		// 0700 (checked), and the umask still gives the mode at bind.
		addr = filepath.Join(dirPath, priv, boundName)
		if len(addr) >= maxSunPath {
			return fmt.Errorf("socket %s: without /proc it is bound at %s, %d bytes, the limit is %d", l.path, addr, len(addr), maxSunPath-1)
		}
	}
	if l.ul, err = bindWithMode(addr, mode); err != nil {
		return fmt.Errorf("bind %s: %w", l.path, err)
	}
	defer func() {
		if err != nil {
			l.ul.Close()
		}
	}()
	st, err := l.settle(pfd, mode, gid)
	if err != nil {
		return err
	}
	if err := l.moveIn(pfd, stale); err != nil {
		return err
	}
	// The group members are checked against is the file's own: without a
	// chown it is our fsgid, or the directory's when that is setgid.
	l.gid, l.dev, l.ino = int(st.Gid), st.Dev, st.Ino
	return nil
}

// checkExisting looks at what is at the socket's name, through the
// directory's fd. It returns the stat of a stale socket (nobody accepts on
// it), nil when nothing is there, and an error otherwise. The probe's
// connect(2) goes by a path, which is fine for a probe: its answer is never
// used to act on that path, only to allow replacing that very inode by
// rename(2) later (see moveIn).
func (l *Listener) checkExisting() (*unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(l.dir, l.name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", l.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("socket %s: exists and is not a socket (%s)", l.path, fileType(st.Mode))
	}
	probe := procSelfFD + strconv.Itoa(l.dir) + "/" + l.name
	if !sameFile(procSelfFD+strconv.Itoa(l.dir), l.dir) || len(probe) >= maxSunPath {
		probe = l.path
	}
	c, err := net.DialTimeout("unix", probe, probeTimeout)
	if err == nil {
		c.Close()
		return nil, fmt.Errorf("another server is listening on %s", l.path)
	}
	// Only ECONNREFUSED proves nobody listens. EAGAIN from connect(2) on a
	// Unix socket means a full backlog: someone is alive but busy.
	if errors.Is(err, unix.ECONNREFUSED) {
		return &st, nil
	}
	return nil, fmt.Errorf("socket %s: cannot tell whether it is in use: %w", l.path, err)
}

// makePrivate makes a fresh 0700 directory in l.dir and opens it; it
// returns its name and fd once fstat shows it is ours.
func (l *Listener) makePrivate(dirPath string) (string, int, error) {
	for range privateTries {
		name := fmt.Sprintf("%s%016x", privatePrefix, rand.Uint64())
		err := unix.Mkdirat(l.dir, name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			continue // someone's entry of that name: never ours to use
		}
		if err != nil {
			return "", -1, fmt.Errorf("socket directory %s: make a private directory: %w", dirPath, err)
		}
		fd, err := unix.Openat(l.dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Unlinkat(l.dir, name, unix.AT_REMOVEDIR)
			return "", -1, fmt.Errorf("socket directory %s: open private directory %s: %w", dirPath, name, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR ||
			int(st.Uid) != os.Geteuid() || st.Mode&0o777 != 0o700 {
			// Cannot happen in a directory safeDir accepted; refuse anyway.
			unix.Close(fd)
			unix.Unlinkat(l.dir, name, unix.AT_REMOVEDIR)
			return "", -1, fmt.Errorf("socket directory %s: private directory %s is not tend's own 0700 directory (uid %d, mode %04o, %v)",
				dirPath, name, st.Uid, st.Mode&0o7777, err)
		}
		return name, fd, nil
	}
	return "", -1, fmt.Errorf("socket directory %s: %d names for a private directory were all taken", dirPath, privateTries)
}

// bindWithMode binds and listens at addr with the umask set so that
// bind(2) creates the socket with exactly mode (0777 &^ umask, unix(7)).
//
// The umask is the process's, not the thread's: Listen runs at tend's
// start, before any child is started or any other goroutine creates files,
// so nothing else sees the brief change; it is restored at once.
func bindWithMode(addr string, mode os.FileMode) (*net.UnixListener, error) {
	umaskMu.Lock()
	old := unix.Umask(int(0o777 &^ mode))
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	unix.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, err
	}
	// The file moves away from the name Go bound; Close must not unlink a
	// name that may by then be someone else's.
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// settle opens the bound socket O_PATH in the private directory, checks it
// is our socket, gives it its group through that fd and checks its mode
// and group. It returns the socket's final stat.
func (l *Listener) settle(pfd int, mode os.FileMode, gid int) (*unix.Stat_t, error) {
	sfd, err := unix.Openat(pfd, boundName, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket %s: open what was bound: %w", l.path, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return nil, fmt.Errorf("socket %s: %w", l.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("socket %s: what was bound is not tend's socket (%s, uid %d)", l.path, fileType(st.Mode), st.Uid)
	}
	if gid >= 0 {
		if err := unix.Fchownat(sfd, "", -1, gid, unix.AT_EMPTY_PATH); err != nil {
			return nil, fmt.Errorf("socket %s: group %d: %w", l.path, gid, err)
		}
	}
	if err := unix.Fstat(sfd, &st); err != nil {
		return nil, fmt.Errorf("socket %s: %w", l.path, err)
	}
	if os.FileMode(st.Mode&0o7777) != mode && !l.viaPath {
		// A default ACL of the directory can narrow what bind gives. A
		// chmod through /proc/self/fd of the O_PATH fd reaches this
		// inode and no other (fchmod of a socket fd would not).
		if err := unix.Chmod(procSelfFD+strconv.Itoa(sfd), uint32(mode)); err != nil {
			return nil, fmt.Errorf("socket %s: mode %04o: %w", l.path, mode, err)
		}
		if err := unix.Fstat(sfd, &st); err != nil {
			return nil, fmt.Errorf("socket %s: %w", l.path, err)
		}
	}
	if got := os.FileMode(st.Mode & 0o7777); got != mode || (gid >= 0 && int(st.Gid) != gid) {
		return nil, fmt.Errorf("socket %s: came out with mode %04o and group %d, want %04o and group %d", l.path, got, st.Gid, mode, gid)
	}
	return &st, nil
}

// moveIn renames the socket from the private directory to its name, from
// fd to fd. Nothing at the name is replaced, except the stale socket seen
// by checkExisting if it is still that very inode.
func (l *Listener) moveIn(pfd int, stale *unix.Stat_t) error {
	flags := uint(unix.RENAME_NOREPLACE)
	if stale != nil {
		var now unix.Stat_t
		err := unix.Fstatat(l.dir, l.name, &now, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT): // gone meanwhile: nothing to replace
		case err != nil:
			return fmt.Errorf("socket %s: %w", l.path, err)
		case now.Dev != stale.Dev || now.Ino != stale.Ino:
			return fmt.Errorf("socket %s was replaced while tend was starting: refused", l.path)
		default:
			flags = 0 // rename(2) atomically replaces the dead socket
		}
	}
	err := unix.Renameat2(pfd, boundName, l.dir, l.name, flags)
	if errors.Is(err, unix.EINVAL) && flags != 0 {
		// A filesystem without RENAME_NOREPLACE: the check in
		// checkExisting is all we have. rename(2) replaces the entry,
		// never what a symlink there points to.
		err = unix.Renameat(pfd, boundName, l.dir, l.name)
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("socket %s appeared while binding: another server is starting, or someone else made it", l.path)
	}
	if err != nil {
		return fmt.Errorf("rename socket to %s: %w", l.path, err)
	}
	return nil
}

// sameFile says whether path (a /proc/self/fd link) is the file of fd:
// false when /proc is not mounted, or is another namespace's.
func sameFile(path string, fd int) bool {
	var a, b unix.Stat_t
	return unix.Stat(path, &a) == nil && unix.Fstat(fd, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}

// fileType names the type of a file mode for messages.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFIFO:
		return "a fifo"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return fmt.Sprintf("type %#o", mode&unix.S_IFMT)
}
