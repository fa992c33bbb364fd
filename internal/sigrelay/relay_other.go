//go:build linux && !amd64

package sigrelay

import "syscall"

// Supported: this architecture has no handler of sigrelay's; its users
// take the runtime's way (os/signal, or its hooks).
const Supported = false

// Install fails with ENOSYS here.
func Install([]syscall.Signal) (int, error) { return -1, syscall.ENOSYS }
