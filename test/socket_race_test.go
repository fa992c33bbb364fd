//go:build linux

package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// The socket's creation raced by a caller who can write to the socket's
// directory (issue 13): uid 1000 watches the directory with inotify and,
// as tend starts, swaps entries toward a root-only 0600 file: its own
// directory (holding a symlink "s" to the target) for tend's private
// directory with RENAME_EXCHANGE, a symlink to the target at the socket's
// name, or its own stale socket exchanged for such a symlink.

const (
	raceUID     = 1000
	raceTarget  = "secret"
	raceContent = "root only\n"
	raceToggles = 101 // exchanges per private directory seen: odd, ours stays in place
)

// raceAttack is what the attacker does in one start.
type raceAttack int

const (
	swapPrivate raceAttack = iota // exchange tend's private directory with ours
	linkSocket                    // a symlink at the socket's name
	swapStale                     // our stale socket at the name, exchanged for a symlink
	raceAttacks
)

// asUIDThread runs fn on an OS thread whose uid and gid are uid: raw
// setresuid changes that thread only. The thread is never unlocked, so it
// dies with the goroutine and no other goroutine runs as uid.
func asUIDThread(uid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, c := range [][4]uintptr{{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, uintptr(uid), uintptr(uid), uintptr(uid)},
			{unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)}} {
			if _, _, errno := unix.RawSyscall(c[0], c[1], c[2], c[3]); errno != 0 {
				errc <- fmt.Errorf("syscall %d: %w", c[0], errno)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// raceAttacker prepares attack a in dir as uid 1000, then reacts to the
// directory's events until stop is closed; ready is closed once it watches.
// It counts the swaps the kernel let it make.
func raceAttacker(dir, target string, a raceAttack, ready, stop chan struct{}, swaps *atomic.Int64) error {
	return asUIDThread(raceUID, func() error {
		sock := filepath.Join(dir, "s")
		evil, lnk := filepath.Join(dir, "evil"), filepath.Join(dir, "lnk")
		if err := os.Mkdir(evil, 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(evil, "s")); err != nil {
			return err
		}
		if err := os.Symlink(target, lnk); err != nil {
			return err
		}
		if a == swapStale {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				return err
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}
		ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			return err
		}
		defer unix.Close(ifd)
		if _, err := unix.InotifyAddWatch(ifd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
			return err
		}
		close(ready)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			fds := []unix.PollFd{{Fd: int32(ifd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 5); n <= 0 {
				continue
			}
			n, err := unix.Read(ifd, buf)
			if err != nil {
				continue
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafePointer(&buf[off]))
				name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
				off += unix.SizeofInotifyEvent + int(ev.Len)
				var err error
				switch {
				case a == swapPrivate && strings.HasPrefix(name, ".tend"):
					// Back and forth, so that one of tend's steps after the
					// bind finds ours in place of its directory.
					for range raceToggles {
						if err = unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, name), unix.AT_FDCWD, evil, unix.RENAME_EXCHANGE); err != nil {
							break
						}
						swaps.Add(1)
					}
				case a == linkSocket && name != "s":
					err = os.Symlink(target, sock)
				case a == swapStale && name != "s" && name != "lnk":
					err = unix.Renameat2(unix.AT_FDCWD, sock, unix.AT_FDCWD, lnk, unix.RENAME_EXCHANGE)
				default:
					continue
				}
				if err == nil {
					swaps.Add(1)
				}
			}
		}
	})
}

// raceOutcome starts tend with its socket at dir/s (mode 0666) while attack
// a runs, and says how the start ended: "served" (a real socket of root's,
// mode 0666, answering), "refused: MESSAGE", or "stuck: ..." (a failure).
func raceOutcome(t *testing.T, cfg, dir, target string, a raceAttack, swaps *atomic.Int64) string {
	t.Helper()
	ready, stop, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() { done <- raceAttacker(dir, target, a, ready, stop, swaps) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("attacker: %v", err)
	}
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("attacker: %v", err)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}()
	sock := filepath.Join(dir, "s")
	r := startTend(t, opts{pid1: true}, "--config", cfg, "--", "sleep", "100000")
	c := api.NewClient(sock)
	defer c.CloseIdle()
	deadline := time.Now().Add(hWait)
	for time.Now().Before(deadline) {
		if !r.running() {
			e := r.stderrAll()
			if r.wait() == 0 || !strings.Contains(e, dir) {
				t.Fatalf("attack %d: tend exited %d without naming %s: %q", a, r.wait(), dir, e)
			}
			i := strings.Index(e, dir)
			return "refused: " + strings.SplitN(e[max(0, i-40):], "\n", 2)[0]
		}
		var st unix.Stat_t
		if unix.Lstat(sock, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Status(ctx)
			cancel()
			if err == nil {
				// What serves is tend; what is at the name now must be its
				// socket (the stat above may be of the attacker's, replaced
				// by tend since).
				if err := unix.Lstat(sock, &st); err != nil || st.Mode != unix.S_IFSOCK|0o666 || st.Uid != 0 {
					t.Errorf("attack %d: tend serves on a socket of mode %#o, uid %d; want 0666, root's", a, st.Mode, st.Uid)
				}
				r.signal(unix.SIGTERM)
				r.wait()
				return "served"
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	var st unix.Stat_t
	unix.Lstat(sock, &st)
	r.kill()
	return fmt.Sprintf("stuck: tend neither serves on a real socket nor refused within %v (at %s: mode %#o, uid %d); stderr:\n%s",
		hWait, sock, st.Mode, st.Uid, r.stderrNow())
}

// TestSocketStartRace: starts raced by uid 1000 in the two layouts where
// it can write to the socket's directory, a sticky world-writable one and
// its own: each start is refused naming the directory, and the target
// keeps its mode, owner and content every time.
func TestSocketStartRace(t *testing.T) {
	needRoot(t)
	t.Parallel()
	for _, layout := range []struct {
		name   string
		mode   os.FileMode
		owner  int
		starts int
		want   string // in the outcome of every start
	}{
		{"sticky 1777", 0o777 | os.ModeSticky, 0, 40, "has mode 1777: refused"},
		{"owned by uid 1000", 0o755, raceUID, 40, "is owned by uid 1000: refused"},
	} {
		t.Run(layout.name, func(t *testing.T) {
			base := hDir(t)
			target := filepath.Join(base, raceTarget)
			if err := os.WriteFile(target, []byte(raceContent), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(base, "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, layout.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, layout.owner, layout.owner); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(t.TempDir(), "tend.toml")
			body := fmt.Sprintf("[control]\nsocket = %s\nmode = \"0666\"\n", svQuote(filepath.Join(dir, "s")))
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			outcomes := map[string]int{}
			var swaps atomic.Int64
			unexpected, stuck := 0, 0
			for i := range layout.starts {
				a := raceAttack(i % int(raceAttacks))
				got := raceOutcome(t, cfg, dir, target, a, &swaps)
				outcomes[fmt.Sprintf("attack %d: %s", a, got)]++
				var st unix.Stat_t
				b, _ := os.ReadFile(target)
				if err := unix.Lstat(target, &st); err != nil || st.Mode != unix.S_IFREG|0o600 || st.Uid != 0 || string(b) != raceContent {
					t.Fatalf("start %d (attack %d, %s): the target is now mode %#o, uid %d, %q (%v); want 0600, root's, untouched",
						i+1, a, got, st.Mode, st.Uid, b, err)
				}
				if strings.HasPrefix(got, "stuck") {
					if stuck++; stuck == 1 {
						t.Errorf("start %d (attack %d): %s", i+1, a, got)
					}
					continue
				}
				if !strings.Contains(got, layout.want) {
					if unexpected++; unexpected == 1 {
						t.Errorf("start %d (attack %d): %s, want %q", i+1, a, got, layout.want)
					}
				}
			}
			if stuck > 0 {
				t.Errorf("%d of %d starts neither served on a real socket nor were refused", stuck, layout.starts)
			}
			if unexpected > 0 {
				t.Errorf("%d of %d starts did not end with %q", unexpected, layout.starts, layout.want)
			}
			t.Logf("%d starts, %d swaps the kernel allowed the attacker; target untouched every time; outcomes:", layout.starts, swaps.Load())
			for o, n := range outcomes {
				t.Logf("  %4d  %s", n, o)
			}
		})
	}
}

func unsafePointer(b *byte) unsafe.Pointer { return unsafe.Pointer(b) }
