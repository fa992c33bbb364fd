//go:build linux

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv marks a re-executed test binary; its helper's name is argv[1].
// The variable is inherited by the whole tree below the test (tend passes it
// on), so any descendant started as `testBin NAME ARGS...` is a helper.
const helperEnv = "TEND_TEST_HELPER"

// buildCommit is the commit the harness stamps into tend, so that the
// --version test can be strict.
const buildCommit = "0123456789ab"

var (
	tendBin     string // the tend binary under test
	testBin     string // this test binary, re-executed as helpers
	builtByTest bool   // tendBin was built by TestMain with buildCommit
)

// helpers are the re-executed children, registered at package level (the
// os/exec pattern). Each returns its exit code.
var helpers = map[string]func(args []string) int{
	"pid1":       helperPID1,
	"sigreport":  helperSigReport,
	"family":     helperFamily,
	"termexit":   helperTermExit,
	"orphans":    helperOrphans,
	"stormexit":  helperStormExit,
	"leftovers":  helperLeftovers,
	"ignoreterm": helperIgnoreTerm,
	"drain":      helperDrain,
	"subreap":    helperSubreap,
	"pdparent":   helperPDParent,
}

func TestMain(m *testing.M) {
	var err error
	if testBin, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "test binary:", err)
		os.Exit(1)
	}
	if os.Getenv(helperEnv) != "" && len(os.Args) > 1 {
		h, ok := helpers[os.Args[1]]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Args[1])
			os.Exit(99)
		}
		os.Exit(h(os.Args[2:]))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// core_pattern may be a plain "core": signal deaths must not litter
	// the tree with core files. Children inherit the limit.
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	if tendBin = os.Getenv("TEND_TEST_BINARY"); tendBin != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tend-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Searchable by all: the unit helper beside tend runs as each unit's user.
	if err := os.Chmod(dir, 0o711); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := buildTend(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	builtByTest = true
	return m.Run()
}

// buildTend builds the repository root (the parent of this directory) into
// dir/tend, once for the whole package, and the standalone unit helper
// beside it, as a release ships them; with TEND_TEST_UNIT_HELPER=self the helper
// is left out, and tend's own binary is the unit helper (its fallback).
func buildTend(dir string) error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	tendBin = filepath.Join(dir, "tend")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.commit="+buildCommit, "-o", tendBin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build tend in %s: %v\n%s", root, err, out)
	}
	if os.Getenv("TEND_TEST_UNIT_HELPER") == "self" {
		return nil
	}
	cmd = exec.Command("go", "build", "-o", filepath.Join(dir, "tend-unit-helper"), "./unit/helper/cmd/tend-unit-helper")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build tend-unit-helper in %s: %v\n%s", root, err, out)
	}
	return nil
}
