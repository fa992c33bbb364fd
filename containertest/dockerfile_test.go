//go:build linux

package containertest

import (
	"archive/tar"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const releaseImage = "tend-ct/release:test"

// dockerMounts are what docker itself puts into every container's root
// (mount points and its own files); `docker export` shows them.
var dockerMounts = map[string]bool{
	".dockerenv": true, "dev": true, "etc": true, "etc/hosts": true, "etc/hostname": true,
	"etc/resolv.conf": true, "etc/mtab": true, "proc": true, "sys": true, "dev/console": true, "dev/pts": true, "dev/shm": true,
}

// TestDockerfile builds the repository's Dockerfile (its golang stage is the
// local debootstrap image) and checks the release image: only /tend and
// /tend-unit-helper, static (they run in an image FROM scratch), tend
// stamped with the build arguments.
func TestDockerfile(t *testing.T) {
	d := docker(t)
	d.golang(t)
	if _, err := d.docker(15*time.Minute, "build", "--network", "none",
		"--build-arg", "VERSION=9.8.7", "--build-arg", "COMMIT=abcdef012345",
		"-t", releaseImage, repoRoot); err != nil {
		t.Fatal(err)
	}
	// The ENTRYPOINT is /tend: this runs the static binary in scratch.
	out := d.must(t, "run", "--rm", "--network", "none", releaseImage, "--version")
	if got, want := strings.TrimSpace(out), "tend version 9.8.7 - git.abcdef012345"; got != want {
		t.Errorf("release image --version = %q, want %q", got, want)
	}
	name := strings.TrimSpace(d.must(t, "create", "--network", "none", releaseImage))
	t.Cleanup(func() { _, _ = d.docker(time.Minute, "rm", "-f", name) })
	files := exportedFiles(t, d, name)
	slices.Sort(files)
	if len(files) != 2 || files[0] != "tend" || files[1] != "tend-unit-helper" {
		t.Errorf("release image holds %v, want only tend and tend-unit-helper", files)
	}
	// A user copies them into an image of their own.
	df := "FROM " + d.image(t) + "\nCOPY --from=" + releaseImage + " /tend /tend-unit-helper /sbin/\n"
	if _, err := d.buildStdin(t, "tend-ct/copy:test", df); err != nil {
		t.Fatal(err)
	}
	out = d.must(t, "run", "--rm", "--network", "none", "tend-ct/copy:test", "/sbin/tend", "--", "sh", "-c", "echo ok")
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("tend copied from the release image: output %q, want ok", out)
	}
}

// TestAgentExampleDockerfile builds examples/agent/Dockerfile on the local
// bookworm image and checks that tend is its ENTRYPOINT with the example
// config (accepted: the gateway then fails only because hermes is absent).
func TestAgentExampleDockerfile(t *testing.T) {
	d := docker(t)
	d.golang(t)
	if _, err := d.docker(time.Minute, "image", "inspect", releaseImage); err != nil {
		if inCI() {
			t.Fatal("TestDockerfile's image is missing")
		}
		t.Skip("needs TestDockerfile's image")
	}
	if _, err := d.docker(5*time.Minute, "build", "--network", "none",
		"--build-arg", "TEND_IMAGE="+releaseImage, "--build-arg", "BASE="+golangImage,
		"-t", "tend-ct/agent:test", repoRoot+"/examples/agent"); err != nil {
		t.Fatal(err)
	}
	ep := d.must(t, "image", "inspect", "-f", "{{json .Config.Entrypoint}}", "tend-ct/agent:test")
	if strings.TrimSpace(ep) != `["/sbin/tend","--config","/etc/tend.toml"]` {
		t.Errorf("agent image ENTRYPOINT = %s", ep)
	}
	name := d.start(t, "tend-ct/agent:test")
	time.Sleep(2 * time.Second)
	logs := d.logs(t, name)
	if strings.Contains(logs, "config refused") || d.inspect(t, name, "{{.State.ExitCode}}") == "2" {
		t.Errorf("the example config was refused:\n%s", logs)
	}
}

// buildStdin builds an image from a Dockerfile with no context.
func (d *daemon) buildStdin(t *testing.T, tag, dockerfile string) (string, error) {
	t.Helper()
	cmd := exec.Command(dockerCLI, "build", "--network", "none", "-t", tag, "-")
	cmd.Env = d.env
	cmd.Stdin = strings.NewReader(dockerfile)
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(5*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("docker build:\n%s", out)
	}
	return string(out), err
}

// exportedFiles lists a container's root filesystem, less docker's own.
func exportedFiles(t *testing.T, d *daemon, name string) []string {
	t.Helper()
	cmd := exec.Command(dockerCLI, "export", name)
	cmd.Env = d.env
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	var files []string
	tr := tar.NewReader(pipe)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")
		if n != "" && !dockerMounts[n] {
			files = append(files, n)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}
