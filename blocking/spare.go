//go:build linux

package blocking

import (
	"runtime"
	"sync"
)

// Spare makes n OS threads now and leaves them idle in the Go runtime,
// which keeps idle threads for good and takes one of them before it makes
// a new one: when a goroutine blocks in a system call and another needs
// to run, or when a goroutine locks itself to a thread. At the pids limit
// the runtime cannot make a thread and aborts the whole process (fatal
// error: newosproc), and at PID 1 that is the container: with spares made
// at start, while the limit is still far, a caller's flood finds the
// threads it makes the runtime need already there (DESIGN.md §1.10).
//
// Each of n goroutines locks itself to a thread and waits until all n are
// locked: a locked goroutine that waits holds its thread, so the runtime
// has to make n of them. They then unlock and return, leaving the threads
// idle (a goroutine that returned while locked would take its thread with
// it).
func Spare(n int) {
	var held, done sync.WaitGroup
	release := make(chan struct{})
	held.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			held.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	held.Wait()
	close(release)
	done.Wait()
}
