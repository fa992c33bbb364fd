//go:build linux

package client

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/signals"
)

// reraiseEnv names the signal a re-executed test binary raises on itself.
const reraiseEnv = "TEND_TEST_RERAISE"

// TestReraiseHelper is not a test: it is the body of the process that
// TestReraise starts (the os/exec helper pattern; there is no TestMain in
// this package to dispatch on). It catches every signal first, as tend's
// main does, so that it re-raises against the Go runtime's handlers.
func TestReraiseHelper(t *testing.T) {
	name := os.Getenv(reraiseEnv)
	if name == "" {
		t.Skip("helper process only")
	}
	signals.Notify()
	mode, name, _ := cutMode(name)
	sig, err := signals.Parse(name)
	if err != nil {
		os.Exit(100)
	}
	if mode == "default" {
		// The client commands' ^C: the signal comes from outside.
		defer defaultSignals(reraise)()
		unix.Kill(os.Getpid(), sig)
		time.Sleep(10 * time.Second) // defaultSignals ends the process long before
		os.Exit(99)
	}
	reraise(sig)
	os.Exit(exitSignalOffset + int(sig))
}

// cutMode splits "default:SIGINT" into its mode and signal.
func cutMode(s string) (mode, sig string, ok bool) {
	if m, sg, ok := strings.Cut(s, ":"); ok {
		return m, sg, true
	}
	return "", s, false
}

func TestReraise(t *testing.T) {
	tests := []struct {
		raise    string
		signaled bool // else exit 128+N
	}{
		{"SIGSEGV", true}, {"SIGABRT", true}, {"SIGUSR1", true}, {"SIGPIPE", true},
		{"SIGTERM", true}, {"SIGBUS", true}, {"SIGRTMIN+3", true}, {"SIGKILL", true},
		{"SIGWINCH", false}, {"SIGURG", false}, {"SIGCHLD", false},
		{"default:SIGINT", true}, {"default:SIGTERM", true}, {"default:SIGHUP", true}, {"default:SIGPIPE", true},
	}
	for _, tt := range tests {
		t.Run(tt.raise, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // SIGKILL then
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReraiseHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), reraiseEnv+"="+tt.raise)
			cmd.Dir = t.TempDir() // where a core file would land
			err := cmd.Run()
			_, name, _ := cutMode(tt.raise)
			sig, _ := signals.Parse(name)
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			switch {
			case tt.signaled && (!ws.Signaled() || ws.Signal() != sig):
				t.Errorf("helper raising %s: %v (status %#x); want killed by %s", tt.raise, err, int(ws), signals.Name(sig))
			case !tt.signaled && ws.ExitStatus() != 128+int(sig):
				t.Errorf("helper raising %s: %v; want exit %d", tt.raise, err, 128+int(sig))
			case ws.CoreDump():
				t.Errorf("helper raising %s dumped core; tend spawn must not", tt.raise)
			}
			if ents, _ := os.ReadDir(cmd.Dir); len(ents) != 0 {
				t.Errorf("helper raising %s left %d files (a core?) in its directory", tt.raise, len(ents))
			}
		})
	}
}
