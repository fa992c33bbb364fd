//go:build linux

package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

const (
	// refuseTimeout bounds reading the request of a connection over a
	// limit and writing its 503; maxRefusing bounds how many are answered
	// at once (beyond, they are closed unanswered).
	refuseTimeout = time.Second
	maxRefusing   = 64
	// acceptRetryMin and acceptRetryMax bound the wait before accepting
	// again when tend is out of fds or memory (doubling from min).
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = 100 * time.Millisecond
)

// Accept waits for the next connection and returns it wrapped (see conn).
// A connection whose peer credentials cannot be read is dropped; one over a
// connection limit gets a 503 naming the limit and is closed, never queued.
// When accept(2) fails for want of fds or memory (EMFILE, ENFILE, ENOBUFS,
// ENOMEM), Accept waits a little and retries, and says so once per
// ratelog.Interval: net/http would log every retry, every 5 ms in a flood.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		uc, err := l.accept()
		if err != nil {
			if !outOfResources(err) {
				return nil, err
			}
			l.acceptLog.Say(l.logger(), "control socket: cannot accept a connection: tend is out of fds or memory; retrying", "err", err)
			delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
			if !l.wait(delay) {
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		closer := l.closeFDs
		if closer == nil {
			closer = closeNow
		}
		c, err := newConn(uc, l.nextID.Add(1), closer)
		if err != nil {
			uc.Close() // the peer is gone already, or the kernel refused: next one
			continue
		}
		c.answers = l.answers
		if l.admit == nil {
			return c, nil
		}
		uid := c.caller.UID
		if why := l.admit.enter(uid, uid == 0 || uid == l.uid); why != "" {
			l.refuseLog.Say(l.logger(), "control socket: connection refused: "+why, "uid", uid)
			l.refuse(c, why)
			continue
		}
		c.leave = func() { l.admit.leave(uid) }
		return c, nil
	}
}

// pause waits d, or until Close; it reports false when closed.
func (l *Listener) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// refuse answers 503 with why and closes c. The answer goes after the
// request's head, as an HTTP client takes an answer that comes before its
// request for a stray one. A client sends its request right after
// connect(2), so the head is usually there already: then the answer is
// written at once, under refuseTimeout. Otherwise a goroutine waits for it,
// under refuseTimeout (at most maxRefusing at once; beyond, c is closed
// unanswered).
func (l *Listener) refuse(c *conn, why string) {
	if headArrived(c) {
		_ = c.UnixConn.SetWriteDeadline(time.Now().Add(refuseTimeout))
		_, _ = c.Write(refusal(why)) // with MSG_NOSIGNAL; an error means the client left
		l.drop(c)
		return
	}
	l.refusalsMu.Lock()
	if l.closed || len(l.refused) >= maxRefusing {
		l.refusalsMu.Unlock()
		l.drop(c)
		return
	}
	l.refused[c] = struct{}{}
	l.refusals.Add(1)
	_ = c.UnixConn.SetDeadline(time.Now().Add(refuseTimeout))
	l.refusalsMu.Unlock()
	go func() {
		defer l.refusals.Done()
		defer func() {
			l.drop(c)
			l.refusalsMu.Lock()
			delete(l.refused, c)
			l.refusalsMu.Unlock()
		}()
		head := make([]byte, 0, 4096)
		for len(head) < cap(head) && !bytes.Contains(head, headEnd) {
			n, err := c.Read(head[len(head):cap(head)])
			head = head[:len(head)+n]
			if err != nil {
				return // gone, or silent until the deadline: no answer
			}
		}
		_, _ = c.Write(refusal(why))
	}()
}

var headEnd = []byte("\r\n\r\n")

// headArrived peeks, without waiting, at whether a request's head (or 4
// KiB of it) is in c's buffer. No fds are taken in: a peek without room for
// control data leaves them queued, and the close frees them.
func headArrived(c *conn) bool {
	buf := make([]byte, 4096)
	n := 0
	_ = c.raw.Control(func(fd uintptr) {
		n, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n == len(buf) || (n > 0 && bytes.Contains(buf[:n], headEnd))
}

// refusal is the 503 answer with why, closing the connection.
func refusal(why string) []byte {
	body, _ := json.Marshal(api.Error{Error: why})
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n%s\n", len(body)+1, body)
}

// endRefusals cuts the refusals under way and waits for their goroutines.
func (l *Listener) endRefusals() {
	l.refusalsMu.Lock()
	l.closed = true
	for c := range l.refused {
		_ = c.UnixConn.SetDeadline(time.Unix(1, 0))
	}
	l.refusalsMu.Unlock()
	l.refusals.Wait()
}

// drop closes a connection that was never handed to net/http. The last
// close of the socket goes to the closer: data not read may carry passed
// fds, whose close can block (blocking.Closer); so may those read.
func (l *Listener) drop(c *conn) {
	c.release()
	dup := -1
	_ = c.raw.Control(func(fd uintptr) {
		dup, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	c.UnixConn.Close()
	if dup >= 0 {
		c.closeFDs(dup)
	}
}

// outOfResources says whether an accept error is tend's want of fds or
// memory, which passes as others close.
func outOfResources(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

func (l *Listener) logger() *slog.Logger {
	if l.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.log
}

// admission counts connections from accept to close, overall and per uid.
type admission struct {
	max, perUID int // the limits: [control] max_connections, max_connections_per_uid
	// reserve is how many more root and tend's uid may open ([control]
	// reserved_connections), so that `tend status` works when the others
	// used max up (their max_connections_per_uid still applies).
	reserve int

	mu    sync.Mutex
	total int         // guarded by mu
	byUID map[int]int // guarded by mu; a uid's entry goes at 0
}

func newAdmission(max, perUID, reserve int) *admission {
	return &admission{max: max, perUID: perUID, reserve: reserve, byUID: map[int]int{}}
}

// enter counts a connection of uid, or returns why it is refused. admin
// (root, tend's uid) may go reserve beyond max.
func (a *admission) enter(uid int, admin bool) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	limit := a.max
	if admin {
		limit += a.reserve
	}
	switch {
	case a.byUID[uid] >= a.perUID:
		return fmt.Sprintf("uid %d has %d connections open: the limit is %d ([control] max_connections_per_uid)", uid, a.byUID[uid], a.perUID)
	case a.total >= limit && admin:
		return fmt.Sprintf("%d connections open: the limit is %d ([control] max_connections) and %d more for root and tend's uid ([control] reserved_connections)", a.total, a.max, a.reserve)
	case a.total >= limit:
		return fmt.Sprintf("%d connections open: the limit is %d ([control] max_connections)", a.total, a.max)
	}
	a.total++
	a.byUID[uid]++
	return ""
}

// leave uncounts a connection of uid.
func (a *admission) leave(uid int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.byUID[uid]--; a.byUID[uid] <= 0 {
		delete(a.byUID, uid)
	}
}

// open returns the connections counted: overall and of uid.
func (a *admission) open(uid int) (total, ofUID int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total, a.byUID[uid]
}
