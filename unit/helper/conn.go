//go:build linux

package helper

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tendinit/tend/unit/helper/internal/boot"
)

// Kind is what a helper's message says.
type Kind int

const (
	Invalid Kind = iota // a datagram that does not parse; Err says why
	Started             // the command was exec'd: PID is the main process
	Failed              // the command, or the step Path, failed with Errno
	Exited              // the main process exited: Status is its raw wait status
	Left                // N leftovers were killed; the helper is about to exit
	Counted             // N processes are in the unit (reply to Count)
)

// Message is one message from a helper.
type Message struct {
	Kind   Kind
	PID    int
	Errno  syscall.Errno
	Path   string
	Status syscall.WaitStatus
	N      int
	Err    error
	// FD is, on Started from a helper started with Subreaper.PidFD, a
	// pidfd of the command (close-on-exec), the receiver's to close; -1:
	// none. Messages of other kinds never carry one: an fd passed with
	// them is closed on arrival.
	FD int
}

// Socketpair makes the control (or report) socket: AF_UNIX SOCK_SEQPACKET,
// one message per datagram. tend keeps the first file, non-blocking so its
// reads go through the netpoller; the second is the helper's fd FDControl,
// to be closed by tend once the helper is started.
func Socketpair() (tend, helper *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("unit helper: socketpair: %w", err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("unit helper: socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "unit-helper"), os.NewFile(uintptr(fds[1]), "unit-helper-peer"), nil
}

// Conn speaks the protocol on tend's end of the socket. One goroutine reads
// it (through the netpoller: it never holds an OS thread) and delivers each
// message on Messages, which is closed at EOF: the helper exited, or, in
// exec mode, the command was exec'd.
type Conn struct {
	f    *os.File
	msgs chan Message
	done chan struct{} // closed by Close
	once sync.Once
}

// NewConn takes over f, tend's end from Socketpair, and starts reading.
func NewConn(f *os.File) *Conn {
	c := &Conn{f: f, msgs: make(chan Message, 4), done: make(chan struct{})}
	go c.read()
	return c
}

// Messages delivers the helper's messages in order; it is closed at EOF or
// on Close.
func (c *Conn) Messages() <-chan Message { return c.msgs }

func (c *Conn) read() {
	defer close(c.msgs)
	raw, err := c.f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, boot.MaxMessage+1)
	// Room for a few fds: more than fit are dropped (closed) by the
	// kernel, not installed in tend (unix(7), MSG_CTRUNC).
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		var n, oobn int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			// MSG_CMSG_CLOEXEC: a passed fd is never inherited by a
			// child tend forks meanwhile.
			n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), buf, oob, syscall.MSG_CMSG_CLOEXEC)
			return rerr != syscall.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		fds := passedFDs(oob[:max(oobn, 0)])
		if n <= 0 || err != nil {
			closeFDs(fds)
			return // EOF, or closed by Close
		}
		m := Parse(buf[:n])
		if m.Kind == Started && len(fds) == 1 {
			m.FD, fds = fds[0], nil
		}
		closeFDs(fds) // on any other message, or more than one: not ours to keep
		select {
		case c.msgs <- m:
		case <-c.done:
			closeFDs([]int{m.FD})
			return
		}
	}
}

// passedFDs are the fds of the SCM_RIGHTS messages in oob.
func passedFDs(oob []byte) []int {
	if len(oob) == 0 {
		return nil
	}
	cms, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range cms {
		if got, err := syscall.ParseUnixRights(&cms[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

// Signal sends sig to the main process, while it is unreaped.
func (c *Conn) Signal(sig syscall.Signal) error { return c.send(boot.CmdSignal, int(sig)) }

// Tree sends sig to every process of the unit.
func (c *Conn) Tree(sig syscall.Signal) error { return c.send(boot.CmdTree, int(sig)) }

// Stop sends sig to every process of the unit and SIGKILL to what is left
// after timeout; the helper exits once the unit is empty.
func (c *Conn) Stop(sig syscall.Signal, timeout time.Duration) error {
	return c.send(boot.CmdStop, int(sig), int(max(timeout, 0).Milliseconds()))
}

// Kill sends SIGKILL to every process of the unit now; the helper exits
// once it is empty.
func (c *Conn) Kill() error { return c.send(boot.CmdKill) }

// Count asks how many processes the unit has; the answer comes as Counted.
func (c *Conn) Count() error { return c.send(boot.CmdCount) }

// Close stops the reader and closes tend's end. The helper sees EOF and
// kills the unit.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.f.Close()
}

// send writes one command. MSG_NOSIGNAL: a dead helper must give EPIPE, not
// a SIGPIPE that tend would take for one sent to it (send(2)).
func (c *Conn) send(verb string, args ...int) error {
	msg := verb
	for _, a := range args {
		msg += " " + strconv.Itoa(a)
	}
	raw, err := c.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("unit helper: %s: %w", msg, err)
	}
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), []byte(msg), nil, nil, syscall.MSG_NOSIGNAL)
		return !errors.Is(serr, syscall.EAGAIN)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("unit helper: %s: %w", msg, err)
	}
	return nil
}

// Parse reads one datagram from a helper; FD is -1 (fds come with
// Conn's reads only).
func Parse(b []byte) Message {
	m := parse(b)
	m.FD = -1
	return m
}

func parse(b []byte) Message {
	f := strings.SplitN(string(b), " ", 3)
	bad := func(why string) Message {
		return Message{Kind: Invalid, Err: fmt.Errorf("unit helper: bad message %q: %s", b, why)}
	}
	if len(f) < 2 {
		return bad("too short")
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return bad("not a number")
	}
	if (f[0] == boot.MsgFailed) != (len(f) == 3) {
		return bad("wrong number of words")
	}
	switch f[0] {
	case boot.MsgStarted:
		return Message{Kind: Started, PID: n}
	case boot.MsgFailed:
		return Message{Kind: Failed, Errno: syscall.Errno(n), Path: f[2]}
	case boot.MsgExit:
		return Message{Kind: Exited, Status: syscall.WaitStatus(n)}
	case boot.MsgLeft:
		return Message{Kind: Left, N: n}
	case boot.MsgCount:
		return Message{Kind: Counted, N: n}
	}
	return bad("unknown kind")
}
