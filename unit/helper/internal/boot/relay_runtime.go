//go:build linux && !amd64

package boot

import "syscall"

// Where boot has no handler of its own (relay_amd64.go), it uses the two
// runtime functions os/signal is built on: os/signal itself cannot be
// imported here (it imports os, whose init must not run). The runtime
// defines them and pushes them to these names itself (//go:linkname
// signal_enable os/signal.signal_enable in runtime/sigqueue.go), which is
// why the linker's -checklinkname accepts the references. Should a Go
// release ever refuse them, the build fails loudly.
//
// Only one goroutine may receive (runtime/sigqueue.go): in helper mode
// os/signal's own loop never starts, as nothing calls signal.Notify.
//
// The cost: each signal_enable is a round trip to the runtime's
// signal-mask thread, about 40 µs here, 60 of them; and two more threads.

//go:linkname signalEnable os/signal.signal_enable
func signalEnable(sig uint32)

//go:linkname signalRecv os/signal.signal_recv
func signalRecv() uint32

// catchSignals enables every catchable signal and starts the relay
// goroutine. It returns the pipe's read end.
func catchSignals() (int, error) {
	r, w, err := signalPipe(false)
	if err != nil {
		return -1, err
	}
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if catchable(sig) {
			signalEnable(uint32(sig))
		}
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
