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

// runReaper runs r.Run on SIGCHLD until the test ends.
func runReaper(t *testing.T, r *Reaper) {
	t.Helper()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, ch); close(done) }()
	t.Cleanup(func() { cancel(); <-done; signal.Stop(ch) })
}

func TestExitGoesToOwnerExact(t *testing.T) {
	r := New(func(e Exit) { t.Errorf("registered child %d reported as orphan", e.Pid) })
	runReaper(t, r)
	const n = 200
	got := make(chan Exit, n)
	want := map[int]int{}
	for i := 0; i < n; i++ {
		code := i % 256
		pid, err := r.Start(func() (int, error) {
			pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", "exit " + strconv.Itoa(code)},
				&syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
			return pid, err
		}, func(e Exit) { got <- e })
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		want[pid] = code
	}
	deadline := time.After(20 * time.Second)
	for range n {
		select {
		case e := <-got:
			if w, ok := want[e.Pid]; !ok || e.Code() != w {
				t.Errorf("exit of pid %d: code %d, want %d (registered %v)", e.Pid, e.Code(), w, ok)
			}
			delete(want, e.Pid)
		case <-deadline:
			t.Fatalf("%d exits never delivered", len(want))
		}
	}
	if o := r.Orphans(); o != 0 {
		t.Errorf("Orphans() = %d, want 0", o)
	}
}

// TestRegistrationBeatsFastExit starts children that exit at once while the
// reaper runs: every exit must reach its owner, never the orphan count.
func TestRegistrationBeatsFastExit(t *testing.T) {
	r := New(func(e Exit) { t.Errorf("pid %d exited before it was registered", e.Pid) })
	runReaper(t, r)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				done := make(chan Exit, 1)
				_, err := r.Start(func() (int, error) {
					return syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
				}, func(e Exit) { done <- e })
				if err != nil {
					t.Errorf("Start: %v", err)
					return
				}
				select {
				case e := <-done:
					if e.Code() != 0 {
						t.Errorf("true exited %d", e.Code())
					}
				case <-time.After(10 * time.Second):
					t.Errorf("exit never delivered")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestOrphansCounted(t *testing.T) {
	seen := make(chan int, 10)
	r := New(func(e Exit) { seen <- e.Pid })
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

func TestSignalOnlyWhileRegistered(t *testing.T) {
	r := New(nil)
	runReaper(t, r)
	if err := r.Signal(os.Getpid(), unix.SIGUSR1, false); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Signal(unregistered) = %v, want ErrNotRunning", err)
	}
	exits := make(chan Exit, 1)
	pid, err := r.Start(func() (int, error) {
		return syscall.ForkExec("/bin/sleep", []string{"sleep", "30"}, &syscall.ProcAttr{})
	}, func(e Exit) { exits <- e })
	if err != nil {
		t.Fatal(err)
	}
	if !r.Running(pid) {
		t.Errorf("Running(%d) = false right after Start", pid)
	}
	if err := r.Signal(pid, unix.SIGTERM, false); err != nil {
		t.Fatalf("Signal(registered) = %v", err)
	}
	e := <-exits
	if !e.Status.Signaled() || e.Status.Signal() != unix.SIGTERM || e.Code() != 143 {
		t.Errorf("exit = %v (code %d), want killed by SIGTERM, 143", e, e.Code())
	}
	if err := r.Signal(pid, unix.SIGTERM, false); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal(reaped) = %v, want ErrNotRunning", err)
	}
}

func TestStartErrorRegistersNothing(t *testing.T) {
	r := New(nil)
	_, err := r.Start(func() (int, error) { return 0, unix.ENOENT }, func(Exit) {})
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Start = %v, want ENOENT", err)
	}
	if len(r.owners) != 0 {
		t.Errorf("owners = %v after a failed start", r.owners)
	}
}

// TestReapLoopsUntilDone checks the loop with a fake wait4: every pid is
// taken in one pass, EINTR is retried, and ECHILD leaves an Empty token.
func TestReapLoopsUntilDone(t *testing.T) {
	tests := []struct {
		name      string
		results   []int // pids; 0 = none ready; -1 = EINTR; -2 = ECHILD
		wantReap  int
		wantEmpty bool
	}{
		{"until zero", []int{11, 12, 13, 0, 99}, 3, false},
		{"until echild", []int{11, -1, 12, -2, 99}, 2, true},
		{"nothing", []int{0}, 0, false},
		{"no children", []int{-2}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var orphans []int
			r := New(func(e Exit) { orphans = append(orphans, e.Pid) })
			var owned []int
			r.owners[12] = func(e Exit) { owned = append(owned, e.Pid) }
			i := 0
			r.wait4 = func(pid int, ws *unix.WaitStatus, options int, ru *unix.Rusage) (int, error) {
				if pid != -1 || options != unix.WNOHANG {
					t.Errorf("wait4(%d, %#x), want wait4(-1, WNOHANG)", pid, options)
				}
				v := tt.results[i]
				i++
				switch v {
				case -1:
					return -1, unix.EINTR
				case -2:
					return -1, unix.ECHILD
				}
				return v, nil
			}
			if got := r.Reap(); got != tt.wantReap {
				t.Errorf("Reap() = %d, want %d", got, tt.wantReap)
			}
			if got := len(owned) + len(orphans); got != tt.wantReap {
				t.Errorf("delivered %d exits, want %d", got, tt.wantReap)
			}
			select {
			case <-r.Empty():
				if !tt.wantEmpty {
					t.Error("Empty token without ECHILD")
				}
			default:
				if tt.wantEmpty {
					t.Error("no Empty token after ECHILD")
				}
			}
		})
	}
}

func TestDescendantsAndSubreaper(t *testing.T) {
	if err := SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	if on, err := IsSubreaper(); err != nil || !on {
		t.Fatalf("IsSubreaper() = %v, %v; want true", on, err)
	}
	r := New(nil)
	runReaper(t, r)
	exits := make(chan Exit, 1)
	pid, err := r.Start(func() (int, error) {
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", "sleep 30 & sleep 30; wait"},
			&syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}})
	}, func(e Exit) { exits <- e })
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
	if len(found) != 3 || found[0] != pid {
		t.Errorf("Descendants() = %v, want [%d and its two sleeps]", found, pid)
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	<-exits
}
