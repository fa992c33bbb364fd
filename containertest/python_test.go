//go:build linux

package containertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debianPython is the python3 the Python tests run with: Debian's
// /usr/bin/python3 (3.11 on Debian 12), else the first python3 on PATH.
func debianPython(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		if inCI() {
			t.Fatal("python3 not found (CI=true: not skipping)")
		}
		t.Skip("python3 not found")
	}
	return py
}

// pythonTend is a tend serving the control API for a Python test suite.
type pythonTend struct {
	bin, sock string
	exited    chan error
	log       func() string
}

// startPythonTend starts `tend -v ARGS... -- sleep 600` (not as PID 1: it
// is a subreaper then), waits for its socket at sock, and stops it when the
// test ends.
func startPythonTend(t *testing.T, sock string, args ...string) *pythonTend {
	t.Helper()
	bin := tend(t)
	srv := exec.Command(bin, append(append([]string{"-v"}, args...), "--", "sleep", "600")...)
	logf, err := os.Create(filepath.Join(filepath.Dir(sock), "tend.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	srv.Stdout, srv.Stderr = logf, logf
	pt := &pythonTend{bin: bin, sock: sock, exited: make(chan error, 1),
		log: func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pt.exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-pt.exited:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-pt.exited
		}
	})
	waitFor(t, "tend's socket", 10*time.Second, func() bool {
		select {
		case err := <-pt.exited:
			t.Fatalf("tend exited: %v\n%s", err, pt.log())
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	return pt
}

// unittest runs `python3 -m unittest -v MODULE` in dir against pt and
// fails the test if it fails or if tend exited meanwhile.
func (pt *pythonTend) unittest(t *testing.T, py, dir, module string, deadline time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "-v", module)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TEND_SOCKET="+pt.sock, "TEND="+pt.bin, "PYTHONDONTWRITEBYTECODE=1")
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("%s -m unittest %s (%.1fs):\n%s", py, module, time.Since(start).Seconds(), out)
	select {
	case werr := <-pt.exited: // no client may take tend (or its main process) down
		pt.exited <- werr
		t.Errorf("tend exited during the Python tests (%v):\n%s", werr, pt.log())
	default:
	}
	if err != nil {
		t.Errorf("python tests %s failed: %v\ntend's log:\n%s", module, err, pt.log())
	} else if !strings.Contains(string(out), "\nOK") {
		t.Errorf("python tests %s: no OK in the output", module)
	}
}

// TestPythonClient runs examples/python's unittest (tend_client.py and the
// HERMES_BIN shim) against a tend serving the control API. It needs no
// docker and no root.
func TestPythonClient(t *testing.T) {
	py := debianPython(t)
	sock := filepath.Join(t.TempDir(), "tend.sock")
	pt := startPythonTend(t, sock, "--socket", sock)
	pt.unittest(t, py, filepath.Join(repoRoot, "examples", "python"), "test_tend_client", 3*time.Minute)
}

// TestPythonPackage runs python/tests (the tend package: tend.Popen,
// tend.asyncio, on_exit, 1,000 jobs with exact return codes) against a tend
// in supervisor mode whose [jobs] limits hold 1,000 jobs at once. Some of
// its tests start a small tend of their own (TEND). No docker, no root.
func TestPythonPackage(t *testing.T) {
	py := debianPython(t)
	if py == "/usr/bin/python3" && os.Geteuid() == 0 {
		// For the install test (pip install --target, no index, no network).
		for file, pkg := range map[string]string{
			"/usr/lib/python3/dist-packages/pip/__init__.py":        "python3-pip",
			"/usr/lib/python3/dist-packages/setuptools/__init__.py": "python3-setuptools",
		} {
			if err := aptInstall(file, pkg); err != nil {
				t.Logf("apt-get install %s: %v (its test fails under CI=true, else skips)", pkg, err)
			}
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tend.sock")
	cfg := filepath.Join(dir, "tend.toml")
	conf := "[control]\nsocket = \"" + sock + "\"\n\n[jobs]\nmax_running = 2000\nmax_queued = 2000\nkeep = \"1h\"\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pt := startPythonTend(t, sock, "--config", cfg)
	pt.unittest(t, py, filepath.Join(repoRoot, "python", "tests"), "test_tend", 5*time.Minute)
}
