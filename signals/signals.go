//go:build linux

// Package signals names Linux signals and knows which of them tend may catch
// and forward. It owns no state.
package signals

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RTMin is the first real-time signal a Go program can catch. The kernel's
// SIGRTMIN is 32, but 32 and 33 belong to glibc's threads and 34 to musl's;
// the Go runtime never installs a handler for them (runtime/sigtab_linux_generic.go).
const RTMin = unix.Signal(35)

// RTMax is the last real-time signal.
const RTMax = unix.Signal(64)

// names maps the classic signals to their names without the SIG prefix.
var names = map[unix.Signal]string{
	unix.SIGHUP: "HUP", unix.SIGINT: "INT", unix.SIGQUIT: "QUIT", unix.SIGILL: "ILL",
	unix.SIGTRAP: "TRAP", unix.SIGABRT: "ABRT", unix.SIGBUS: "BUS", unix.SIGFPE: "FPE",
	unix.SIGKILL: "KILL", unix.SIGUSR1: "USR1", unix.SIGSEGV: "SEGV", unix.SIGUSR2: "USR2",
	unix.SIGPIPE: "PIPE", unix.SIGALRM: "ALRM", unix.SIGTERM: "TERM", unix.SIGSTKFLT: "STKFLT",
	unix.SIGCHLD: "CHLD", unix.SIGCONT: "CONT", unix.SIGSTOP: "STOP", unix.SIGTSTP: "TSTP",
	unix.SIGTTIN: "TTIN", unix.SIGTTOU: "TTOU", unix.SIGURG: "URG", unix.SIGXCPU: "XCPU",
	unix.SIGXFSZ: "XFSZ", unix.SIGVTALRM: "VTALRM", unix.SIGPROF: "PROF", unix.SIGWINCH: "WINCH",
	unix.SIGIO: "IO", unix.SIGPWR: "PWR", unix.SIGSYS: "SYS",
}

// aliases are other spellings accepted on input.
var aliases = map[string]unix.Signal{"IOT": unix.SIGABRT, "POLL": unix.SIGIO, "CLD": unix.SIGCHLD}

// Name returns the conventional name of sig: "SIGTERM", or "SIGRTMIN+3" for
// real-time signals (counted from the kernel's SIGRTMIN, 32, as kill(1) does).
func Name(sig unix.Signal) string {
	if n, ok := names[sig]; ok {
		return "SIG" + n
	}
	if sig >= 32 && sig <= RTMax {
		if sig == 32 {
			return "SIGRTMIN"
		}
		if sig == RTMax {
			return "SIGRTMAX"
		}
		return "SIGRTMIN+" + strconv.Itoa(int(sig)-32)
	}
	return "signal " + strconv.Itoa(int(sig))
}

// Parse reads a signal given as a number ("15"), a name with or without the
// SIG prefix in any case ("SIGTERM", "term"), or a real-time signal
// ("SIGRTMIN+3", "RTMAX-1"). It refuses 0 and anything above 64.
func Parse(s string) (unix.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty signal name")
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > int(RTMax) {
			return 0, fmt.Errorf("signal number %d out of range 1-%d", n, RTMax)
		}
		return unix.Signal(n), nil
	}
	t = strings.TrimPrefix(t, "SIG")
	if sig, ok := aliases[t]; ok {
		return sig, nil
	}
	for sig, n := range names {
		if n == t {
			return sig, nil
		}
	}
	if sig, ok := parseRT(t); ok {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// parseRT reads RTMIN, RTMIN+N, RTMAX and RTMAX-N (the SIG prefix removed).
func parseRT(t string) (unix.Signal, bool) {
	base, rest, sign := 0, "", 1
	switch {
	case strings.HasPrefix(t, "RTMIN"):
		base, rest = 32, t[len("RTMIN"):]
	case strings.HasPrefix(t, "RTMAX"):
		base, rest, sign = int(RTMax), t[len("RTMAX"):], -1
	default:
		return 0, false
	}
	off := 0
	if rest != "" {
		want := "+"
		if sign < 0 {
			want = "-"
		}
		if !strings.HasPrefix(rest, want) {
			return 0, false
		}
		n, err := strconv.Atoi(rest[1:])
		if err != nil || n < 0 {
			return 0, false
		}
		off = n * sign
	}
	sig := base + off
	if sig < 32 || sig > int(RTMax) {
		return 0, false
	}
	return unix.Signal(sig), true
}

// Catchable lists every signal a Go program can be notified of: all but
// KILL, STOP, PROF (the runtime's profiler owns it) and 32-34 (libc's).
func Catchable() []unix.Signal {
	var out []unix.Signal
	for sig := unix.Signal(1); sig <= RTMax; sig++ {
		switch {
		case sig == unix.SIGKILL, sig == unix.SIGSTOP, sig == unix.SIGPROF:
		case sig >= 32 && sig < RTMin:
		default:
			out = append(out, sig)
		}
	}
	return out
}

// Reserved reports whether sig is one of 32-34, which glibc (32, 33) and
// musl (34) keep for their threads: Go cannot catch them, and tend neither
// forwards nor sends them.
func Reserved(sig unix.Signal) bool { return sig >= 32 && sig < RTMin }

// NotForwarded says why tend never forwards sig ("" when it does), for
// messages that refuse a setting about it.
func NotForwarded(sig unix.Signal) string {
	switch {
	case Reserved(sig):
		return "reserved for libc's threads (glibc 32 and 33, musl 34): tend can neither catch nor forward it"
	case sig == unix.SIGKILL || sig == unix.SIGSTOP:
		return "never delivered to tend (no process can catch it)"
	case sig == unix.SIGPROF:
		return "the Go runtime's profiling signal: tend cannot catch it"
	case sig == unix.SIGCHLD:
		return "tend's own (it reaps on it), never forwarded"
	case sig == unix.SIGTTIN || sig == unix.SIGTTOU:
		return "sent to tend by the kernel for its own terminal reads and writes, never forwarded"
	case sig == unix.SIGURG:
		return "the Go runtime's preemption signal, never forwarded"
	case !Forwardable(sig):
		return "never forwarded"
	}
	return ""
}

// Forwardable reports whether a signal tend receives is passed on to the
// main process or the services. CHLD is tend's own business, TTIN and TTOU
// come from tend's own tty writes, and URG is sent by the Go runtime to
// itself for preemption (runc drops it for the same reason).
func Forwardable(sig unix.Signal) bool {
	switch sig {
	case unix.SIGCHLD, unix.SIGTTIN, unix.SIGTTOU, unix.SIGURG, unix.SIGKILL, unix.SIGSTOP, unix.SIGPROF:
		return false
	}
	return sig >= 1 && sig <= RTMax && !(sig >= 32 && sig < RTMin)
}
