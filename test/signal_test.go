//go:build linux

package test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// notForwarded are the signals tend must not pass on: CHLD, TTIN, TTOU and
// URG by design; 32-34 and PROF because Go cannot catch them (and as a
// namespace's PID 1 the kernel drops a default-action signal from outside).
var notForwarded = map[unix.Signal]bool{
	unix.SIGCHLD: true, unix.SIGTTIN: true, unix.SIGTTOU: true, unix.SIGURG: true,
	32: true, 33: true, 34: true, unix.SIGPROF: true,
}

// sentinel is a forwarded signal sent after each one that must not be: it
// arriving alone shows the other was dropped, not late.
const sentinel = unix.SIGWINCH

func sigName(sig unix.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return "SIG" + strconv.Itoa(int(sig))
}

// startReporter starts tend with the sigreport helper as the main process
// and waits until it catches signals.
func startReporter(t *testing.T, o opts, flags ...string) *tendRun {
	t.Helper()
	o.stdin = true
	args := append(append(flags, "--"), helperArgv("sigreport", "main", "33")...)
	r := startTend(t, o, args...)
	r.expect("main ready")
	return r
}

// endReporter ends the sigreport main and checks that tend survived
// until then and exits with the main's code.
func endReporter(t *testing.T, r *tendRun) {
	t.Helper()
	if !r.running() {
		t.Fatalf("tend exited early: %v; stderr:\n%s", r.cmd.ProcessState, r.stderrNow())
	}
	r.closeStdin()
	r.expect("main bye")
	r.expectExit(33)
	if rest := r.rest(); len(rest) != 0 {
		t.Errorf("stdout after the end: %q", rest)
	}
}

// TestSignalMatrix sends every signal 1-64 but KILL and STOP to tend as
// PID 1, from outside its namespace, one at a time: each forwardable one
// must reach the main process, the others must not, and tend survives all.
func TestSignalMatrix(t *testing.T) {
	t.Parallel()
	r := startReporter(t, opts{pid1: true})
	for sig := unix.Signal(1); sig <= 64; sig++ {
		if sig == unix.SIGKILL || sig == unix.SIGSTOP {
			continue
		}
		r.signal(sig)
		if notForwarded[sig] {
			r.signal(sentinel)
			if got, want := r.next(), fmt.Sprintf("main sig %d", sentinel); got != want {
				t.Fatalf("after %s (not forwarded) and %s: main printed %q, want %q", sigName(sig), sigName(sentinel), got, want)
			}
			continue
		}
		if got, want := r.next(), fmt.Sprintf("main sig %d", sig); got != want {
			t.Fatalf("after %s: main printed %q, want %q; stderr:\n%s", sigName(sig), got, want, r.stderrNow())
		}
	}
	// A late forward of a dropped signal would show up before the bye.
	endReporter(t, r)
}

// TestSignalsFatalToGo: ABRT, SEGV and HUP kill an un-notified Go program
// even as PID 1; tend catches and forwards them and survives.
func TestSignalsFatalToGo(t *testing.T) {
	t.Parallel()
	for _, sig := range []unix.Signal{unix.SIGABRT, unix.SIGSEGV, unix.SIGHUP, unix.SIGQUIT, unix.SIGPIPE} {
		t.Run(sigName(sig), func(t *testing.T) {
			t.Parallel()
			r := startReporter(t, opts{pid1: true})
			for i := 0; i < 3; i++ {
				r.signal(sig)
				r.expect(fmt.Sprintf("main sig %d", sig))
			}
			endReporter(t, r)
		})
	}
}

// TestTermInFlood hides one SIGTERM among 100,000 SIGUSR1 and SIGWINCH
// sent as fast as possible: the main process must still get it.
func TestTermInFlood(t *testing.T) {
	t.Parallel()
	needRoot(t)
	r := startTend(t, opts{pid1: true}, "--", testBin, "termexit", "43")
	r.expect("ready")
	const flood = 100000
	for i := 0; i < flood; i++ {
		sig := unix.SIGUSR1
		if i%2 == 1 {
			sig = unix.SIGWINCH
		}
		if i == flood/2 {
			sig = unix.SIGTERM
		}
		err := r.trySignal(sig)
		if errors.Is(err, os.ErrProcessDone) && i > flood/2 {
			break // done early: the SIGTERM went through
		}
		if err != nil {
			t.Fatalf("signal %d of the flood (%v): %v; stderr:\n%s", i, sig, err, r.stderrNow())
		}
	}
	r.expect("term")
	r.expectExit(43)
}

// TestProcessGroup: with -g the main's whole group gets the signal (the
// child in it reports it before the sentinel its parent sends it after
// getting the signal itself); without -g, or with -c, only the main.
func TestProcessGroup(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, tc := range []struct {
		flags []string
		child []string // what the child reports
	}{
		{nil, []string{"child sig 12"}},
		{[]string{"-g"}, []string{"child sig 10", "child sig 12"}},
		{[]string{"--process-group"}, []string{"child sig 10", "child sig 12"}},
		{[]string{"-g", "-c"}, []string{"child sig 12"}},
		{[]string{"-c", "-g"}, []string{"child sig 12"}},
		{[]string{"-c"}, []string{"child sig 12"}},
	} {
		t.Run(fmt.Sprint(tc.flags), func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{"-vv"}, tc.flags...), "--")
			args = append(args, helperArgv("family", "5")...)
			r := startTend(t, opts{pid1: true, stdin: true}, args...)
			r.expect("child ready")
			r.expect("main ready")
			r.signal(unix.SIGUSR1)
			var main, child []string
			for len(child) == 0 || child[len(child)-1] != "child sig 12" {
				l := r.next()
				if l[:5] == "child" {
					child = append(child, l)
				} else {
					main = append(main, l)
				}
			}
			r.closeStdin()
			for _, l := range r.rest() {
				if l[:5] == "child" {
					child = append(child, l)
				} else {
					main = append(main, l)
				}
			}
			if fmt.Sprint(main) != "[main sig 10 main bye]" {
				t.Errorf("tend %v: the main printed %q, want [main sig 10 main bye]", tc.flags, main)
			}
			want := fmt.Sprint(tc.child)
			if fmt.Sprint(child) != want {
				t.Errorf("tend %v: the child printed %q, want %s; stderr:\n%s", tc.flags, child, want, r.stderrAll())
			}
			r.expectExit(5)
		})
	}
}

// TestRewrite: -r S:R forwards S as R; R 0 drops S.
func TestRewrite(t *testing.T) {
	t.Parallel()
	t.Run("TERM:QUIT", func(t *testing.T) {
		t.Parallel()
		r := startReporter(t, opts{pid1: true}, "-r", "TERM:QUIT")
		r.signal(unix.SIGTERM)
		r.expect(fmt.Sprintf("main sig %d", unix.SIGQUIT))
		r.signal(unix.SIGQUIT) // not rewritten
		r.expect(fmt.Sprintf("main sig %d", unix.SIGQUIT))
		endReporter(t, r)
	})
	t.Run("USR1:0", func(t *testing.T) {
		t.Parallel()
		r := startReporter(t, opts{pid1: true}, "-r", "USR1:0", "-r", "15:SIGUSR2")
		r.signal(unix.SIGUSR1)
		r.signal(sentinel)
		r.expect(fmt.Sprintf("main sig %d", sentinel))
		r.signal(unix.SIGTERM)
		r.expect(fmt.Sprintf("main sig %d", unix.SIGUSR2))
		endReporter(t, r)
	})
}

// TestParentDeathSignal: tend -p SIGUSR1, not PID 1, whose parent dies,
// gets SIGUSR1 and forwards it to the main process.
func TestParentDeathSignal(t *testing.T) {
	t.Parallel()
	o := opts{stdin: true, extra: true, argv0: helperArgv("subreap", helperArgv("pdparent", tendBin)...)}
	args := append([]string{"-p", "SIGUSR1", "--"}, helperArgv("sigreport", "main", "21")...)
	r := startTend(t, o, args...)
	var tendPID, parentPID int
	for _, l := range collect(t, r, 2) {
		if _, err := fmt.Sscanf(l, "tend pid=%d", &tendPID); err != nil && l != "main ready" {
			t.Fatalf("unexpected line %q", l)
		}
	}
	parentPID = childrenOf(r.pid())[0]
	r.closeExtra() // the parent exits
	// The kernel sends the parent-death signal each time tend is
	// reparented, once per exiting thread of its (Go) parent: SIGUSR1 may
	// come more than once, but it must come.
	reaped, sigs := fmt.Sprintf("reaped pid=%d code=0", parentPID), 0
	for seen := false; !seen || sigs == 0; {
		switch l := r.next(); l {
		case reaped:
			seen = true
		case "main sig 10":
			sigs++
		default:
			t.Fatalf("after tend's parent died: line %q, want %q or %q", l, reaped, "main sig 10")
		}
	}
	r.closeStdin()
	for l := r.next(); l != "main bye"; l = r.next() {
		if l != "main sig 10" {
			t.Fatalf("line %q, want main sig 10 or main bye", l)
		}
	}
	r.expect(fmt.Sprintf("reaped pid=%d code=21", tendPID))
	r.expectExit(0)
}

// collect reads n lines.
func collect(t *testing.T, r *tendRun, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = r.next()
	}
	return out
}

// TestRepeatableFlagsMixForms: a repeatable flag may be given in its short
// and its long form in one command line, as dumb-init and tini allow.
func TestRepeatableFlagsMixForms(t *testing.T) {
	t.Parallel()
	r := startTend(t, opts{}, "-e", "3", "--expect-exit", "4", "--", "sh", "-c", "exit 4")
	r.expectExit(0)
	r = startTend(t, opts{}, "-r", "USR1:0", "--rewrite", "USR2:0", "--", "true")
	r.expectExit(0)
}
