//go:build linux

package reaper

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// forkExec starts argv without any reaper, as a child of the test process.
func forkExec(t *testing.T, argv ...string) int {
	t.Helper()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
	if err != nil {
		t.Fatalf("ForkExec(%q): %v", argv, err)
	}
	return pid
}

// starter returns a Start function for argv that honours the pidfd pointer.
func starter(argv ...string) func(*int) (int, error) {
	return func(pidfd *int) (int, error) {
		return syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
			Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{PidFD: pidfd, Setpgid: true}})
	}
}

// runReaper runs r.Run on SIGCHLD until the test ends, and a stand-in for
// the loop that takes every exit and sends it on the returned channel.
func runReaper(t *testing.T, r *Reaper) <-chan Exit {
	t.Helper()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Exit, 4096)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.Run(ctx, ch) }()
	go func() {
		defer wg.Done()
		var buf []Exit
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.Ready():
				buf = r.TakeExits(buf[:0])
				for _, e := range buf {
					out <- e
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait(); signal.Stop(ch) })
	return out
}

// both runs f with pidfds off and on.
func both(t *testing.T, f func(t *testing.T, pidfds bool)) {
	for _, on := range []bool{false, true} {
		t.Run("pidfd="+strconv.FormatBool(on), func(t *testing.T) { f(t, on) })
	}
}

func TestExitGoesToItsHandle(t *testing.T) {
	both(t, func(t *testing.T, pidfds bool) {
		r := New(Options{PidFDs: pidfds, Orphan: func(pid int, _ unix.WaitStatus) {
			t.Errorf("registered child %d reported as orphan", pid)
		}})
		exits := runReaper(t, r)
		const n = 200
		want := map[*Child]int{}
		for i := range n {
			code := i % 256
			c, err := r.Start(starter("/bin/sh", "-c", "exit "+strconv.Itoa(code)), code)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if pidfds && c.PidFD() < 0 {
				t.Fatalf("PidFDs on but child %d has no pidfd", c.Pid())
			}
			want[c] = code
		}
		deadline := time.After(20 * time.Second)
		for range n {
			select {
			case e := <-exits:
				w, ok := want[e.Child]
				if !ok || e.Code() != w || e.Child.Owner() != w || e.Pid != e.Child.Pid() {
					t.Errorf("exit %v: code %d, owner %v; want a registered handle with code %d", e, e.Code(), e.Child.Owner(), w)
				}
				if !e.Child.Reaped() {
					t.Errorf("handle of pid %d not marked reaped when its exit arrived", e.Pid)
				}
				e.Child.Release()
				delete(want, e.Child)
			case <-deadline:
				t.Fatalf("%d exits never delivered", len(want))
			}
		}
		if o := r.Orphans(); o != 0 {
			t.Errorf("Orphans() = %d, want 0", o)
		}
		if r.Live() != 0 {
			t.Errorf("Live() = %d after every exit", r.Live())
		}
	})
}

// TestRegistrationBeatsFastExit starts children that exit at once from
// several goroutines while the reaper runs: every exit must reach its
// handle, never the orphan count.
func TestRegistrationBeatsFastExit(t *testing.T) {
	r := New(Options{Orphan: func(pid int, _ unix.WaitStatus) { t.Errorf("pid %d exited before it was registered", pid) }})
	exits := runReaper(t, r)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := r.Start(starter("/bin/true"), nil); err != nil {
					t.Errorf("Start: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for range 400 {
		select {
		case e := <-exits:
			if e.Child == nil || e.Code() != 0 {
				t.Errorf("exit %v: want a handle and code 0", e)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("exit never delivered")
		}
	}
}

func TestOrphansCounted(t *testing.T) {
	seen := make(chan int, 10)
	r := New(Options{Orphan: func(pid int, _ unix.WaitStatus) { seen <- pid }})
	runReaper(t, r)
	want := map[int]bool{}
	for range 5 {
		want[forkExec(t, "/bin/sh", "-c", "exit 3")] = true
	}
	for range 5 {
		select {
		case pid := <-seen:
			if !want[pid] {
				t.Errorf("orphan callback for unknown pid %d", pid)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("orphan never reaped")
		}
	}
	if got := r.Orphans(); got != 5 {
		t.Errorf("Orphans() = %d, want 5", got)
	}
}

func TestSignalOnlyWhileLive(t *testing.T) {
	both(t, func(t *testing.T, pidfds bool) {
		r := New(Options{PidFDs: pidfds})
		exits := runReaper(t, r)
		c, err := r.Start(starter("/bin/sleep", "30"), "sleep")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Signal(unix.SIGTERM); err != nil {
			t.Fatalf("Signal(live) = %v", err)
		}
		e := <-exits
		if e.Child != c || !e.Status.Signaled() || e.Status.Signal() != unix.SIGTERM || e.Code() != 143 {
			t.Errorf("exit = %v (code %d), want the handle killed by SIGTERM, 143", e, e.Code())
		}
		if err := c.Signal(unix.SIGTERM); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Signal(reaped) = %v, want ErrNotRunning", err)
		}
		if err := c.SignalGroup(unix.SIGTERM); !errors.Is(err, ErrNotRunning) {
			t.Errorf("SignalGroup(reaped) = %v, want ErrNotRunning", err)
		}
		c.Release()
		if err := c.Signal(unix.SIGTERM); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Signal(released) = %v, want ErrNotRunning", err)
		}
	})
}

// TestReapedHandleNeverSignals is the registry rule in isolation: once the
// reap pass has marked a handle reaped, kill(2) is never called through it,
// whoever holds the number now. With pidfds on, the old handle's pidfd is
// a real one, of a real process already waited for (its number is free):
// Signal goes through it, the kernel refuses it, and kill(2) is still never
// called; the new child has no pidfd, so its signal is a kill(2).
func TestReapedHandleNeverSignals(t *testing.T) {
	both(t, func(t *testing.T, pidfds bool) {
		r := New(Options{PidFDs: pidfds})
		var kills []int
		r.kill = func(pid int, sig unix.Signal) error { kills = append(kills, pid); return nil }
		c, err := r.Start(func(pidfd *int) (int, error) {
			if pidfds {
				if pidfd == nil {
					t.Fatal("PidFDs on, but Start passed no pidfd pointer")
				}
				// A real process behind the pidfd, gone for good.
				pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{
					Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{PidFD: pidfd}})
				if err != nil {
					return 0, err
				}
				if _, err := unix.Wait4(pid, nil, 0, nil); err != nil {
					return 0, err
				}
			}
			return 4242, nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pidfds && c.PidFD() < 0 {
			t.Fatal("PidFDs on but the handle has no pidfd")
		}
		r.wait4 = fakeWait4(t, 4242, -2)
		r.Reap()
		if err := c.Signal(unix.SIGTERM); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Signal after reap = %v", err)
		}
		if err := c.SignalGroup(unix.SIGKILL); !errors.Is(err, ErrNotRunning) {
			t.Errorf("SignalGroup after reap = %v", err)
		}
		// A new child takes the number: its own handle works, the old never.
		d, _ := r.Start(func(*int) (int, error) { return 4242, nil }, nil)
		if err := d.Signal(unix.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		_ = c.Signal(unix.SIGKILL)
		_ = c.SignalGroup(unix.SIGKILL)
		if len(kills) != 1 || kills[0] != 4242 {
			t.Errorf("kills = %v, want exactly one, through the new handle", kills)
		}
		c.Release()
		if c.PidFD() != -1 {
			t.Errorf("PidFD after Release = %d, want -1", c.PidFD())
		}
	})
}

func TestStartErrorRegistersNothing(t *testing.T) {
	r := New(Options{})
	_, err := r.Start(func(*int) (int, error) { return 0, unix.ENOENT }, nil)
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Start = %v, want ENOENT", err)
	}
	if r.Live() != 0 {
		t.Errorf("Live() = %d after a failed start", r.Live())
	}
}

// fakeWait4 returns a wait4 that yields results in order: a pid, 0 for
// none ready, -1 for EINTR, -2 for ECHILD.
func fakeWait4(t *testing.T, results ...int) func(int, *unix.WaitStatus, int, *unix.Rusage) (int, error) {
	i := 0
	return func(pid int, ws *unix.WaitStatus, options int, ru *unix.Rusage) (int, error) {
		if pid != -1 || options != unix.WNOHANG {
			t.Errorf("wait4(%d, %#x), want wait4(-1, WNOHANG)", pid, options)
		}
		if i >= len(results) {
			t.Fatalf("wait4 called %d times, past the end", i+1)
		}
		v := results[i]
		i++
		switch v {
		case -1:
			return -1, unix.EINTR
		case -2:
			return -1, unix.ECHILD
		}
		*ws = unix.WaitStatus(7 << 8)
		return v, nil
	}
}

// TestReapLoopsUntilDone checks the loop with a fake wait4: every pid is
// taken in one pass, EINTR is retried, and ECHILD leaves a Ready token.
func TestReapLoopsUntilDone(t *testing.T) {
	tests := []struct {
		name      string
		results   []int
		wantReap  int
		wantReady bool
	}{
		{"until zero", []int{11, 12, 13, 0}, 3, true},
		{"until echild", []int{11, -1, 12, -2}, 2, true},
		{"orphans only", []int{11, 0}, 1, false},
		{"nothing", []int{0}, 0, false},
		{"no children", []int{-2}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var orphans []int
			r := New(Options{Orphan: func(pid int, _ unix.WaitStatus) { orphans = append(orphans, pid) }})
			c, _ := r.Start(func(*int) (int, error) { return 12, nil }, "twelve")
			r.wait4 = fakeWait4(t, tt.results...)
			if got := r.Reap(); got != tt.wantReap {
				t.Errorf("Reap() = %d, want %d", got, tt.wantReap)
			}
			owned := r.TakeExits(nil)
			if got := len(owned) + len(orphans); got != tt.wantReap {
				t.Errorf("delivered %d exits, want %d", got, tt.wantReap)
			}
			for _, e := range owned {
				if e.Child != c || e.Pid != 12 || e.Code() != 7 {
					t.Errorf("queued exit %+v, want pid 12's handle with code 7", e)
				}
			}
			select {
			case <-r.Ready():
				if !tt.wantReady {
					t.Error("Ready token without a queued exit or ECHILD")
				}
			default:
				if tt.wantReady {
					t.Error("no Ready token")
				}
			}
		})
	}
}

func TestIdle(t *testing.T) {
	r := New(Options{})
	exits := runReaper(t, r)
	if !r.Idle() {
		t.Fatal("Idle() = false with no child")
	}
	c, err := r.Start(starter("/bin/sleep", "30"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Idle() {
		t.Error("Idle() = true with a live child")
	}
	_ = c.Signal(unix.SIGKILL)
	<-exits
	if !r.Idle() {
		t.Error("Idle() = false once the only child was reaped and taken")
	}
}

func TestDescendantsAndSubreaper(t *testing.T) {
	if err := SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	if on, err := IsSubreaper(); err != nil || !on {
		t.Fatalf("IsSubreaper() = %v, %v; want true", on, err)
	}
	r := New(Options{})
	exits := runReaper(t, r)
	c, err := r.Start(starter("/bin/sh", "-c", "sleep 30 & sleep 30; wait"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if found, err = Descendants(); err != nil {
			t.Fatal(err)
		}
		if len(found) >= 3 {
			break
		}
	}
	if len(found) != 3 || found[0] != c.Pid() {
		t.Errorf("Descendants() = %v, want [%d and its two sleeps]", found, c.Pid())
	}
	_ = c.SignalGroup(unix.SIGKILL)
	<-exits
}
