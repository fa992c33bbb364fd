//go:build linux

package containertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	dockerCLI = "/usr/bin/docker" // Debian's client (/usr/local/bin/docker may be another)
	dockerd   = "/usr/sbin/dockerd"
	// lockWait bounds the wait for another test run that uses the same
	// cached data root.
	lockWait = 15 * time.Minute
)

var (
	daemonOnce sync.Once
	theDaemon  *daemon
	daemonErr  error
)

// daemon is the dockerd this run started, on its own socket.
type daemon struct {
	cmd    *exec.Cmd
	sock   string
	log    string
	lock   *os.File     // flock on cacheDir/lock, held while the daemon runs
	exited <-chan error // of cmd.Wait
	env    []string     // for the docker client
}

// docker returns the test daemon, starting it on first use. A daemon that
// cannot be had is a failure (not a skip) once needRoot has passed.
func docker(t *testing.T) *daemon {
	t.Helper()
	needRoot(t)
	bin := tend(t)
	daemonOnce.Do(func() { theDaemon, daemonErr = startDaemon(bin) })
	if daemonErr != nil {
		t.Fatalf("docker daemon: %v", daemonErr)
	}
	return theDaemon
}

func startDaemon(initPath string) (*daemon, error) {
	if err := aptInstall(dockerd, "docker.io"); err != nil {
		return nil, err
	}
	if err := aptInstall(dockerCLI, "docker.io"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := lockCache()
	if err != nil {
		return nil, err
	}
	killStale()
	d := &daemon{sock: filepath.Join(workDir, "d.sock"), log: filepath.Join(workDir, "dockerd.log"), lock: lock}
	logf, err := os.Create(d.log)
	if err != nil {
		lock.Close()
		return nil, err
	}
	defer logf.Close()
	// No bridge and no iptables: the test containers run with --network
	// none and the host's network is left alone.
	d.cmd = exec.Command(dockerd, "-H", "unix://"+d.sock,
		"--data-root", filepath.Join(cacheDir, "data"),
		"--exec-root", filepath.Join(workDir, "x"),
		"--pidfile", filepath.Join(workDir, "dockerd.pid"),
		"--init-path", initPath,
		"--bridge", "none", "--iptables=false", "--ip-masq=false",
		"--userland-proxy=false", "--log-level", "warn")
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by its timeout takes the daemon along
	// (killStale covers the rest).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	_ = os.WriteFile(filepath.Join(cacheDir, "dockerd.pid"), []byte(strconv.Itoa(d.cmd.Process.Pid)), 0o644)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	cfg := filepath.Join(workDir, "docker-config")
	_ = os.MkdirAll(cfg, 0o700)
	d.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + workDir, "DOCKER_HOST=unix://" + d.sock,
		"DOCKER_CONFIG=" + cfg, "DOCKER_BUILDKIT=0"}
	end := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := run(ctx, d.env, dockerCLI, "version")
		cancel()
		if err == nil {
			d.exited = exited
			return d, nil
		}
		select {
		case werr := <-exited:
			lock.Close()
			logText, _ := os.ReadFile(d.log)
			return nil, fmt.Errorf("dockerd exited (%v):\n%s", werr, tail(string(logText), 3000))
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(end) {
			_ = d.cmd.Process.Kill()
			<-exited
			lock.Close()
			logText, _ := os.ReadFile(d.log)
			return nil, fmt.Errorf("dockerd not answering after 60s: %v\n%s", err, tail(string(logText), 3000))
		}
	}
}

// stopDaemon stops the test daemon, if one was started.
func stopDaemon() {
	d := theDaemon
	if d == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
	_ = os.Remove(filepath.Join(cacheDir, "dockerd.pid"))
	d.lock.Close()
}

// lockCache takes the cache's lock, so that two test runs never share a data
// root; it waits for another run at most lockWait.
func lockCache() (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(cacheDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	end := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(end) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		time.Sleep(time.Second)
	}
}

// killStale ends a dockerd left on our data root by a run that died (we
// hold the lock, so it is nobody's).
func killStale() {
	b, err := os.ReadFile(filepath.Join(cacheDir, "dockerd.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(cacheDir, "data")) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// docker runs the docker client against the test daemon.
func (d *daemon) docker(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return run(ctx, d.env, dockerCLI, args...)
}

// must runs the docker client and fails the test on an error.
func (d *daemon) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.docker(3*time.Minute, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// start runs a detached container, removed when the test ends.
func (d *daemon) start(t *testing.T, args ...string) string {
	t.Helper()
	name := fmt.Sprintf("tend-ct-%d", time.Now().UnixNano())
	all := append([]string{"run", "-d", "--name", name, "--network", "none"}, args...)
	d.must(t, all...)
	t.Cleanup(func() { _, _ = d.docker(time.Minute, "rm", "-f", name) })
	return name
}

// logs is a container's stdout and stderr.
func (d *daemon) logs(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerCLI, "logs", name)
	cmd.Env = d.env
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// inspect formats one field of a container.
func (d *daemon) inspect(t *testing.T, name, format string) string {
	t.Helper()
	return strings.TrimSpace(d.must(t, "inspect", "-f", format, name))
}
