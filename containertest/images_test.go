//go:build linux

package containertest

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	busybox = "/bin/busybox" // Debian's busybox-static
	// golangImage is the tag the Dockerfile's build stage names; the tests
	// make it locally (no registry).
	golangImage = "golang:1.26-bookworm"
	testImage   = "tend-ct/test:latest"
)

var (
	testImageOnce sync.Once
	testImageErr  error
	golangOnce    sync.Once
	golangErr     error
)

// image returns the test image: FROM scratch, busybox's applets in /bin,
// and the host-built tend as /sbin/tend.
func (d *daemon) image(t *testing.T) string {
	t.Helper()
	testImageOnce.Do(func() { testImageErr = d.buildTestImage() })
	if testImageErr != nil {
		t.Fatal(testImageErr)
	}
	return testImage
}

func (d *daemon) buildTestImage() error {
	if err := aptInstall(busybox, "busybox-static"); err != nil {
		return err
	}
	if !isStatic(busybox) { // Debian's plain busybox package is dynamic
		if err := aptInstall("/nonexistent-force", "busybox-static"); err != nil && !isStatic(busybox) {
			return fmt.Errorf("%s is not static and busybox-static did not install: %v", busybox, err)
		}
	}
	sum, err := fileSum(busybox)
	if err != nil {
		return err
	}
	base := "tend-ct/busybox:" + sum[:12] // cached by tag between runs
	if _, err := d.docker(time.Minute, "image", "inspect", base); err != nil {
		dir := filepath.Join(workDir, "busybox-ctx")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := copyFile(busybox, filepath.Join(dir, "busybox"), 0o755); err != nil {
			return err
		}
		df := "FROM scratch\nCOPY busybox /bin/busybox\n" +
			`RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p /tmp /sbin /etc && chmod 1777 /tmp"]` + "\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			return err
		}
		if _, err := d.docker(5*time.Minute, "build", "--network", "none", "-t", base, dir); err != nil {
			return err
		}
	}
	dir := filepath.Join(workDir, "test-ctx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := copyFile(tendBin, filepath.Join(dir, "tend"), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(filepath.Dir(tendBin), "tend-unit-helper"), filepath.Join(dir, "tend-unit-helper"), 0o755); err != nil {
		return err
	}
	df := fmt.Sprintf("FROM %s\nCOPY tend tend-unit-helper /sbin/\n", base)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	_, err = d.docker(5*time.Minute, "build", "--network", "none", "-t", testImage, dir)
	return err
}

// golang makes golangImage without a registry: Debian bookworm (minbase,
// by debootstrap) with the host's /usr/local/go (cached by tag as
// tend-ct/bookworm-go:VERSION), plus a module cache holding this module's
// dependencies, so that the Dockerfile's `go mod download` needs no network.
func (d *daemon) golang(t *testing.T) {
	t.Helper()
	golangOnce.Do(func() { golangErr = d.buildGolang() })
	if golangErr != nil {
		t.Fatal(golangErr)
	}
}

func (d *daemon) buildGolang() error {
	base := "tend-ct/bookworm-go:" + strings.TrimPrefix(runtime.Version(), "go")
	if _, err := d.docker(time.Minute, "image", "inspect", base); err != nil {
		if err := d.debootstrapGo(base); err != nil {
			return err
		}
	}
	// The module cache: this module's dependencies, fetched from the host's
	// own cache used as a file proxy (no network).
	ctxDir := filepath.Join(workDir, "golang-ctx")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hostCache, err := run(ctx, os.Environ(), "go", "env", "GOMODCACHE")
	if err != nil {
		return err
	}
	env := append(os.Environ(), "GOFLAGS=-modcacherw", "GOMODCACHE="+filepath.Join(ctxDir, "mod"))
	if _, err := run(ctx, os.Environ(), "go", "mod", "download"); err != nil { // fills the host's cache
		return err
	}
	dl := exec.CommandContext(ctx, "go", "mod", "download")
	dl.Dir = repoRoot
	dl.Env = append(env, "GOPROXY=file://"+filepath.Join(strings.TrimSpace(hostCache), "cache", "download"), "GONOSUMDB=*", "GOSUMDB=off")
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod download into the image's cache: %v\n%s", err, out)
	}
	// Only the downloads: the extracted trees are rebuilt from them.
	if err := os.RemoveAll(filepath.Join(ctxDir, "mod", "cache", "vcs")); err != nil {
		return err
	}
	df := fmt.Sprintf("FROM %s\nCOPY mod/cache/download /go/pkg/mod/cache/download\n", base)
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ctxDir, ".dockerignore"), []byte("mod/*\n!mod/cache\n"), 0o644); err != nil {
		return err
	}
	_, err = d.docker(5*time.Minute, "build", "--network", "none", "-t", golangImage, ctxDir)
	return err
}

// debootstrapGo imports a bookworm minbase root with /usr/local/go as tag.
func (d *daemon) debootstrapGo(tag string) error {
	if err := aptInstall("/usr/sbin/debootstrap", "debootstrap"); err != nil {
		return err
	}
	root := filepath.Join(workDir, "rootfs")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mirror := os.Getenv("TEND_CT_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	if _, err := run(ctx, os.Environ(), "debootstrap", "--variant=minbase", "bookworm", root, mirror); err != nil {
		return err
	}
	out, err := run(ctx, os.Environ(), "go", "env", "GOROOT")
	if err != nil {
		return err
	}
	goroot := strings.TrimSpace(out)
	if _, err := run(ctx, os.Environ(), "cp", "-a", goroot, filepath.Join(root, "usr/local/go")); err != nil {
		return err
	}
	for _, dir := range []string{"go/bin", "go/src", "go/pkg/mod"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o777); err != nil {
			return err
		}
	}
	// What the official image sets, plus no network and no toolchain switch.
	changes := []string{
		"ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"ENV GOPATH=/go", "ENV GOTOOLCHAIN=local", "ENV GOPROXY=off", "ENV GOSUMDB=off",
		"WORKDIR /go", `CMD ["bash"]`,
	}
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, "-", tag)
	tar := exec.CommandContext(ctx, "tar", "-C", root, "--numeric-owner", "-c", ".")
	imp := exec.CommandContext(ctx, dockerCLI, args...)
	imp.Env = d.env
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return err
	}
	imp.Stdin = pipe
	var impOut strings.Builder
	imp.Stdout, imp.Stderr = &impOut, &impOut
	if err := tar.Start(); err != nil {
		return err
	}
	ierr := imp.Run()
	terr := tar.Wait()
	_ = os.RemoveAll(root)
	if ierr != nil || terr != nil {
		return fmt.Errorf("import %s: %v %v\n%s", tag, ierr, terr, impOut.String())
	}
	return nil
}

// isStatic reports whether an ELF file has no program interpreter.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
