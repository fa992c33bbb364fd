//go:build linux

package containertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestPythonClient runs examples/python's unittest (tend_client.py and the
// HERMES_BIN shim) against a tend serving the control API (not as PID 1: it
// is a subreaper then). It needs no docker and no root.
func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if inCI() {
			t.Fatal("python3 not found (CI=true: not skipping)")
		}
		t.Skip("python3 not found")
	}
	bin := tend(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "tend.sock")
	srv := exec.Command(bin, "-v", "--socket", sock, "--", "sleep", "600")
	logf, err := os.Create(filepath.Join(dir, "tend.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv.Stdout, srv.Stderr = logf, logf
	srvLog := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
	})
	waitFor(t, "tend's socket", 10*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("tend --socket exited: %v\n%s", err, srvLog())
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "-v", "test_tend_client")
	cmd.Dir = filepath.Join(repoRoot, "examples", "python")
	cmd.Env = append(os.Environ(), "TEND_SOCKET="+sock, "TEND="+bin, "PYTHONDONTWRITEBYTECODE=1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest:\n%s", out)
	select {
	case werr := <-exited: // no client may take tend (or its main process) down
		exited <- werr
		t.Errorf("tend exited during the client's tests (%v):\n%s", werr, srvLog())
	default:
	}
	if err != nil {
		t.Errorf("python client tests failed: %v\ntend's log:\n%s", err, srvLog())
	}
}
