//go:build linux

package blocking

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// After Spare, 2n goroutines blocked in system calls at once make no new
// thread: the runtime uses the idle ones. The control: n such calls first
// make threads (they stay idle after, so 2n are needed to need more).
//
// It runs in a fresh copy of the test binary: threads made by an earlier
// run stay idle and would hide the control.
func TestSpareThreadsAreUsed(t *testing.T) {
	if os.Getenv("BLOCKING_SPARE_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpareThreadsAreUsed$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "BLOCKING_SPARE_CHILD=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		return
	}
	const n = 8
	block := func(n int) int {
		before := threads(t)
		var wg sync.WaitGroup
		peak := before
		var mu sync.Mutex
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A blocking system call long enough for sysmon to hand
				// the P to another thread (it does after ~20 µs).
				syscall.Syscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&syscall.Timespec{Nsec: 50e6})), 0, 0)
				mu.Lock()
				peak = max(peak, threads(t))
				mu.Unlock()
			}()
		}
		wg.Wait()
		return peak - before
	}
	// The test binary's own threads settle first.
	time.Sleep(50 * time.Millisecond)
	grew := block(n)
	if grew == 0 {
		t.Fatalf("%d goroutines in nanosleep made no thread even without Spare: the control failed", n)
	}
	spare := 3*n + runtime.GOMAXPROCS(0)
	Spare(spare)
	after := threads(t)
	grewAfter := block(2 * n)
	t.Logf("%d blocking calls: +%d threads; Spare(%d): %d threads; then %d blocking calls: +%d", n, grew, spare, after, 2*n, grewAfter)
	if grewAfter != 0 {
		t.Errorf("after Spare, %d blocking calls made %d new threads, want 0", 2*n, grewAfter)
	}
}
