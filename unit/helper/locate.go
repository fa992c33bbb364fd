//go:build linux

package helper

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// BinaryName is the standalone helper's file name, beside tend's binary.
const BinaryName = "tend-unit-helper"

// Locate returns the program tend starts as a unit helper: the standalone
// binary (cmd/tend-unit-helper) in the directory of tend's own executable
// when it is there and only its owner can change it, else Exe, tend's own
// binary. The standalone one starts about 0.2 ms sooner (it maps 1.4 MB,
// not 11), which is most of what the helper costs over an empty Go
// program. note says what was chosen and, when a standalone binary was
// found and refused, why; it is empty when none is installed.
//
// The checks are those that make the path as trustworthy as tend's own:
// a regular executable file and its directory, each owned by root or by
// tend's effective uid and writable by nobody else, and usable by every
// user (a unit's helper runs as the unit's user). A binary from another
// build is caught at its first start (the marker's protocol version, see
// boot.Refuse), with a message naming it.
func Locate() (path, note string) {
	self, err := os.Executable()
	if err != nil {
		return Exe, ""
	}
	return locateIn(filepath.Dir(self))
}

func locateIn(dir string) (path, note string) {
	bin := filepath.Join(dir, BinaryName)
	if _, err := os.Lstat(bin); os.IsNotExist(err) {
		return Exe, ""
	}
	// A link is judged by what it leads to, and where that is.
	bin, err := filepath.EvalSymlinks(bin)
	var fi os.FileInfo
	if err == nil {
		dir = filepath.Dir(bin)
		fi, err = os.Stat(bin)
	}
	if err == nil {
		err = trusted(bin, fi, true)
	}
	if err == nil {
		var di os.FileInfo
		if di, err = os.Stat(dir); err == nil {
			err = trusted(dir, di, false)
		}
	}
	if err != nil {
		return Exe, fmt.Sprintf("%s not used, tend's own binary is the unit helper: %v", bin, err)
	}
	return bin, "unit helper: " + bin
}

// trusted checks owner and mode of name (a file when file, else a
// directory).
func trusted(name string, fi os.FileInfo, file bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner", name)
	}
	switch {
	case file && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", name)
	case file && fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable", name)
	case !file && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", name)
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s is owned by uid %d, not by root or tend's uid %d", name, st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by its group or others (mode %04o)", name, fi.Mode().Perm())
	case fi.Mode().Perm()&0o001 == 0:
		// A unit of another user starts it with that user's rights
		// (tend's own binary, through /proc/self/exe, needs no search
		// of its directory).
		return fmt.Errorf("%s cannot be executed or searched by other users (mode %04o), as the helpers of their units must", name, fi.Mode().Perm())
	}
	return nil
}
