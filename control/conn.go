//go:build linux

package control

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxFDs is the most fds one request may pass: stdin, stdout, stderr.
	maxFDs = 3
	// maxPendingBatches bounds the fd batches a connection holds for
	// requests not handled yet, so a client cannot pile fds up in tend.
	maxPendingBatches = 2
	// peerGroupsStart is the first guess of SO_PEERGROUPS' size (in gids).
	peerGroupsStart = 64
)

// conn is one accepted connection. It knows its peer's credentials, read once
// at accept, and collects the fds that arrive with its bytes (SCM_RIGHTS).
//
// Passed fds are queued in batches, one per control message; the next
// POST /v1/jobs on the connection claims the oldest batch. A client therefore
// sends its fds with the first bytes of that request and does not pipeline
// requests on a connection that passes fds. Batches still unclaimed when the
// connection closes are closed.
type conn struct {
	*net.UnixConn
	raw    syscall.RawConn // for Write with MSG_NOSIGNAL
	id     uint64
	caller Caller
	oob    []byte // only Read uses it; net/http never reads a conn concurrently

	// closeFDs closes fds nobody will claim, off this goroutine: a passed
	// socket's close(2) can block for minutes (blocking.Closer).
	closeFDs func(fds ...int)

	// parked counts pending fds against [control] max_parked_fds (nil:
	// no limit); set before the connection's first read (Server.connState).
	parked *parked

	mu      sync.Mutex
	pending [][]int // guarded by mu: unclaimed batches of raw fds, oldest first
	bad     string  // guarded by mu: why the next request is refused; "" = none
	badCode int     // guarded by mu: with what status; 0 = 400
	closed  bool    // guarded by mu: set by release; later fds are closed at once
	out     []int   // guarded by mu: fds to pass with the next bytes written (a job's pidfd), then closed

	// bound is set once a job is bound to the connection: from then on no
	// server timeout may cut it (DESIGN.md §5), see SetReadDeadline.
	bound atomic.Bool

	// answers replace net/http's plain-text refusals of a request head;
	// nil: net/http's are sent. Read-only after accept.
	answers *headAnswers
	// timedOut says the last Read ended at its deadline: a head cut off
	// by ReadHeaderTimeout, which net/http answers with a bare 400.
	timedOut atomic.Bool

	// leave uncounts the connection from the limits it was admitted
	// under (Listener.Accept), once, at its Close; nil: not counted.
	leave     func()
	leaveOnce sync.Once
}

// Close closes the connection and releases its place under the connection
// limits.
func (c *conn) Close() error {
	err := c.UnixConn.Close()
	if c.leave != nil {
		c.leaveOnce.Do(c.leave)
	}
	return err
}

// newConn reads the peer's credentials of uc. SO_PEERCRED and SO_PEERGROUPS
// are those of the peer at connect(2) time (socket(7)), which is what we
// want: a client cannot gain rights by passing its socket to someone else.
func newConn(uc *net.UnixConn, id uint64, closeFDs func(...int)) (*conn, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var groups []int
	var serr error
	err = raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if serr == nil {
			groups, serr = peerGroups(int(fd))
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	return &conn{
		UnixConn: uc,
		raw:      raw,
		id:       id,
		caller:   Caller{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid), Groups: groups},
		closeFDs: closeFDs,
		// Room for one more fd than allowed, so that 4 fds are seen and
		// refused by count; more than that arrive as MSG_CTRUNC.
		oob: make([]byte, unix.CmsgSpace((maxFDs+1)*4)),
	}, nil
}

// Write sends with MSG_NOSIGNAL. A plain write(2) to a client that went
// away raises SIGPIPE, which tend catches to forward and cannot tell from a
// SIGPIPE sent with kill(2) (both have si_code SI_USER for a socket, see
// runtime/signal_unix.go): the main process would be killed by a client
// hanging up. With MSG_NOSIGNAL the write just fails with EPIPE. RawConn.Write
// waits on the poller for EAGAIN, so write deadlines still hold.
func (c *conn) Write(b []byte) (int, error) {
	if ours := c.answers.instead(b, c.timedOut.Load()); ours != nil {
		if _, err := c.Write(ours); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	n := 0
	var werr error
	c.mu.Lock()
	out := c.out
	c.out = nil
	c.mu.Unlock()
	var oob []byte
	if len(out) > 0 && len(b) > 0 {
		oob = unix.UnixRights(out...)
	}
	defer func() {
		for _, fd := range out {
			unix.Close(fd) // the peer has its copy, or never will: a pidfd's close never blocks
		}
	}()
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := unix.SendmsgN(int(fd), b[n:], oob, nil, unix.MSG_NOSIGNAL)
			if err == nil {
				oob = nil // passed with the first bytes
			}
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait until writable (or the deadline)
			case err != nil:
				werr = err
				return true
			}
			n += m
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "unix", Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}

// sendWithNext passes fd (which c now owns) with the next bytes written:
// the answer's first bytes.
func (c *conn) sendWithNext(fd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		unix.Close(fd)
		return
	}
	c.out = append(c.out, fd)
}

// ReadFrom hides (*net.UnixConn).ReadFrom, which would splice to the socket
// without MSG_NOSIGNAL: copies go through Write instead.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c}, r)
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13+). x/sys has no helper, and
// GetsockoptString's 256-byte buffer holds only 64 groups: on ERANGE the
// kernel reports the size it needs in optlen, so grow to it and retry.
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, peerGroupsStart)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == unix.ERANGE && int(size) > len(buf)*4:
			buf = make([]uint32, size/4)
			continue
		case errno == unix.ENOPROTOOPT:
			return nil, nil // an older kernel: primary gid only
		case errno != 0:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
		groups := make([]int, size/4)
		for i := range groups {
			groups[i] = int(buf[i])
		}
		return groups, nil
	}
}

// Read reads with recvmsg(2) to collect fds passed with the bytes. Go passes
// MSG_CMSG_CLOEXEC on Linux (net/unixsock_readmsg_cmsg_cloexec.go), so no
// child started meanwhile can inherit them. A zero read is io.EOF already
// (internal/poll's eofError).
func (c *conn) Read(b []byte) (int, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(b, c.oob)
	// Only the last read counts: net/http also ends its background read
	// after each answer with a deadline in the past.
	c.timedOut.Store(err != nil && isTimeout(err))
	if err != nil {
		// Unlike Read, ReadMsgUnix passes recvmsg's -1 on, and bufio
		// panics on a negative count.
		return max(n, 0), err
	}
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		c.collect(c.oob[:oobn], flags)
	}
	return n, nil
}

// collect queues the fds of one control message, or closes them and marks
// the connection bad when there are too many or the message was truncated.
func (c *conn) collect(oob []byte, flags int) {
	fds, err := parseRights(oob)
	why := ""
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		// The kernel dropped what did not fit; what fit is installed and
		// ours to close.
		why = fmt.Sprintf("control message truncated: at most %d fds may be passed", maxFDs)
	case err != nil:
		why = fmt.Sprintf("bad control message: %v", err)
	case len(fds) > maxFDs:
		why = fmt.Sprintf("%d fds passed: at most %d (stdin, stdout, stderr)", len(fds), maxFDs)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if why == "" && !c.closed && len(c.pending) >= maxPendingBatches {
		why = fmt.Sprintf("more than %d requests' fds pending: only POST /v1/jobs claims them", maxPendingBatches)
	}
	code := 0
	if why == "" && !c.closed && c.bad == "" {
		code, why = c.parked.hold(c.caller.UID, len(fds))
	}
	if why != "" || c.closed || c.bad != "" {
		c.closeFDs(fds...)
		if why != "" && c.bad == "" {
			c.bad, c.badCode = why, code
		}
		c.closePendingLocked()
		return
	}
	// Raw fds, never *os.File: a finalizer would close them on whatever
	// goroutine the garbage collector picks, and a close can block.
	c.pending = append(c.pending, fds)
}

// parseRights returns every fd of the SCM_RIGHTS messages in oob. On an
// error the fds parsed so far are still returned: they are installed in
// tend and the caller must close them.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		if len(msgs[i].Data)%4 != 0 {
			// The kernel never writes this, but x/sys's parser would
			// index past the end on it: refuse rather than panic.
			return fds, fmt.Errorf("SCM_RIGHTS payload of %d bytes", len(msgs[i].Data))
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// closeNow closes fds on the calling goroutine, for a Listener without a
// closer (tests).
func closeNow(fds ...int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// closePendingLocked closes every unclaimed fd; c.mu must be held.
func (c *conn) closePendingLocked() {
	for _, batch := range c.pending {
		c.closeFDs(batch...)
		c.parked.release(c.caller.UID, len(batch))
	}
	c.pending = nil
}

// take hands the oldest pending batch to the caller, who owns it from then.
func (c *conn) take() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	files := c.pending[0]
	c.pending = c.pending[1:]
	c.parked.release(c.caller.UID, len(files))
	return files
}

// badReason says why the connection's fds were refused; "" when they were not.
func (c *conn) badReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}

// badStatus is the status of the refusal badReason gives.
func (c *conn) badStatus() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.badCode == 0 {
		return http.StatusBadRequest
	}
	return c.badCode
}

// release closes the fds nobody claimed; the connection is gone.
func (c *conn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.closePendingLocked()
	for _, fd := range c.out {
		unix.Close(fd)
	}
	c.out = nil
}

// SetReadDeadline passes deadlines on, except that once a job is bound to
// the connection it ignores those in the future: net/http's IdleTimeout and
// ReadHeaderTimeout would otherwise close it and kill the job. Zero and past
// deadlines still pass: net/http aborts its background read with a deadline
// in the past and waits for that read to return.
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.bound.Load() && !t.IsZero() && t.After(time.Now()) {
		return nil
	}
	return c.UnixConn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and SetWriteDeadline.
func (c *conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.UnixConn.SetWriteDeadline(t))
}
