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
)

func TestListenMode(t *testing.T) {
	old := syscall.Umask(0) // the widest bind(2) can create: 0777
	defer syscall.Umask(old)
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666, 0o700} {
		path := filepath.Join(t.TempDir(), "s")
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
	dir := t.TempDir()
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
