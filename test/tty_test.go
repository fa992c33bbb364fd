//go:build linux

package test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal's master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// foregroundScript prints the main process's process group and the
// terminal's foreground group (fields 5 and 8 of /proc/PID/stat; the
// command name "sh" has no space), then whether it is tend's.
const foregroundScript = `set -- $(cat /proc/$$/stat); echo "pgrp=$5 tpgid=$8"; echo "tend-pgrp=$(cut -d' ' -f5 /proc/$PPID/stat)"`

// TestTTYForeground: when stdin is tend's controlling terminal, the main
// process gets its own process group, in the terminal's foreground (as
// tini's tcsetpgrp), so that ^C and job control reach it and not tend.
func TestTTYForeground(t *testing.T) {
	t.Parallel()
	master, slave := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tendBin, "--", "sh", "-c", foregroundScript)
	cmd.Env = childEnv(nil)
	cmd.Stdin = slave
	var out strings.Builder
	cmd.Stdout = &out
	// A new session whose controlling terminal is the pty: tend's fd 0.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	go func() { // keep the master drained; nothing is written to the tty here
		buf := make([]byte, 1024)
		for {
			if _, err := master.Read(buf); err != nil {
				return
			}
		}
	}()
	if err := cmd.Run(); err != nil {
		t.Fatalf("tend on a tty: %v; stdout %q", err, out.String())
	}
	var pgrp, tpgid, tendPgrp int
	for _, f := range strings.Fields(out.String()) {
		k, v, _ := strings.Cut(f, "=")
		n, _ := strconv.Atoi(v)
		switch k {
		case "pgrp":
			pgrp = n
		case "tpgid":
			tpgid = n
		case "tend-pgrp":
			tendPgrp = n
		}
	}
	if pgrp == 0 || pgrp != tpgid || pgrp == tendPgrp {
		t.Errorf("main process: pgrp %d, terminal foreground %d, tend's pgrp %d; want its own group in the foreground (%q)",
			pgrp, tpgid, tendPgrp, out.String())
	}
}

// TestTTYNotOurs: a terminal on stdin that is not tend's controlling one
// (tend in a session without one) is not an error: the main process runs,
// in its own group, and the terminal is left alone.
func TestTTYNotOurs(t *testing.T) {
	t.Parallel()
	_, slave := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tendBin, "--", "sh", "-c", "exit 4")
	cmd.Env = childEnv(nil)
	cmd.Stdin = slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling tty
	start := time.Now()
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("tend with a foreign tty on stdin: exit %d (%v) after %v, want 4", code, err, time.Since(start))
	}
}
