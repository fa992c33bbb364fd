//go:build linux

package containertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	workDir  string // this run's temporary directory
	repoRoot string // the module's root (the parent of this package)
	cacheDir string // images and the daemon's data root, kept between runs

	tendOnce   sync.Once
	tendBin    string // the host-built static tend (also the daemon's --init-path)
	tendCommit string // the commit stamped into it
	tendErr    error
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	if workDir, err = os.MkdirTemp("", "tend-ct-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if repoRoot, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cacheDir = os.Getenv("TEND_CT_CACHE")
	if cacheDir == "" {
		cacheDir = "/var/cache/tend-containertest"
	}
	code := m.Run()
	stopDaemon()
	return code
}

// inCI reports whether a missing prerequisite must fail rather than skip.
func inCI() bool { v := os.Getenv("CI"); return v != "" && v != "false" && v != "0" }

// needRoot skips outside CI when the tests cannot run here; in CI it fails.
func needRoot(t *testing.T) {
	t.Helper()
	if inCI() {
		if os.Geteuid() != 0 {
			t.Fatal("container tests need root (CI=true: not skipping)")
		}
		return
	}
	if os.Getenv("TEND_CT_SKIP") == "1" {
		t.Skip("TEND_CT_SKIP=1")
	}
	if os.Geteuid() != 0 {
		t.Skip("container tests need root (dockerd, apt-get)")
	}
}

// tend builds the static tend once: CGO_ENABLED=0, so that it runs in an
// image FROM scratch, and stamped with the repository's commit, which
// `docker info` must show.
func tend(t *testing.T) string {
	t.Helper()
	tendOnce.Do(func() {
		tendCommit = "0000000000ab"
		if out, err := exec.Command("git", "-C", repoRoot, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
			tendCommit = strings.TrimSpace(string(out))
		}
		tendBin = filepath.Join(workDir, "tend")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "urfave_cli_no_docs",
			"-ldflags", "-s -w -X main.commit="+tendCommit, "-o", tendBin, ".")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			tendErr = fmt.Errorf("go build tend: %v\n%s", err, out)
			return
		}
		// The unit helper that ships beside tend (the Dockerfile's).
		cmd = exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w",
			"-o", filepath.Join(workDir, "tend-unit-helper"), "./unit/helper/cmd/tend-unit-helper")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			tendErr = fmt.Errorf("go build tend-unit-helper: %v\n%s", err, out)
		}
	})
	if tendErr != nil {
		t.Fatal(tendErr)
	}
	return tendBin
}

// run runs a command with a deadline and returns its stdout; the error
// carries stderr.
func run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstderr: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, deadline time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// aptInstall installs Debian packages whose files are missing.
func aptInstall(file string, pkgs ...string) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)
	if _, err := run(ctx, env, "apt-get", args...); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if _, err := run(ctx, env, "apt-get", "update", "-qq"); err != nil {
			return err
		}
		if _, err := run(ctx, env, "apt-get", args...); err != nil {
			return err
		}
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("apt-get install %v: %w", pkgs, err)
	}
	return nil
}
