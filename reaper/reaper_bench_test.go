//go:build linux

package reaper

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runReaperB runs r.Run on SIGCHLD until the benchmark ends.
func runReaperB(b *testing.B, r *Reaper) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, ch); close(done) }()
	b.Cleanup(func() { cancel(); <-done; signal.Stop(ch) })
}

// takeOne waits for the next queued exit, as the loop would take it.
func takeOne(r *Reaper, buf []Exit) Exit {
	for {
		<-r.Ready()
		if buf = r.TakeExits(buf[:0]); len(buf) > 0 {
			return buf[0]
		}
	}
}

// BenchmarkStartExit is the reaper's whole path for one child: Start (fork
// and exec of /bin/true under the lock), SIGCHLD, Reap, the owner callback.
func BenchmarkStartExit(b *testing.B) {
	r := New(Options{Orphan: func(pid int, _ unix.WaitStatus) { b.Errorf("registered child %d reported as orphan", pid) }})
	runReaperB(b, r)
	start := func(pidfd *int) (int, error) {
		return syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
	}
	var buf []Exit
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Start(start, nil); err != nil {
			b.Fatal(err)
		}
		if e := takeOne(r, buf); e.Code() != 0 {
			b.Fatalf("exit %v", e)
		}
	}
}

// BenchmarkReapNothing is one reap pass that finds nothing (ECHILD): the
// cost of a spurious or coalesced SIGCHLD. It must not allocate.
func BenchmarkReapNothing(b *testing.B) {
	r := New(Options{})
	b.ReportAllocs()
	for b.Loop() {
		r.Reap()
	}
}

// BenchmarkReapBatch reaps 100 exited orphans in one pass (a storm), per
// orphan; the children are made and waited for outside the timer.
func BenchmarkReapBatch(b *testing.B) {
	r := New(Options{Orphan: func(int, unix.WaitStatus) {}})
	const batch = 100
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < batch; i++ {
			if _, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{}); err != nil {
				b.Fatal(err)
			}
		}
		// Wait until all have exited (zombies), without reaping them.
		for zombies(b) < batch {
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		if n := r.Reap(); n != batch {
			b.Fatalf("Reap() = %d, want %d", n, batch)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/orphan")
}

// zombies counts this process's zombie children from /proc.
func zombies(b *testing.B) int {
	kids, err := children(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, k := range kids {
		st, err := os.ReadFile("/proc/" + itoa(k) + "/stat")
		if err != nil {
			continue
		}
		// state is the field after "(comm)"
		for i := len(st) - 1; i > 0; i-- {
			if st[i] == ')' {
				if i+2 < len(st) && st[i+2] == 'Z' {
					n++
				}
				break
			}
		}
	}
	return n
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
