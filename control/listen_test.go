//go:build linux

package control

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/config"
)

func TestListenMode(t *testing.T) {
	old := syscall.Umask(0) // the widest bind(2) can create: 0777
	defer syscall.Umask(old)
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666, 0o700} {
		path := filepath.Join(privateDir(t), "s")
		l, err := Listen(path, mode, "4242")
		if err != nil {
			t.Fatalf("Listen(%v): %v", mode, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		if got := os.FileMode(st.Mode & 0o7777); got != mode || st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Gid != 4242 {
			t.Errorf("Listen(%v, 4242): mode %v gid %d type %#o", mode, got, st.Gid, st.Mode&unix.S_IFMT)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("Listen left %d entries in the directory, want only the socket", len(entries))
		}
		l.Close()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("after Close: Lstat = %v, want not exist", err)
		}
	}
}

// Watch the directory while sockets are created: the socket at path never
// has another mode, and the private directory is never more than 0700.
func TestListenNeverWider(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := privateDir(t)
	path := filepath.Join(dir, "s")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad []string
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				var st unix.Stat_t
				p := filepath.Join(dir, e.Name())
				if unix.Lstat(p, &st) != nil {
					continue
				}
				if mode := st.Mode & 0o7777; (p == path && mode != 0o600) || (p != path && mode != 0o700) {
					bad = append(bad, p+": "+os.FileMode(mode).String())
				}
			}
		}
	})
	for range 200 {
		l, err := Listen(path, 0o600, "")
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("seen with a wider mode: %q", bad)
	}
}

func TestListenStaleReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // the file stays, nobody accepts: a crashed tend's socket
	l, err := Listen(path, 0o600, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
}

func TestListenRefuses(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	for _, tc := range []struct{ path, group, want string }{
		{live, "", "another server is listening on " + live},
		{file, "", "exists and is not a socket"},
		{filepath.Join(dir, "missing", "s"), "", "socket directory " + filepath.Join(dir, "missing")},
		{filepath.Join(dir, "s"), "no-such-group-xyz", `socket group "no-such-group-xyz"`},
		{filepath.Join(dir, strings.Repeat("x", 120)), "", "the limit is 107"},
	} {
		if l, err := Listen(tc.path, 0o600, tc.group); err == nil || !strings.Contains(err.Error(), tc.want) {
			if l != nil {
				l.Close()
			}
			t.Errorf("Listen(%s, %q) = %v, want an error with %q", tc.path, tc.group, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the regular file was touched: %q", b)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Errorf("the live socket was harmed: %v", err)
	} else {
		c.Close()
	}
}

func TestListenGroupByName(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "s"), 0o660, "root")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Group() != 0 {
		t.Errorf("group root = gid %d, want 0", l.Group())
	}
}

// Close removes only its own socket: a newer tend's is left alone.
func TestCloseKeepsAnothersSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := Listen(path, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	other := path + ".new"
	ln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("Close removed the newer socket: %v", err)
	} else {
		c.Close()
	}
}

// privateDir is a fresh directory only root may write to, whatever the
// umask (t.TempDir's is 0777 &^ umask).
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The socket's directory: refused, naming it, why and what to do, when a
// uid other than root and tend's may write to it (its owner, or group or
// others, sticky or not: issue 13); accepted when it is root's and only
// root may write.
func TestListenDirectory(t *testing.T) {
	base := privateDir(t)
	mkdir := func(name string, mode os.FileMode, uid int) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil { // Chmod: Mkdir's mode is cut by the umask and drops the sticky bit
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, -1); err != nil {
			t.Fatal(err)
		}
		return d
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(mkdir("target", 0o755, 0), link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, want string // want: "" = accepted
	}{
		{"root 0755", mkdir("plain", 0o755, 0), ""},
		{"root 0700", mkdir("private", 0o700, 0), ""},
		{"sticky 1777", mkdir("sticky", 0o777|os.ModeSticky, 0), "has mode 1777: refused, group or others may write to it (sticky or not)"},
		{"sticky group-writable 1770", mkdir("sticky-group", 0o770|os.ModeSticky, 0), "has mode 1770: refused"},
		{"world-writable 0777", mkdir("world", 0o777, 0), "has mode 0777: refused, group or others may write to it"},
		{"group-writable 0775", mkdir("group", 0o775, 0), "has mode 0775: refused"},
		{"other-writable 0757", mkdir("other", 0o757, 0), "has mode 0757: refused"},
		{"owned by uid 1000", mkdir("user", 0o755, 1000), "is owned by uid 1000: refused, its owner could replace the socket"},
		{"sticky but owned by uid 1000", mkdir("user-sticky", 0o777|os.ModeSticky, 1000), "is owned by uid 1000: refused"},
		{"a symlink", link, "is a symlink: refused"},
		{"a file", file, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(tc.dir, "s")
			l, err := Listen(path, 0o660, "4242")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Listen(%s) = %v, want it accepted", path, err)
				}
				defer l.Close()
				var st unix.Stat_t
				if err := unix.Lstat(path, &st); err != nil {
					t.Fatal(err)
				}
				if st.Mode != unix.S_IFSOCK|0o660 || st.Gid != 4242 || st.Uid != 0 {
					t.Errorf("socket in %s: mode %#o, uid %d, gid %d; want a socket 0660, uid 0, gid 4242", tc.dir, st.Mode, st.Uid, st.Gid)
				}
				return
			}
			if err == nil {
				l.Close()
				t.Fatalf("Listen(%s) accepted, want an error with %q", path, tc.want)
			}
			if !strings.Contains(err.Error(), "socket directory "+tc.dir) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Listen(%s) = %v, want an error naming %s with %q", path, err, tc.dir, tc.want)
			}
			if strings.Contains(tc.want, "has mode") && !strings.Contains(err.Error(), "chmod go-w "+tc.dir) {
				t.Errorf("Listen(%s) = %v, want it to say what to do (chmod go-w %s)", path, err, tc.dir)
			}
			if ents, _ := os.ReadDir(tc.dir); len(ents) != 0 {
				t.Errorf("refused, but %s has %d entries", tc.dir, len(ents))
			}
		})
	}
}

// The Listener holds one fd of its directory and acts through it: with the
// directory renamed away, Close still removes the socket, and only it.
func TestListenActsThroughDirFD(t *testing.T) {
	base := privateDir(t)
	dir := filepath.Join(base, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	l, err := Listen(filepath.Join(dir, "s"), 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t) - before; got != 2 {
		t.Errorf("a Listener holds %d fds, want 2 (the socket and its directory)", got)
	}
	moved := filepath.Join(base, "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil { // a new directory at the old path
		t.Fatal(err)
	}
	decoy := filepath.Join(dir, "s")
	if err := os.WriteFile(decoy, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if ents, _ := os.ReadDir(moved); len(ents) != 0 {
		t.Errorf("after Close the socket's directory still has %d entries", len(ents))
	}
	if b, err := os.ReadFile(decoy); err != nil || string(b) != "keep" {
		t.Errorf("Close touched the file now at the old path: %q, %v", b, err)
	}
	if got := openFDs(t); got != before {
		t.Errorf("after Close %d fds are open, want %d", got, before)
	}
}

// Without /proc the socket is bound by its path in the private directory,
// and its mode still comes out exact from the umask at bind.
func TestListenWithoutProc(t *testing.T) {
	old := procSelfFD
	procSelfFD = "/nonexistent/fd/"
	defer func() { procSelfFD = old }()
	path := filepath.Join(privateDir(t), "s")
	l, err := Listen(path, 0o640, "4242")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.ViaPath() {
		t.Errorf("ViaPath() = false with no /proc")
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != unix.S_IFSOCK|0o640 || st.Gid != 4242 {
		t.Errorf("without /proc: mode %#o gid %d, want a socket 0640 gid 4242", st.Mode, st.Gid)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("dial: %v", err)
	} else {
		c.Close()
	}
}

// A stale socket is replaced, and the replacement has exactly the mode and
// group asked for, whatever the old one had.
func TestListenStaleModeAndGroup(t *testing.T) {
	path := filepath.Join(privateDir(t), "s")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(path, 0o660, "4242")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != unix.S_IFSOCK|0o660 || st.Gid != 4242 || l.Group() != 4242 {
		t.Errorf("replaced socket: mode %#o gid %d Group() %d, want 0660 and 4242", st.Mode, st.Gid, l.Group())
	}
}

// TestServeDefaultMode: a Config with no mode serves a socket with config's
// default mode, the one table of defaults.
func TestServeDefaultMode(t *testing.T) {
	old := syscall.Umask(0o022) // bind(2) alone would make 0755
	defer syscall.Umask(old)
	h := startServer(t, nil)
	st, err := os.Stat(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != config.DefaultMode {
		t.Errorf("socket mode %04o with no mode configured, want config.DefaultMode %04o", got, config.DefaultMode)
	}
}
