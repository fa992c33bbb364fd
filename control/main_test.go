//go:build linux

package control

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// helpers run when the test binary is re-executed with TEND_TEST_HELPER set.
var helpers = map[string]func(args []string) int{"client": helperClient}

func TestMain(m *testing.M) {
	if name := os.Getenv("TEND_TEST_HELPER"); name != "" {
		os.Exit(helpers[name](os.Args[1:])) // we are a re-executed child
	}
	code := m.Run()
	if code == 0 {
		// A goroutine leaked in PID 1 lives as long as the container.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// helperCmd returns a command that re-executes the test binary as helper
// name, as the user cred. The binary is copied into dir (a sharedDir), where
// that user may run it: go test's build directory is root's own (0700).
func helperCmd(t *testing.T, dir string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	if _, err := os.Stat(bin); err != nil {
		copyFile(t, exe, bin)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TEND_TEST_HELPER="+name, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// sharedDir returns a directory every user may enter (t.TempDir is 0700
// inside a 0700 directory), removed at the end of the test.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tendctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
