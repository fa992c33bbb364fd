//go:build linux

package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const cleanupGrace = 300 * time.Millisecond

// TestLeftovers: the main exits 7 leaving `sleep 1000` and a process that
// ignores SIGTERM; tend SIGTERMs what is left, SIGKILLs it after
// --cleanup-grace, and exits 7 — as PID 1 (kill(-1)) and as a subreaper
// (the tree found through /proc), after which nothing of the tree remains.
func TestLeftovers(t *testing.T) {
	t.Parallel()
	for _, pid1 := range []bool{true, false} {
		t.Run(fmt.Sprintf("pid1=%v", pid1), func(t *testing.T) {
			t.Parallel()
			if pid1 {
				needRoot(t)
			}
			args := append([]string{"--cleanup-grace", cleanupGrace.String(), "--"}, helperArgv("leftovers", "7")...)
			r := startTend(t, opts{pid1: pid1}, args...)
			m := r.expectMatch(`^ready sleep=(\d+) ign=(\d+)$`)
			r.expectExit(7)
			// Measured from tend's start, which is before the main's exit:
			// a lower bound that cannot flake.
			if took := r.ended.Sub(r.start); took < cleanupGrace {
				t.Errorf("tend exited %v after its start: before --cleanup-grace %v, so the SIGTERM-ignoring leftover was not waited for", took, cleanupGrace)
			}
			if pid1 {
				return // the namespace is gone with its PID 1
			}
			for _, s := range m[1:] {
				pid, _ := strconv.Atoi(s)
				if alive(pid, "sleep", "ignoreterm") {
					t.Errorf("leftover pid %d still running after tend exited", pid)
				}
			}
		})
	}
}

// alive reports whether pid runs a program whose command line contains
// one of names (a zombie's is empty; a recycled pid runs something else).
func alive(pid int, names ...string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, n := range names {
		if strings.Contains(string(b), n) {
			return true
		}
	}
	return false
}

// TestGrace: when tend gets SIGTERM it forwards it and waits; without
// --grace it keeps waiting for a main that ignores SIGTERM; with --grace it
// kills everything after the grace and reports the main's SIGKILL.
func TestGrace(t *testing.T) {
	t.Parallel()
	needRoot(t)
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		r := startTend(t, opts{pid1: true}, append([]string{"--"}, helperArgv("ignoreterm", "main")...)...)
		r.expect("main ready")
		r.signal(unix.SIGTERM)
		select {
		case <-r.done:
			t.Fatalf("tend exited (%v) after SIGTERM to a main that ignores it, without --grace; stderr:\n%s",
				r.cmd.ProcessState, r.stderrAll())
		case <-time.After(time.Second): // a negative: nothing to wait on
		}
		r.kill() // SIGKILL of PID 1 ends the namespace
		if code := r.wait(); code != 128+int(unix.SIGKILL) {
			t.Errorf("tend exit code = %d after SIGKILL, want %d", code, 128+int(unix.SIGKILL))
		}
	})
	t.Run("300ms", func(t *testing.T) {
		t.Parallel()
		grace := 300 * time.Millisecond
		r := startTend(t, opts{pid1: true}, append([]string{"--grace", grace.String(), "--"}, helperArgv("ignoreterm", "main")...)...)
		r.expect("main ready")
		sent := time.Now()
		r.signal(unix.SIGTERM)
		r.expectExit(128 + int(unix.SIGKILL))
		if took := r.ended.Sub(sent); took < grace {
			t.Errorf("tend exited %v after SIGTERM, before --grace %v", took, grace)
		}
	})
	t.Run("INT 300ms", func(t *testing.T) {
		t.Parallel()
		r := startTend(t, opts{pid1: true}, append([]string{"--grace", "300ms", "--"}, helperArgv("ignoreterm", "main")...)...)
		r.expect("main ready")
		r.signal(unix.SIGINT) // not ignored by the main: Go exits on SIGINT
		r.expectExit(128 + int(unix.SIGINT))
	})
	t.Run("drain", func(t *testing.T) {
		t.Parallel()
		r := startTend(t, opts{pid1: true}, append([]string{"--"}, helperArgv("drain")...)...)
		r.expect("ready")
		sent := time.Now()
		r.signal(unix.SIGTERM)
		r.expect("draining")
		r.expect("drained")
		r.expectExit(0)
		if took := r.ended.Sub(sent); took < 500*time.Millisecond {
			t.Errorf("tend exited %v after SIGTERM, before the main's 500ms drain", took)
		}
	})
}
