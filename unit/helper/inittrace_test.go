//go:build linux

package helper_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tendinit/tend/unit/helper"
)

// heavy are packages whose init must never run in a helper. Each has init
// work in a normal start (checked below, so the test cannot pass vacuously).
var heavy = []string{
	"net/http",
	"encoding/json",
	"github.com/urfave/cli/v2",
	"github.com/BurntSushi/toml",
	"github.com/tendinit/tend/api",
	"github.com/tendinit/tend/config",
}

// TestHelperRunsNoOtherInit builds testdata/fakemain (the helper linked with
// net/http, urfave/cli, toml and tend's packages), runs it once normally and
// once as a helper with GODEBUG=inittrace=1, and compares which packages'
// inits ran.
func TestHelperRunsNoOtherInit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "fakemain")
	build := exec.Command("go", "build", "-o", bin, "./testdata/fakemain")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build fakemain: %v\n%s", err, out)
	}
	normal := inits(t, exec.Command(bin))
	for _, p := range heavy {
		if !slices.Contains(normal, p) {
			t.Fatalf("%s has no init work in a normal start; inits: %v", p, normal)
		}
	}

	argv, env, err := helper.Subreaper{Path: "/bin/true", Argv: []string{"true"}}.Args()
	if err != nil {
		t.Fatal(err)
	}
	tend, peer, err := helper.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer tend.Close()
	cmd := &exec.Cmd{Path: bin, Args: argv, Env: append(env, "GODEBUG=inittrace=1"), ExtraFiles: []*os.File{peer}}
	got := inits(t, cmd)
	peer.Close()
	for _, p := range got {
		if slices.Contains(heavy, p) || strings.HasPrefix(p, "github.com/") {
			t.Errorf("helper mode ran the init of %s; inits: %v", p, got)
		}
	}
	if !slices.Contains(got, "syscall") {
		t.Errorf("inittrace shows no syscall init in helper mode (%v): did inittrace work?", got)
	}
	// And it did its job: started, exit 0, left 0.
	var msgs []helper.Kind
	for m := range helper.NewConn(tend).Messages() {
		msgs = append(msgs, m.Kind)
	}
	if want := []helper.Kind{helper.Started, helper.Exited, helper.Left}; !slices.Equal(msgs, want) {
		t.Errorf("fakemain helper sent %v; want %v", msgs, want)
	}
	t.Logf("inits before the helper took over: %v", got)
}

// inits runs cmd with GODEBUG=inittrace=1 and lists the packages whose init
// ran, in order ("init PKG @..." lines on stderr).
func inits(t *testing.T, cmd *exec.Cmd) []string {
	t.Helper()
	if cmd.Env == nil {
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Args[0], err, stderr.Bytes())
	}
	var out []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "init" {
			out = append(out, f[1])
		}
	}
	return out
}

// TestBootImports checks the rule boot's init order rests on: boot imports
// only packages that syscall itself depends on.
func TestBootImports(t *testing.T) {
	list := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	// sigrelay is boot's one import of the module's: it imports no more
	// than syscall does (checked here too, as boot's dependency).
	allowed := append(list("syscall"), "github.com/tendinit/tend/internal/sigrelay")
	const boot = "github.com/tendinit/tend/unit/helper/internal/boot"
	for _, p := range list("./internal/boot") {
		if p != boot && !slices.Contains(allowed, p) {
			t.Errorf("boot depends on %s, which syscall does not: boot's init may then run after heavy packages'", p)
		}
	}
}
