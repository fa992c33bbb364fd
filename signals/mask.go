//go:build linux

package signals

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ClearInheritedMask gives tend, and so its children, an empty signal mask.
// A process started with signals blocked passes that mask to every child
// through the Go runtime (each thread keeps the mask it started with, and a
// forked child gets the forking thread's), while children must start with an
// empty mask, as tini's do. The only way to clear it for every thread is to
// start again: if the mask is not empty, clear it on this thread and exec
// tend afresh, same pid, same arguments. It returns only when there is
// nothing to do (nil) or the exec failed: then the mask stays as it was,
// the children inherit it, and the error says why.
func ClearInheritedMask() error {
	// The marker guards against an exec loop should the mask somehow
	// survive the exec; it is removed at once so no child sees it.
	if _, again := os.LookupEnv(reexecMarker); again {
		os.Unsetenv(reexecMarker)
		return nil
	}
	runtime.LockOSThread() // the mask read and cleared must be this thread's
	defer runtime.UnlockOSThread()
	var cur unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, nil, &cur); err != nil {
		return fmt.Errorf("read the signal mask: %w", err)
	}
	if isEmpty(&cur) {
		return nil
	}
	var empty unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &empty, nil); err != nil {
		return fmt.Errorf("clear the signal mask: %w", err)
	}
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, append(os.Environ(), reexecMarker+"=1"))
	}
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &cur, nil) // exec failed: as before
	return fmt.Errorf("re-exec with an empty signal mask (%s blocked at start): %w", maskNames(&cur), err)
}

// maskNames lists the signals in set, for the error.
func maskNames(set *unix.Sigset_t) string {
	var names []string
	for sig := unix.Signal(1); sig <= RTMax; sig++ {
		if set.Val[(sig-1)/64]&(1<<((uint(sig)-1)%64)) != 0 {
			names = append(names, Name(sig))
		}
	}
	return strings.Join(names, " ")
}

const reexecMarker = "TEND_MASK_CLEARED"

// isEmpty reports whether no signal is blocked in set, ignoring the ones the
// Go runtime itself keeps blocked on some threads (none on the main thread
// at this point, but be exact about what counts).
func isEmpty(set *unix.Sigset_t) bool {
	for _, w := range set.Val {
		if w != 0 {
			return false
		}
	}
	return true
}
