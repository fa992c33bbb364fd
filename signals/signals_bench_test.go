//go:build linux

package signals

import (
	"os"
	"os/signal"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkFunnel is a signal's way through tend before the loop forwards
// it: kill(2) to itself, Go's signal handler, the signal's own channel, and
// Funnel's reflect.Select over every caught signal's channel.
func BenchmarkFunnel(b *testing.B) {
	s := Notify()
	b.Cleanup(func() { signal.Reset() }) // the test binary must not keep catching everything
	out := make(chan unix.Signal)
	stop := make(chan struct{})
	defer close(stop)
	s.Funnel(out, stop)
	pid := os.Getpid()
	b.ReportAllocs()
	for b.Loop() {
		if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
			b.Fatal(err)
		}
		for sig := range out {
			if sig == unix.SIGUSR1 {
				break
			} // else SIGURG: the runtime preempting a goroutine; the loop drops it
		}
	}
}

// BenchmarkNotify is the cost of Notify itself, part of tend's start-up:
// one rt_sigaction per catchable signal and a channel each.
func BenchmarkNotify(b *testing.B) {
	b.Cleanup(func() { signal.Reset() })
	b.ReportAllocs()
	for b.Loop() {
		Notify()
	}
}
