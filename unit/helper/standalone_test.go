//go:build linux

package helper_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/unit/helper"
)

// TestStandaloneRefuses: the standalone binary started by hand, or by a
// tend asking for another protocol version, says so (on stderr, and to
// tend as a failed report) and exits 2, running nothing.
func TestStandaloneRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin, err := buildStandalone(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	marker := "TEND_UNIT_HELPER="
	argv, env, err := helper.Exec{Path: "/bin/touch", Argv: []string{"touch", filepath.Join(t.TempDir(), "ran")}}.Args()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		env     []string
		argv0   string
		stderr  string
		tendMsg bool
	}{
		{"by hand", nil, helper.BinaryName, "started by tend", true},
		{"argv0 not the helper's", env, "other", "started by tend", true},
		{"another version", replaceMarker(env, marker+"1"), helper.BinaryName, "protocol version 3, but tend asked for 1", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tend, peer, err := helper.Socketpair()
			if err != nil {
				t.Fatal(err)
			}
			defer tend.Close()
			var stderr bytes.Buffer
			args := append([]string{c.argv0}, argv[1:]...)
			cmd := &exec.Cmd{Path: bin, Args: args, Env: c.env, Stderr: &stderr, ExtraFiles: []*os.File{peer}}
			err = cmd.Run()
			peer.Close()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("run: %v; want exit 2", err)
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q; want it to say %q", stderr.String(), c.stderr)
			}
			var m helper.Message
			select {
			case m = <-helper.NewConn(tend).Messages():
			case <-time.After(5 * time.Second):
				t.Fatal("no message from the helper in 5 s")
			}
			if m.Kind != helper.Failed || m.Errno != syscall.EPROTO || !strings.Contains(m.Path, c.stderr) {
				t.Errorf("tend got %+v; want failed EPROTO saying %q", m, c.stderr)
			}
			if _, err := os.Stat(argv[len(argv)-1]); err == nil {
				t.Errorf("the command ran")
			}
		})
	}
}

func replaceMarker(env []string, kv string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "TEND_UNIT_HELPER=") {
			out = append(out, e)
		}
	}
	return append(out, kv)
}

// TestLocate: the standalone binary beside tend's is used only when it and
// its directory are owned by root (or tend's uid) and writable by nobody
// else; a refused one is named with why; none installed is no note.
func TestLocate(t *testing.T) {
	needRoot(t)
	mk := func(t *testing.T, dirMode, fileMode os.FileMode, uid int) string {
		dir := filepath.Join(t.TempDir(), "bin")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, helper.BinaryName)
		if err := os.WriteFile(f, []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, fileMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f, uid, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, c := range []struct {
		name        string
		dir, file   os.FileMode
		uid         int
		want, about string // want: "standalone" or "self"; about: in the note
	}{
		{"trusted", 0o755, 0o755, 0, "standalone", ""},
		{"group-writable file", 0o755, 0o775, 0, "self", "writable by its group or others"},
		{"other-writable dir", 0o757, 0o755, 0, "self", "writable by its group or others"},
		{"sticky world-writable dir", 0o1777, 0o755, 0, "self", "writable by its group or others"},
		{"another uid's file", 0o755, 0o755, 1234, "self", "owned by uid 1234"},
		{"not executable", 0o755, 0o644, 0, "self", "not executable"},
		{"not for other users", 0o750, 0o755, 0, "self", "cannot be executed or searched by other users"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := mk(t, c.dir, c.file, c.uid)
			path, note := helper.LocateIn(dir)
			switch c.want {
			case "standalone":
				if path != filepath.Join(dir, helper.BinaryName) {
					t.Errorf("Locate = %q (%s); want the standalone binary", path, note)
				}
			case "self":
				if path != helper.Exe || !strings.Contains(note, c.about) || !strings.Contains(note, dir) {
					t.Errorf("Locate = %q, note %q; want %s and a note naming the path and %q", path, note, helper.Exe, c.about)
				}
			}
		})
	}
	t.Run("none installed", func(t *testing.T) {
		if path, note := helper.LocateIn(t.TempDir()); path != helper.Exe || note != "" {
			t.Errorf("Locate = %q, %q; want %s and no note", path, note, helper.Exe)
		}
	})
	t.Run("link into an untrusted directory", func(t *testing.T) {
		bad := mk(t, 0o777, 0o755, 0)
		dir := mk(t, 0o755, 0o755, 0)
		link := filepath.Join(dir, helper.BinaryName)
		os.Remove(link)
		if err := os.Symlink(filepath.Join(bad, helper.BinaryName), link); err != nil {
			t.Fatal(err)
		}
		if path, note := helper.LocateIn(dir); path != helper.Exe || !strings.Contains(note, bad) {
			t.Errorf("Locate = %q, %q; want %s and a note naming %s", path, note, helper.Exe, bad)
		}
	})
}
