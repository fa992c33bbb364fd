//go:build linux

package boot

import (
	"syscall"

	"github.com/tendinit/tend/internal/sigrelay"
)

// The helper relays every catchable signal it receives to the unit's main
// process. Each becomes one byte, its number, in a pipe that the event loop
// polls (order kept, coalesced per signal as the kernel does): on amd64
// through sigrelay's handler, elsewhere through the runtime's os/signal
// hooks (relay_runtime.go).

// keepIgnored are the signals tend leaves ignored when it was started with
// them ignored; the helper does the same, so the command inherits SIG_IGN.
// The Go runtime leaves these dispositions alone until they are enabled.
var keepIgnored = [...]syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGCONT}

// catchable leaves out what the runtime keeps (sigrelay.Own: KILL, STOP,
// PROF, URG, 32-34 and the faults, whose kill(2)-sent copies the runtime
// ignores) and the keepIgnored signals found ignored.
func catchable(sig syscall.Signal) bool {
	if sigrelay.Own(sig) {
		return false
	}
	for _, k := range keepIgnored {
		if sig == k && sigrelay.Ignored(sig) {
			return false
		}
	}
	return true
}

// catchSignals starts relaying every catchable signal and returns the
// pipe's read end.
func catchSignals() (int, error) {
	var sigs []syscall.Signal
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if catchable(sig) {
			sigs = append(sigs, sig)
		}
	}
	if sigrelay.Supported {
		return sigrelay.Install(sigs)
	}
	return catchWithRuntime(sigs)
}
