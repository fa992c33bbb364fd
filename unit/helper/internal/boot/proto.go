//go:build linux

package boot

import "syscall"

// The protocol on fd 3: one ASCII message per SOCK_SEQPACKET datagram, words
// separated by one space, numbers in decimal.
//
// helper -> tend:
//
//	started PID          the command was exec'd; PID is the main process; with
//	                     option pidfd=1, a pidfd of it passed (SCM_RIGHTS) where
//	                     pidfd_open works
//	failed ERRNO WHAT    the command (or the step WHAT) failed; the helper exits
//	exit WS              the main process's raw wait status, as wait4 gave it
//	left N               leftovers killed after the main exited; last message
//	count N              reply to count: processes in the unit now
//
// tend -> helper:
//
//	signal SIG           to the main process, while it is unreaped
//	tree SIG             to every process of the unit
//	stop SIG TIMEOUT_MS  SIG to every process, SIGKILL after the timeout, exit once empty
//	kill                 SIGKILL to every process now, exit once empty
//	count                ask for count N
//
// EOF from tend (tend died) kills the unit. Unknown commands are ignored.
const (
	MsgStarted = "started"
	MsgFailed  = "failed"
	MsgExit    = "exit"
	MsgLeft    = "left"
	MsgCount   = "count"

	CmdSignal = "signal"
	CmdTree   = "tree"
	CmdStop   = "stop"
	CmdKill   = "kill"
	CmdCount  = "count"
)

// MaxMessage bounds a datagram either way: the longest is failed with a path.
const MaxMessage = 4096 + 32

func failed(errno syscall.Errno, what string) string {
	return MsgFailed + " " + itoa(int64(errno)) + " " + what
}

// report sends one message on fd. MSG_NOSIGNAL: a closed peer gives EPIPE,
// not a SIGPIPE the helper would have to tell from one sent to it
// (send(2)). It reports whether the peer is still there.
func report(fd int, msg string) bool { return reportFD(fd, msg, -1) }

// reportFD is report passing pass (SCM_RIGHTS) with msg, when >= 0. A
// message the kernel refuses to carry the fd with (a limit on fds in
// flight, ETOOMANYREFS) goes without it: tend must still learn of it.
func reportFD(fd int, msg string, pass int) bool {
	if len(msg) > MaxMessage {
		msg = msg[:MaxMessage]
	}
	var oob []byte
	if pass >= 0 {
		oob = syscall.UnixRights(pass)
	}
	for {
		err := syscall.Sendmsg(fd, []byte(msg), oob, nil, syscall.MSG_NOSIGNAL)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil && oob != nil && err != syscall.EPIPE && err != syscall.ECONNRESET:
			oob = nil
			continue
		}
		return err == nil
	}
}

// command is one parsed request from tend.
type command struct {
	verb    string
	sig     syscall.Signal
	timeout int64 // milliseconds, for stop
}

// parseCommand parses a datagram; ok is false for anything malformed.
func parseCommand(b []byte) (c command, ok bool) {
	f := fields(string(b))
	if len(f) == 0 {
		return c, false
	}
	c.verb = f[0]
	want := 0 // words, the verb included
	switch c.verb {
	case CmdKill, CmdCount:
		want = 1
	case CmdSignal, CmdTree:
		want = 2
	case CmdStop:
		want = 3
	}
	if want == 0 || len(f) != want {
		return c, false
	}
	if want >= 2 {
		n, err := atoi(f[1])
		if err != nil || n < 0 || n > 64 {
			return c, false
		}
		c.sig = syscall.Signal(n)
	}
	if want == 3 {
		n, err := atoi(f[2])
		if err != nil || n < 0 {
			return c, false
		}
		c.timeout = n
	}
	return c, true
}
