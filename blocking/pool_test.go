//go:build linux

package blocking

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// init keeps the main thread to the main goroutine (init functions run on
// it, and the lock is kept for main: runtime.LockOSThread), so no worker
// lands there: the runtime never ends the main thread, and
// TestRestoreFailureRetiresWorker checks that a retired worker's thread
// ends.
func init() { runtime.LockOSThread() }

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change the filesystem identity")
	}
}

// TestDoAsCaller: a file in a 0700 root directory is visible to the pool as
// tend and invisible as another uid, and the worker is tend again after.
func TestDoAsCaller(t *testing.T) {
	needRoot(t)
	dir := openDir(t)
	priv := filepath.Join(dir, "priv")
	os.Mkdir(priv, 0o700)
	os.WriteFile(filepath.Join(priv, "f"), nil, 0o644)
	p := New("test", 1)
	stat := func(cred *syscall.Credential, name string) error {
		res := make(chan error, 1)
		if err := p.Do(context.Background(), cred, func() {
			var st unix.Stat_t
			res <- unix.Stat(name, &st)
		}); err != nil {
			t.Fatalf("Do: %v", err)
		}
		return <-res
	}
	user := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	for _, tt := range []struct {
		cred *syscall.Credential
		name string
		want error
	}{
		{nil, "f", nil},
		{user, "f", unix.EACCES},
		{user, "missing", unix.EACCES}, // the same answer: no existence oracle
		{nil, "missing", unix.ENOENT},
		{nil, "f", nil}, // restored
	} {
		if err := stat(tt.cred, filepath.Join(priv, tt.name)); !errors.Is(err, tt.want) && err != tt.want {
			t.Errorf("stat %s as %v = %v, want %v", tt.name, tt.cred, err, tt.want)
		}
	}
	// The supplementary groups count: a group-only directory opens for a
	// member and not for anyone else.
	grp := filepath.Join(dir, "grp")
	os.Mkdir(grp, 0o070)
	os.WriteFile(filepath.Join(grp, "f"), nil, 0o644)
	os.Chown(grp, 0, 4242)
	member := &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{4242}}
	other := &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}
	if err := stat(member, filepath.Join(grp, "f")); err != nil {
		t.Errorf("stat as a member of 4242: %v", err)
	}
	if err := stat(other, filepath.Join(grp, "f")); !errors.Is(err, unix.EACCES) {
		t.Errorf("stat as a non-member: %v, want EACCES", err)
	}
	// Only the worker's thread changed: this one is still root with all.
	if uid, _ := unix.SetfsuidRetUid(-1); uid != 0 {
		t.Errorf("test thread's fsuid = %d", uid)
	}
}

func TestDoDeadlines(t *testing.T) {
	p := New("test", 1)
	release := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Do(ctx, nil, func() { <-release }); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a hung call: Do = %v, want ErrTimeout", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := p.Do(ctx2, nil, func() {}); !errors.Is(err, ErrBusy) {
		t.Fatalf("with the only worker hung: Do = %v, want ErrBusy", err)
	}
	close(release)
	if err := p.Do(context.Background(), nil, func() {}); err != nil {
		t.Fatalf("after the hang ended: %v", err)
	}
}

// TestDoSurvivesPanic: a panic in fn is an error, and the worker, with
// its identity restored, serves the next call.
func TestDoSurvivesPanic(t *testing.T) {
	needRoot(t)
	p := New("test", 1)
	err := p.Do(context.Background(), &syscall.Credential{Uid: 1, Gid: 1, Groups: []uint32{}}, func() { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Do(panicking fn) = %v", err)
	}
	uid := make(chan int, 1)
	if err := p.Do(context.Background(), nil, func() { n, _ := unix.SetfsuidRetUid(-1); uid <- n }); err != nil {
		t.Fatal(err)
	}
	if n := <-uid; n != 0 || p.Size() != 1 {
		t.Errorf("after the panic: fsuid %d, %d workers; want 0 and 1", n, p.Size())
	}
}

// TestCloserNeverBlocks passes the Closer a TCP socket whose close lingers
// (SO_LINGER {1, 120} with unsent data to a peer that never reads): Close
// returns at once, the linger holds one worker, and other fds still close.
func TestCloserNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// Never read: a zero receive window keeps the sender's data unsent.
			c.(*net.TCPConn).SetReadBuffer(1)
			accepted <- c
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()
	f, _ := conn.(*net.TCPConn).File() // a dup, blocking
	conn.Close()
	fd := int(f.Fd())
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 120})
	unix.SetNonblock(fd, true)
	buf := make([]byte, 1<<16)
	for { // fill every buffer between us and the silent peer
		if _, err := unix.Write(fd, buf); err != nil {
			break
		}
	}
	unix.SetNonblock(fd, false)
	// Take the fd away from f, whose finalizer would close it too.
	raw, _ := unix.Dup(fd)
	f.Close()

	c := NewCloser(2)
	start := time.Now()
	c.Close(raw)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Close took %v with a lingering socket", d)
	}
	waitFor(t, func() bool { return c.Busy() == 1 })
	r, w, _ := os.Pipe()
	wfd, _ := unix.Dup(int(w.Fd()))
	w.Close()
	c.Close(wfd) // the last write end: the reader sees EOF once it is closed
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("pipe read = %v, want EOF: the other worker did not close it", err)
	}
	if c.Pending() != 1 {
		t.Errorf("Pending() = %d, want 1 (the lingering socket)", c.Pending())
	}
}

// openDir makes a directory everyone may traverse (t.TempDir's parent is
// 0700, which would hide everything in it from another uid).
func openDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "blocking-test")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

// TestThreadsMadeAtStart: every worker is busy in a blocking call at once
// and the process has no more threads than right after New, give or take
// the runtime's own: the pool's threads were made at start.
func TestThreadsMadeAtStart(t *testing.T) {
	p := New("test", 4)
	p.Start()
	after := threads(t)
	release := make(chan struct{})
	for range 4 {
		go p.Do(context.Background(), nil, func() { <-release })
	}
	time.Sleep(50 * time.Millisecond)
	if busy := threads(t); busy > after+2 {
		t.Errorf("threads %d with 4 busy workers, %d idle", busy, after)
	}
	close(release)
}

func threads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}

// TestHereBounded: Here runs on the caller, at most as many at once as the
// pool has workers; the next waits, and gives up at its deadline.
func TestHereBounded(t *testing.T) {
	p := New("test", 2)
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	for range 2 {
		go p.Here(context.Background(), func() { entered <- struct{}{}; <-release })
	}
	<-entered
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Here(ctx, func() { t.Error("ran past the bound") }); !errors.Is(err, ErrBusy) {
		t.Errorf("third Here = %v, want ErrBusy", err)
	}
	close(release)
	if err := p.Here(context.Background(), func() {}); err != nil {
		t.Errorf("after release: %v", err)
	}
}

// TestRestoreFailureRetiresWorker: a worker that did a caller's work and
// then can switch neither to the next identity nor back to tend's is never
// used again: the call fails naming both errors without running, the pool
// has one worker fewer, and the thread, still the caller's for the
// filesystem, is ended with its goroutine instead of being reused.
func TestRestoreFailureRetiresWorker(t *testing.T) {
	needRoot(t)
	p := New("test", 1)
	defer p.Close()
	var broken atomic.Bool
	p.become = func(cred *syscall.Credential) error {
		if broken.Load() {
			return fmt.Errorf("setgroups: %w", unix.EPERM)
		}
		return become(cred)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tids := make(chan int, 1)
	if err := p.Do(ctx, &syscall.Credential{Uid: 65534, Gid: 65534}, func() { tids <- unix.Gettid() }); err != nil {
		t.Fatalf("Do as uid 65534: %v", err)
	}
	tid := <-tids
	broken.Store(true)
	var ran atomic.Bool
	err := p.Do(ctx, nil, func() { ran.Store(true) })
	if err == nil || strings.Count(err.Error(), "setgroups") != 2 || ran.Load() {
		t.Fatalf("Do after a failed restore: %v (ran %v); want both switches' errors, fn not run", err, ran.Load())
	}
	if n := p.Size(); n != 0 {
		t.Errorf("Size() = %d after the only worker failed to restore, want 0", n)
	}
	broken.Store(false)
	if err := p.Do(ctx, nil, func() { ran.Store(true) }); err == nil || !strings.Contains(err.Error(), "no worker left") || ran.Load() {
		t.Errorf("Do with no worker left: %v (ran %v), want \"no worker left\", fn not run", err, ran.Load())
	}
	if tid == os.Getpid() {
		t.Fatalf("the worker ran on the main thread, which init keeps for the main goroutine")
	}
	waitFor(t, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		return errors.Is(err, os.ErrNotExist)
	})
}
