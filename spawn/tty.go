//go:build linux

package spawn

import (
	"golang.org/x/sys/unix"
)

// ForegroundTTY reports whether fd 0 is tend's controlling tty, so that a
// child may be put in the foreground of it (tini does the same with
// tcsetpgrp). TIOCGPGRP fails with ENOTTY both for a non-tty and for a tty
// that is not ours; either way the answer is no, and not an error.
func ForegroundTTY() bool {
	_, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil
}
