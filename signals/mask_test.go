//go:build linux

package signals

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const maskHelperEnv = "TEND_TEST_MASK_HELPER"

// TestMaskHelper is not a test: it is the body of the process that
// TestClearInheritedMaskReportsFailure starts. It blocks SIGUSR1, deletes
// its own binary so the re-exec must fail, and prints the error.
func TestMaskHelper(t *testing.T) {
	if os.Getenv(maskHelperEnv) == "" {
		t.Skip("helper process only")
	}
	runtime.LockOSThread()
	var set unix.Sigset_t
	set.Val[(unix.SIGUSR1-1)/64] |= 1 << ((uint(unix.SIGUSR1) - 1) % 64)
	unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil)
	exe, _ := os.Executable()
	os.Remove(exe)
	err := ClearInheritedMask()
	os.Stdout.WriteString("ERR " + strings.ReplaceAll(errString(err), "\n", " ") + "\n")
	os.Exit(0)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestClearInheritedMaskReportsFailure: when tend cannot re-exec itself
// with an empty mask, it says so, naming the signals left blocked.
func TestClearInheritedMaskReportsFailure(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyBin := filepath.Join(t.TempDir(), "signals.test")
	src, _ := os.Open(self)
	dst, _ := os.OpenFile(copyBin, os.O_CREATE|os.O_WRONLY, 0o755)
	io.Copy(dst, src)
	src.Close()
	dst.Close()
	cmd := exec.Command(copyBin, "-test.run=^TestMaskHelper$")
	cmd.Env = append(os.Environ(), maskHelperEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v, %s", err, out)
	}
	if s := string(out); !strings.Contains(s, "ERR re-exec with an empty signal mask (SIGUSR1 blocked at start)") {
		t.Errorf("helper printed %q, want the re-exec failure naming SIGUSR1", s)
	}
}
