//go:build linux

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// keptIgnored are the signals that stay ignored in the child when they
// were ignored at tend's start.
var keptIgnored = []unix.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGCONT}

func mask(sigs ...unix.Signal) uint64 {
	var m uint64
	for _, sig := range sigs {
		m |= 1 << (uint(sig) - 1)
	}
	return m
}

// childSigState runs `cat /proc/self/status` (a C program, which
// leaves its inherited dispositions and mask alone) as tend's main process
// and returns the masks it reports.
func childSigState(t *testing.T, o opts) map[string]uint64 {
	t.Helper()
	o.pid1 = true
	r := startTend(t, o, "--", "cat", "/proc/self/status")
	r.expectExit(0)
	got := map[string]uint64{}
	for _, l := range r.rest() {
		name, hex, _ := strings.Cut(l, ":\t")
		if name == "SigBlk" || name == "SigIgn" || name == "SigCgt" {
			v, err := strconv.ParseUint(hex, 16, 64)
			if err != nil {
				t.Fatalf("cat printed %q: %v", l, err)
			}
			got[name] = v
		}
	}
	if len(got) != 3 {
		t.Fatalf("cat /proc/self/status: found %v, want SigBlk, SigIgn and SigCgt", got)
	}
	return got
}

// TestChildSignalState: the child starts with an empty mask and default
// dispositions, except HUP INT TSTP TTIN TTOU CONT, which stay ignored when
// they were ignored at tend's start.
func TestChildSignalState(t *testing.T) {
	t.Parallel()
	needRoot(t)
	others := []unix.Signal{unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE, unix.SIGALRM,
		unix.SIGTERM, unix.SIGWINCH, unix.SIGURG, unix.SIGCHLD, 40, 64}
	for _, tc := range []struct {
		name    string
		o       opts
		ign     uint64
		comment string
	}{
		{"normal", opts{}, 0, "(DESIGN.md §3: default dispositions)"},
		{"kept ignored", opts{ignore: keptIgnored}, mask(keptIgnored...), ""},
		{"others reset", opts{ignore: others}, 0, "tend's children must start with default dispositions"},
		{"both", opts{ignore: append(others, keptIgnored...)}, mask(keptIgnored...), ""},
		{"HUP only", opts{ignore: []unix.Signal{unix.SIGHUP}}, mask(unix.SIGHUP), ""},
		{"TTOU only", opts{ignore: []unix.Signal{unix.SIGTTOU}}, mask(unix.SIGTTOU), ""},
		{"32-34 reset", opts{ignore: []unix.Signal{32, 33, 34}}, 0,
			"(DESIGN.md §3: default dispositions; the Go runtime never touches 32-34, so a SIG_IGN passes through unless tend resets it)"},
		{"blocked at start", opts{block: []unix.Signal{unix.SIGUSR1, unix.SIGTERM, unix.SIGINT, 40}}, 0,
			"(DESIGN.md §3: an empty mask; Go's ForkExec restores the mask tend started with)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := childSigState(t, tc.o)
			if got["SigIgn"] != tc.ign {
				t.Errorf("child SigIgn = %#x %v, want %#x %v (ignored at tend's start: %v) %s",
					got["SigIgn"], sigsIn(got["SigIgn"]), tc.ign, sigsIn(tc.ign), tc.o.ignore, tc.comment)
			}
			if got["SigBlk"] != 0 {
				t.Errorf("child SigBlk = %#x %v, want 0 (blocked at tend's start: %v) %s",
					got["SigBlk"], sigsIn(got["SigBlk"]), tc.o.block, tc.comment)
			}
			if got["SigCgt"] != 0 {
				t.Errorf("child SigCgt = %#x, want 0: cat catches nothing", got["SigCgt"])
			}
		})
	}
}

func sigsIn(m uint64) []string {
	var out []string
	for sig := unix.Signal(1); sig <= 64; sig++ {
		if m&mask(sig) != 0 {
			out = append(out, sigName(sig))
		}
	}
	return out
}

// TestChildEnv: children never inherit tend's own settings; other
// variables pass through untouched.
func TestChildEnv(t *testing.T) {
	t.Parallel()
	needRoot(t)
	// TEND_CONFIG is read by tend: give it a config that opens no socket.
	config := filepath.Join(t.TempDir(), "tend.toml")
	if err := os.WriteFile(config, []byte("[control]\nsocket = \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"TEND_GRACE=5s", "TEND_CLEANUP_GRACE=1s", "TEND_CONFIG=" + config, "TEND_WARN_ON_REAP=1",
		"TEND_PROCESS_GROUP=", "TEND_VERBOSE=1", "TEND_EXPECT_EXIT=9",
		"FOO=bar", "EMPTY=", "WITH_EQ=a=b", "TEND_FOO=kept"}
	r := startTend(t, opts{pid1: true, env: env}, "--", "env")
	r.expectExit(0)
	own := map[string]bool{}
	for _, kv := range env[:7] {
		name, _, _ := strings.Cut(kv, "=")
		own[name] = true
	}
	got := map[string]bool{}
	for _, l := range r.rest() {
		got[l] = true
		if name, _, _ := strings.Cut(l, "="); own[name] {
			t.Errorf("child environment has tend's own setting %q", l)
		}
	}
	for _, want := range []string{"FOO=bar", "EMPTY=", "WITH_EQ=a=b", "TEND_FOO=kept"} {
		if !got[want] {
			t.Errorf("child environment lacks %q", want)
		}
	}
}

// TestVerbosity: warnings show by default; -v, -vv, TEND_VERBOSE and
// TINI_VERBOSITY set the level. The main makes one orphan and waits until
// it is reaped: its reaping is a warning with -w, a debug line without.
func TestVerbosity(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, tc := range []struct {
		flags []string
		env   []string
		want  []string // levels that must appear
		not   []string // levels that must not
	}{
		{[]string{"-w"}, nil, []string{"WARN"}, []string{"INFO", "DEBUG"}},
		{nil, nil, nil, []string{"WARN", "INFO", "DEBUG"}},
		{[]string{"-v"}, nil, []string{"INFO"}, []string{"DEBUG"}},
		{[]string{"-vv"}, nil, []string{"INFO", "DEBUG"}, nil},
		{[]string{"-v", "-v"}, nil, []string{"INFO", "DEBUG"}, nil},
		{nil, []string{"TEND_VERBOSE=2"}, []string{"INFO", "DEBUG"}, nil},
		{nil, []string{"TINI_VERBOSITY=3"}, []string{"INFO", "DEBUG"}, nil},
		{[]string{"-w"}, []string{"TINI_VERBOSITY=1"}, []string{"WARN"}, []string{"INFO", "DEBUG"}},
		{[]string{"-vv", "-w"}, []string{"TINI_VERBOSITY=0"}, nil, []string{"WARN", "INFO", "DEBUG"}},
	} {
		t.Run(fmt.Sprint(tc.flags, tc.env), func(t *testing.T) {
			t.Parallel()
			args := append(append(tc.flags, "--"), helperArgv("orphans", "1", "0", "0")...)
			r := startTend(t, opts{pid1: true, env: tc.env}, args...)
			r.expectExit(0)
			stderr := r.stderrAll()
			for _, l := range tc.want {
				if !strings.Contains(stderr, "level="+l) {
					t.Errorf("tend %v %v: no %s line on stderr:\n%s", tc.env, tc.flags, l, stderr)
				}
			}
			for _, l := range tc.not {
				if strings.Contains(stderr, "level="+l) {
					t.Errorf("tend %v %v: a %s line on stderr:\n%s", tc.env, tc.flags, l, stderr)
				}
			}
		})
	}
}
