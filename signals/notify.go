//go:build linux

package signals

import (
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// keepIgnored are the signals that stay ignored when tend was started with
// them ignored (nohup, a shell's background job): tend then does not catch
// them, so its children inherit SIG_IGN as they would from tini. The Go
// runtime leaves HUP and INT ignored, and does not touch the job-control
// signals until they are notified (runtime/signal_unix.go), so their
// dispositions at main are still the ones tend was started with.
var keepIgnored = []unix.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGCONT}

// Set holds one channel per caught signal, each of capacity 1 so that it
// coalesces like the kernel's pending set: a flood of one signal can fill
// only its own channel and never crowd out another (a shared buffered
// channel was seen to drop a SIGTERM under a flood of SIGUSR1).
type Set struct {
	CHLD    chan os.Signal // for the reaper only
	chans   []chan os.Signal
	Ignored []unix.Signal // left ignored, as found at start
}

// caught is set by Notify: the process catches every signal.
var caught atomic.Bool

// Caught reports whether Notify was called in this process.
func Caught() bool { return caught.Load() }

// KeptIgnored reports whether sig is one that Notify leaves ignored because
// it was ignored at start (nohup, a shell's background job).
func KeptIgnored(sig unix.Signal) bool {
	return slices.Contains(keepIgnored, sig) && isIgnored(sig)
}

// Notify catches every catchable signal. Call it first thing in main: until
// then a Go program dies of SIGHUP, SIGQUIT, SIGABRT, SIGPIPE and others,
// even as PID 1.
func Notify() *Set {
	caught.Store(true)
	s := &Set{CHLD: make(chan os.Signal, 1)}
	ignored := map[unix.Signal]bool{}
	for _, sig := range keepIgnored {
		if isIgnored(sig) {
			ignored[sig] = true
			s.Ignored = append(s.Ignored, sig)
		}
	}
	// Go never handles 32-34 (libc's), so whatever tend was started with
	// stands and children inherit it. As PID 1 the kernel drops a default-
	// action signal sent to tend, so they can be given back their default
	// action for the children; not as PID 1 they are left alone (ignoring
	// them would change the children's, resetting them could kill tend).
	if os.Getpid() == 1 {
		for sig := unix.Signal(32); sig < RTMin; sig++ {
			setDisposition(sig, sigDFL)
		}
	}
	signal.Notify(s.CHLD, unix.SIGCHLD)
	for _, sig := range Catchable() {
		// SIGURG is the Go runtime's own preemption signal, sent to tend
		// by tend all the time; it is never forwarded, and left alone it
		// is harmless (ignored), so it is not worth a wake-up each time.
		if sig == unix.SIGCHLD || sig == unix.SIGURG || ignored[sig] {
			continue
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, sig)
		s.chans = append(s.chans, c)
	}
	return s
}

// Funnel starts one goroutine that moves signals from their own channels to
// out, one at a time, choosing at random among those pending (reflect.Select
// is uniform), so a pending SIGTERM is taken within a few rounds of any
// flood. It returns when stop is closed.
func (s *Set) Funnel(out chan<- unix.Signal, stop <-chan struct{}) {
	cases := make([]reflect.SelectCase, 0, len(s.chans)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)})
	for _, c := range s.chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
	}
	go func() {
		for {
			i, v, _ := reflect.Select(cases)
			if i == 0 {
				return
			}
			sig := v.Interface().(syscall.Signal)
			select {
			case out <- unix.Signal(sig):
			case <-stop:
				return
			}
		}
	}()
}

const (
	sigDFL = 0
	sigIGN = 1
)

// setDisposition sets sig's handler to SIG_DFL or SIG_IGN with
// rt_sigaction(2), for the signals the Go runtime leaves alone.
func setDisposition(sig unix.Signal, handler uint64) {
	act := [4]uint64{handler} // no flags, empty mask
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
}

// isIgnored asks the kernel for sig's current disposition. It uses
// rt_sigaction(2) with no new action rather than /proc/self/status, which
// may not be mounted yet when tend starts.
func isIgnored(sig unix.Signal) bool {
	// struct kernel_sigaction begins with the handler on every Linux
	// architecture; 4 words are more than any of them needs.
	var old [4]uint64
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0,
		uintptr(unsafe.Pointer(&old[0])), 8, 0, 0)
	return errno == 0 && old[0] == sigIGN
}
