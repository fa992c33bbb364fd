//go:build linux

package spawn

import (
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// inherited are the fds above 2 that tend was started with and that were
// not close-on-exec, in order; set once by AdoptInheritedFDs before any
// child starts, read-only after.
var inherited []int

// AdoptInheritedFDs marks close-on-exec every fd above 2 that tend inherited
// open across exec, and remembers them. syscall.ForkExec would otherwise pass
// them to every child: jobs must get only their stdio (a non-root caller's
// job must never see an fd of the container's init), while the main process
// and the services get them back on purpose (Spec.InheritFDs), as tini passes
// them on, for socket activation (LISTEN_FDS) and the like. Call it once,
// first thing, before any child starts.
func AdoptInheritedFDs() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // ReadDir's own fd is gone by now, or Go opened it
		}
		unix.CloseOnExec(fd)
		inherited = append(inherited, fd)
	}
	return nil
}

// withInherited extends a child's stdio with the inherited fds, each at its
// own number: ForkExec clears close-on-exec on an fd mapped to itself, and
// closes the gaps (entries of ^uintptr(0)) in the child.
func withInherited(files []uintptr) []uintptr {
	if len(inherited) == 0 {
		return files
	}
	out := append([]uintptr(nil), files...)
	for _, fd := range inherited {
		for len(out) <= fd {
			out = append(out, ^uintptr(0))
		}
		out[fd] = uintptr(fd)
	}
	return out
}

// HasInherited reports whether tend inherited fds above 2 to pass on.
func HasInherited() bool { return len(inherited) > 0 }

// IsInherited reports whether fd is one tend inherited and passes on at
// its number.
func IsInherited(fd int) bool { return slices.Contains(inherited, fd) }
