//go:build linux

package signals

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Signal
	}{
		{"SIGTERM", unix.SIGTERM}, {"term", unix.SIGTERM}, {"15", unix.SIGTERM},
		{"Sigusr1", unix.SIGUSR1}, {"IOT", unix.SIGABRT}, {"SIGRTMIN", 32},
		{"SIGRTMIN+3", 35}, {"RTMAX", 64}, {"SIGRTMAX-2", 62}, {" HUP ", unix.SIGHUP},
		{"64", 64}, {"SIGWINCH", unix.SIGWINCH},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "SIGFOO", "RTMIN+40", "RTMAX+1", "RTMIN-1", "SIG"} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", bad, got)
		}
	}
}

func TestNameRoundTrip(t *testing.T) {
	for sig := unix.Signal(1); sig <= RTMax; sig++ {
		got, err := Parse(Name(sig))
		if err != nil || got != sig {
			t.Errorf("Parse(Name(%d)=%q) = %d, %v", sig, Name(sig), got, err)
		}
	}
}

func TestCatchableAndForwardable(t *testing.T) {
	caught := map[unix.Signal]bool{}
	for _, sig := range Catchable() {
		caught[sig] = true
	}
	for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGSTOP, unix.SIGPROF, 32, 33, 34} {
		if caught[sig] {
			t.Errorf("Catchable() includes %v", Name(sig))
		}
	}
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGHUP, unix.SIGSEGV, unix.SIGSYS, 35, 64} {
		if !caught[sig] || !Forwardable(sig) {
			t.Errorf("%v: catchable %v forwardable %v, want both", Name(sig), caught[sig], Forwardable(sig))
		}
	}
	for _, sig := range []unix.Signal{unix.SIGCHLD, unix.SIGTTIN, unix.SIGTTOU, unix.SIGURG} {
		if Forwardable(sig) {
			t.Errorf("Forwardable(%v) = true", Name(sig))
		}
	}
}
