//go:build linux

package boot

import (
	"syscall"
	_ "unsafe" // for go:linkname

	"github.com/tendinit/tend/internal/sigrelay"
)

// Where sigrelay has no handler, boot uses the two runtime functions
// os/signal is built on: os/signal itself cannot be imported here (it
// imports os, whose init must not run). The runtime defines them and
// pushes them to these names itself (//go:linkname signal_enable
// os/signal.signal_enable in runtime/sigqueue.go), which is why the
// linker's -checklinkname accepts the references. Should a Go release ever
// refuse them, the build fails loudly.
//
// Only one goroutine may receive (runtime/sigqueue.go): in helper mode
// os/signal's own loop never starts, as nothing calls signal.Notify.
//
// The cost: each signal_enable is a round trip to the runtime's
// signal-mask thread, and two more threads for good.

//go:linkname signalEnable os/signal.signal_enable
func signalEnable(sig uint32)

//go:linkname signalRecv os/signal.signal_recv
func signalRecv() uint32

// catchWithRuntime enables sigs and starts the relay goroutine. It returns
// the pipe's read end.
func catchWithRuntime(sigs []syscall.Signal) (int, error) {
	r, w, err := sigrelay.Pipe(false)
	if err != nil {
		return -1, err
	}
	for _, sig := range sigs {
		signalEnable(uint32(sig))
	}
	go relay(w)
	return r, nil
}

func relay(w int) {
	for {
		b := [1]byte{byte(signalRecv())}
		for {
			if _, err := syscall.Write(w, b[:]); err != syscall.EINTR {
				break
			}
		}
	}
}
