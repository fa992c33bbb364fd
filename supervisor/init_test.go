//go:build linux

package supervisor

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
)

// fakeInit is an initLoop whose process side is fake: sent records every
// signal as "pid:SIG" or "all:SIG", and children counts the processes left.
type fakeInit struct {
	*initLoop
	sigs     chan unix.Signal
	mu       sync.Mutex
	sentLog  []string
	children atomic.Int32
	emptyCh  chan struct{}
}

const fakeMain = 100

func newFakeInit(cfg InitConfig) *fakeInit {
	f := &fakeInit{sigs: make(chan unix.Signal), emptyCh: make(chan struct{}, 1)}
	f.children.Store(1)
	cfg.Signals = f.sigs
	cfg.Log = slog.New(slog.DiscardHandler)
	l := &initLoop{cfg: cfg, log: cfg.Log, mainExit: make(chan reaper.Exit, 1)}
	l.start = func() (int, error) { return fakeMain, nil }
	l.signal = func(pid int, sig unix.Signal, group bool) error {
		target := fmt.Sprint(pid)
		if group {
			target = fmt.Sprint(-pid)
		}
		f.record(fmt.Sprintf("%s:%d", target, sig))
		return nil
	}
	l.signalAll = func(sig unix.Signal) error {
		f.record(fmt.Sprintf("all:%d", sig))
		if sig == unix.SIGKILL {
			f.children.Store(0)
			f.emptyCh <- struct{}{}
		}
		return nil
	}
	l.noChildren = func() bool { return f.children.Load() == 0 }
	l.empty = f.emptyCh
	l.after = time.After
	f.initLoop = l
	return f
}

// exit makes the fake main process exit with status ws, leaving left
// processes behind.
func (f *fakeInit) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sentLog = append(f.sentLog, s)
}

func (f *fakeInit) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sentLog)
}

func (f *fakeInit) exit(ws unix.WaitStatus, left int) {
	f.children.Store(int32(left))
	f.mainExit <- reaper.Exit{Pid: fakeMain, Status: ws}
}

func exited(code int) unix.WaitStatus          { return unix.WaitStatus(code << 8) }
func killedBy(sig unix.Signal) unix.WaitStatus { return unix.WaitStatus(sig) }

type result struct {
	code int
	err  error
}

func (f *fakeInit) runAsync() chan result {
	done := make(chan result, 1)
	go func() { c, err := f.run(); done <- result{c, err} }()
	return done
}

func TestInitForwarding(t *testing.T) {
	tests := []struct {
		name string
		cfg  InitConfig
		in   []unix.Signal
		want []string
	}{
		{"forwards", InitConfig{}, []unix.Signal{unix.SIGHUP, unix.SIGUSR1, unix.SIGSEGV, 40},
			[]string{"100:1", "100:10", "100:11", "100:40"}},
		{"never CHLD URG TTIN TTOU", InitConfig{}, []unix.Signal{unix.SIGCHLD, unix.SIGURG, unix.SIGTTIN, unix.SIGTTOU, unix.SIGWINCH},
			[]string{"100:28"}},
		{"group", InitConfig{Group: true}, []unix.Signal{unix.SIGTERM}, []string{"-100:15"}},
		{"rewrite and drop", InitConfig{Rewrite: map[unix.Signal]unix.Signal{unix.SIGTERM: unix.SIGQUIT, unix.SIGUSR1: 0}},
			[]unix.Signal{unix.SIGUSR1, unix.SIGTERM, unix.SIGUSR2}, []string{"100:3", "100:12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeInit(tt.cfg)
				done := f.runAsync()
				for _, sig := range tt.in {
					f.sigs <- sig
				}
				synctest.Wait()
				f.exit(exited(0), 0)
				if r := <-done; r.code != 0 || r.err != nil {
					t.Errorf("run() = %d, %v; want 0, nil", r.code, r.err)
				}
				if !slices.Equal(f.sent(), tt.want) {
					t.Errorf("sent %v, want %v", f.sent(), tt.want)
				}
			})
		})
	}
}

func TestInitExitCode(t *testing.T) {
	tests := []struct {
		name   string
		ws     unix.WaitStatus
		expect []int
		want   int
	}{
		{"zero", exited(0), nil, 0},
		{"code", exited(3), nil, 3},
		{"255", exited(255), nil, 255},
		{"signal", killedBy(unix.SIGKILL), nil, 137},
		{"remapped", exited(3), []int{3}, 0},
		{"remap other", exited(4), []int{3}, 4},
		{"remapped signal", killedBy(unix.SIGTERM), []int{143}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeInit(InitConfig{ExpectZero: tt.expect})
				done := f.runAsync()
				f.exit(tt.ws, 0)
				if r := <-done; r.code != tt.want {
					t.Errorf("run() code = %d, want %d", r.code, tt.want)
				}
			})
		})
	}
}

// TestInitGrace: without --grace, SIGTERM is forwarded and tend waits for
// as long as the main process takes; with it, the tree is killed on time.
func TestInitGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeInit(InitConfig{})
		done := f.runAsync()
		f.sigs <- unix.SIGTERM
		time.Sleep(time.Hour)
		synctest.Wait()
		if want := []string{"100:15"}; !slices.Equal(f.sent(), want) {
			t.Errorf("without --grace after an hour: sent %v, want %v", f.sent(), want)
		}
		f.exit(exited(0), 0)
		<-done
	})
	synctest.Test(t, func(t *testing.T) {
		f := newFakeInit(InitConfig{Grace: 5 * time.Second})
		done := f.runAsync()
		start := time.Now()
		f.sigs <- unix.SIGTERM
		f.sigs <- unix.SIGINT // a second one must not restart the clock
		time.Sleep(4999 * time.Millisecond)
		synctest.Wait()
		if want := []string{"100:15", "100:2"}; !slices.Equal(f.sent(), want) {
			t.Fatalf("before the grace: sent %v, want %v", f.sent(), want)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := f.sent()[len(f.sent())-1]; got != "all:9" || time.Since(start) != 5*time.Second {
			t.Errorf("at the grace (%v): last sent %q, want all:9", time.Since(start), got)
		}
		f.exit(killedBy(unix.SIGKILL), 0)
		if r := <-done; r.code != 137 {
			t.Errorf("code = %d, want 137", r.code)
		}
	})
}

// TestInitCleanup: leftovers get SIGTERM, then SIGKILL after the cleanup
// grace; when they go at SIGTERM no SIGKILL is sent.
func TestInitCleanup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeInit(InitConfig{CleanupGrace: 2 * time.Second})
		done := f.runAsync()
		start := time.Now()
		f.exit(exited(7), 3)
		r := <-done
		if r.code != 7 || time.Since(start) != 2*time.Second {
			t.Errorf("run() = %d after %v, want 7 after 2s", r.code, time.Since(start))
		}
		if want := []string{"all:15", "all:9"}; !slices.Equal(f.sent(), want) {
			t.Errorf("sent %v, want %v", f.sent(), want)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		f := newFakeInit(InitConfig{CleanupGrace: 2 * time.Second})
		f.signalAll = func(sig unix.Signal) error {
			f.record(fmt.Sprintf("all:%d", sig))
			go func() { time.Sleep(100 * time.Millisecond); f.children.Store(0); f.emptyCh <- struct{}{} }()
			return nil
		}
		done := f.runAsync()
		start := time.Now()
		f.exit(exited(0), 2)
		<-done
		if want := []string{"all:15"}; !slices.Equal(f.sent(), want) || time.Since(start) != 100*time.Millisecond {
			t.Errorf("sent %v after %v, want %v after 100ms", f.sent(), time.Since(start), want)
		}
	})
	// A process that survives SIGKILL (D state) holds tend for finalWait only.
	synctest.Test(t, func(t *testing.T) {
		f := newFakeInit(InitConfig{CleanupGrace: time.Second})
		f.signalAll = func(sig unix.Signal) error { f.record(fmt.Sprintf("all:%d", sig)); return nil }
		done := f.runAsync()
		start := time.Now()
		f.exit(exited(1), 1)
		r := <-done
		if r.code != 1 || r.err == nil || time.Since(start) != time.Second+finalWait {
			t.Errorf("run() = %d, %v after %v; want 1, an error, after %v", r.code, r.err, time.Since(start), time.Second+finalWait)
		}
	})
}

func TestInitExecFailure(t *testing.T) {
	for _, tt := range []struct {
		errno unix.Errno
		want  int
	}{{unix.ENOENT, 127}, {unix.EACCES, 126}, {unix.ENOEXEC, 126}} {
		f := newFakeInit(InitConfig{})
		f.start = func() (int, error) { return 0, &spawn.ExecError{Path: "/x", Err: tt.errno} }
		if code, _ := f.run(); code != tt.want {
			t.Errorf("exec failing with %v: code %d, want %d", tt.errno, code, tt.want)
		}
	}
}
