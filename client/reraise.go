//go:build linux

package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/internal/sigrelay"
	"github.com/tendinit/tend/signals"
)

// exitSignalOffset makes the exit code of a death by signal N: 128+N, as
// shells report it.
const exitSignalOffset = 128

// reraise ends this process with sig's default action, so that whoever
// waits for it sees what it would have seen of the job itself: WIFSIGNALED
// with the same signal. Go's own API cannot do that: signal.Reset puts
// back the runtime's handler, not SIG_DFL, for the signals the runtime
// uses (SEGV, BUS, FPE, ILL and, once notified, USR1 and the rest), and
// the runtime turns a SEGV into a panic that exits 2.
//
// It returns when the default action does not end the process: WINCH,
// URG, CHLD and CONT are ignored by default, and TSTP, TTIN and TTOU stop
// the process until a SIGCONT. The caller then exits 128+sig.
func reraise(sig unix.Signal) {
	// tgkill aims at this OS thread, whose mask we unblock: the goroutine
	// must not move to another thread in between.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// A core of tend spawn itself would help nobody, and with a
	// core_pattern of "core" it would overwrite the job's own core in the
	// same directory. PR_SET_DUMPABLE 0 stops even piped dumps, which
	// RLIMIT_CORE 0 does not (core(5)). The job's core_dumped stays in its
	// record.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	setDefault(sig)
	var set unix.Sigset_t
	set.Val[(sig-1)/64] |= 1 << (uint(sig-1) % 64)
	_ = unix.PthreadSigmask(unix.SIG_UNBLOCK, &set, nil)
	// A signal whose default action kills is fatal as soon as it is sent
	// to a thread that does not block it (kernel complete_signal): tgkill
	// does not return then.
	_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
}

// setDefault sets sig's disposition to SIG_DFL with a raw rt_sigaction(2),
// behind the Go runtime's back (it is about to matter for one signal
// only). A zeroed struct kernel_sigaction is SIG_DFL, no flags and an
// empty mask on every Linux architecture; 4 words are more than any of
// them needs. KILL and STOP fail with EINVAL, which is harmless: their
// action is already the default one.
func setDefault(sig unix.Signal) {
	var act [4]uint64
	_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
}

// defaultSignals gives a client command an ordinary program's reaction to
// signals. main catches every signal first thing, for PID 1's sake (a Go
// program otherwise dies of SIGHUP or SIGPIPE), unless the first word is a
// client command's; when it did (tend's own flags before the command), ^C
// would not stop `tend events` or `tend wait` without this. A signal whose default action
// ends or stops a process is raised again with that action, so the shell
// sees the client die of its ^C. Signals that were ignored when tend
// started stay ignored. The returned function stops it.
func defaultSignals(raise func(unix.Signal)) (stop func()) {
	if !signals.Caught() {
		// main caught nothing (a client command named first): the
		// runtime's defaults are already an ordinary program's.
		return func() {}
	}
	ch := make(chan os.Signal, 1) // the first fatal signal is enough
	for _, sig := range signals.Catchable() {
		switch sig {
		case unix.SIGCHLD, unix.SIGURG, unix.SIGWINCH, unix.SIGCONT: // ignored by default
		default:
			if !signal.Ignored(sig) {
				signal.Notify(ch, sig)
			}
		}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				raise(unix.Signal(s.(syscall.Signal)))
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// forwarder passes the signals tend spawn gets on to its job, in order, on
// pooled connections of its own (the bound one is busy waiting).
type forwarder struct {
	sigs   chan unix.Signal
	quit   chan struct{} // closed by stop: ends the funnel and the sender
	cancel context.CancelFunc
	done   chan struct{} // closed when the sender has returned; nil before to
}

// startForwarding starts catching every signal tend may forward. Until to
// is called they wait in order in sigrelay's pipe (on amd64) or, coalesced
// per signal as the kernel would, in signals.Set's channels (which stay
// registered: the process exits soon).
//
// The pipe is what makes tend spawn start quickly: sigrelay installs its
// handler with one rt_sigaction per signal, where os/signal.Notify costs a
// round trip to the runtime's signal-mask thread for each (about 60 of
// them, most of tend spawn's own time besides its request). The faults
// (SEGV, BUS, FPE, ILL, TRAP, SYS) stay the runtime's (sigrelay.Own): a
// kill(2)-sent one is forwarded through os/signal.
func startForwarding() *forwarder {
	f := &forwarder{sigs: make(chan unix.Signal), quit: make(chan struct{})}
	if !sigrelay.Supported {
		signals.Notify().Funnel(f.sigs, f.quit)
		return f
	}
	var relayed []syscall.Signal
	var faults []os.Signal
	for _, sig := range signals.Catchable() {
		switch {
		case !signals.Forwardable(sig), signals.KeptIgnored(sig):
		case sigrelay.Own(syscall.Signal(sig)):
			faults = append(faults, sig)
		default:
			relayed = append(relayed, syscall.Signal(sig))
		}
	}
	fd, err := sigrelay.Install(relayed)
	if err != nil {
		signals.Notify().Funnel(f.sigs, f.quit) // the runtime's way still works
		return f
	}
	pipe := os.NewFile(uintptr(fd), "signal relay") // non-blocking: read parks the goroutine
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, faults...)
	go func() {
		var buf [64]byte
		for {
			n, err := pipe.Read(buf[:])
			if err != nil {
				return
			}
			for _, b := range buf[:n] {
				select {
				case f.sigs <- unix.Signal(b):
				case <-f.quit:
					return
				}
			}
		}
	}()
	go func() {
		for {
			select {
			case s := <-ch:
				select {
				case f.sigs <- unix.Signal(s.(syscall.Signal)):
				case <-f.quit:
					return
				}
			case <-f.quit:
				return
			}
		}
	}()
	return f
}

// to starts sending the signals to job id (to its process group with
// group). CHLD, URG, TTIN and TTOU are tend spawn's own business and are
// dropped (signals.Forwardable); PIPE is forwarded: tend spawn writes
// nothing to the job's pipes, so a SIGPIPE it gets was sent to it.
func (f *forwarder) to(r *clientRun, id string, group bool) {
	ctx, cancel := context.WithCancel(r.ctx)
	f.cancel, f.done = cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		for {
			select {
			case sig := <-f.sigs:
				if !signals.Forwardable(sig) {
					continue
				}
				req := api.SignalRequest{Signal: signals.Name(sig), Tree: group}
				if err := r.client.Signal(ctx, id, req); err != nil && ctx.Err() == nil && !jobGone(err) {
					fmt.Fprintf(r.cio.stderr, "%s: forward %s to job %s: %v\n", r.name, signals.Name(sig), id, err)
				}
			case <-f.quit:
				return
			}
		}
	}()
}

// stop ends the forwarding and waits for a request in flight to be
// cancelled.
func (f *forwarder) stop() {
	close(f.quit)
	if f.cancel != nil {
		f.cancel()
		<-f.done
	}
}

// jobGone reports an answer that says the job has already exited: a signal
// that arrives as the job ends is not worth a message.
func jobGone(err error) bool {
	var se *api.StatusError
	return errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusConflict || se.Code == http.StatusGone)
}
