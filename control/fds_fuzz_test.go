//go:build linux

package control

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// openFDs counts the entries of /proc/self/fd (the directory's own fd
// included, the same on every call).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// devNull opens n fds on /dev/null, close-on-exec.
func devNull(t *testing.T, n int) []int {
	t.Helper()
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	return fds
}

// pairConn is a connected socketpair: the far end (a raw fd, ours to
// write with sendmsg) and the near end wrapped as the server wraps an
// accepted connection.
func pairConn(t *testing.T) (int, *conn) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(p[1]), "near")
	nc, err := net.FileConn(f) // dups the fd
	f.Close()
	if err != nil {
		unix.Close(p[0])
		t.Fatal(err)
	}
	c, err := newConn(nc.(*net.UnixConn), 1, closeNow)
	if err != nil {
		unix.Close(p[0])
		nc.Close()
		t.Fatal(err)
	}
	return p[0], c
}

// FuzzConnRead drives the fd-receiving path with a real socketpair: two
// messages, each arbitrary bytes with 0-5 fds, read back through conn.Read
// in chunks of a fuzzed size. The bytes must come through unchanged; 1-3
// fds become one pending batch; 4 or 5 (5 arrive truncated) make the
// connection bad and every fd is closed; and once the connection is
// released not one fd is left open (/proc/self/fd counted before and after).
func FuzzConnRead(f *testing.F) {
	f.Add([]byte("POST /v1/jobs HTTP/1.1\r\n"), uint8(3), []byte("Host: tend\r\n\r\n"), uint8(0), uint16(7))
	f.Add([]byte("x"), uint8(4), []byte("y"), uint8(1), uint16(1))
	f.Add([]byte("abc"), uint8(5), []byte(""), uint8(0), uint16(4096))
	f.Add([]byte("a"), uint8(1), []byte("b"), uint8(2), uint16(0))
	f.Add([]byte(""), uint8(0), []byte("zz"), uint8(5), uint16(2))
	// Warm up what the runtime opens once (the netpoller's epoll fd and
	// eventfd), so that it is not counted as a leak of the first input.
	warm, c := pairConn(&testing.T{})
	unix.Close(warm)
	c.Close()
	f.Fuzz(func(t *testing.T, p1 []byte, n1 uint8, p2 []byte, n2 uint8, chunk uint16) {
		before := openFDs(t)
		far, c := pairConn(t)
		msgs := []struct {
			payload []byte
			n       int
		}{{p1, int(n1 % 6)}, {p2, int(n2 % 6)}}
		var want []byte
		for _, m := range msgs {
			if len(m.payload) == 0 && m.n > 0 {
				m.payload = []byte{0} // a stream socket carries fds only with bytes
			}
			if len(m.payload) == 0 {
				continue
			}
			fds := devNull(t, m.n)
			var oob []byte
			if m.n > 0 {
				oob = unix.UnixRights(fds...)
			}
			err := unix.Sendmsg(far, m.payload, oob, nil, 0)
			for _, fd := range fds {
				unix.Close(fd) // in flight, the kernel holds its own reference
			}
			if err != nil {
				t.Fatalf("sendmsg %d bytes with %d fds: %v", len(m.payload), m.n, err)
			}
			want = append(want, m.payload...)
		}
		unix.Close(far)
		size := int(chunk)%64 + 1
		var got []byte
		buf := make([]byte, size)
		for {
			n, err := c.Read(buf)
			if n < 0 || n > size {
				t.Fatalf("Read returned %d for a %d-byte buffer", n, size)
			}
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %q, sent %q", got, want)
		}
		checkBatches(t, c, msgs[0].n, msgs[1].n)
		c.release()
		c.Close()
		if after := openFDs(t); after != before {
			t.Fatalf("%d fds open after the connection, %d before: a leak", after, before)
		}
	})
}

// checkBatches checks what the connection made of messages with n1 and n2
// fds, and closes the batches it hands out.
func checkBatches(t *testing.T, c *conn, n1, n2 int) {
	t.Helper()
	bad := n1 > maxFDs || n2 > maxFDs
	if got := c.badReason(); bad != (got != "") {
		t.Fatalf("fds %d and %d: bad reason %q", n1, n2, got)
	}
	var want []int
	for _, n := range []int{n1, n2} {
		if n > 0 && !bad {
			want = append(want, n)
		}
	}
	var null unix.Stat_t
	if err := unix.Stat(os.DevNull, &null); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		batch := c.take()
		if batch == nil {
			if i != len(want) {
				t.Fatalf("fds %d and %d: %d batches, want %v", n1, n2, i, want)
			}
			return
		}
		if i >= len(want) || len(batch) != want[i] {
			t.Fatalf("fds %d and %d: batch %d has %d files, want %v", n1, n2, i, len(batch), want)
		}
		for _, fd := range batch {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || st.Rdev != null.Rdev {
				t.Errorf("a passed fd is not the /dev/null sent: %v", err)
			}
			unix.Close(fd)
		}
	}
}

// FuzzParseRights fuzzes the parsing of control messages themselves, with
// layouts the kernel would never make. Every 4-byte slot of each well-formed
// SCM_RIGHTS message is replaced with a real fd of ours, so that whatever
// collect closes is ours to lose. collect must not panic; without an error
// it queues exactly the fds we put in (or refuses them all when there are
// more than 3 or the message was truncated); and after release every fd
// is closed.
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(0, 1, 2), false)
	f.Add(unix.UnixRights(0, 1, 2, 3), false)
	f.Add(unix.UnixRights(7), true)
	f.Add(append(unix.UnixRights(1), unix.UnixRights(2, 3)...), false)
	f.Add(append(unix.UnixRights(1), 1, 2, 3), false)
	f.Add([]byte{20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 9, 9, 9}, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, oob []byte, ctrunc bool) {
		oob = bytes.Clone(oob)
		before := openFDs(t)
		msgs, perr := unix.ParseSocketControlMessage(oob)
		total := 0
		for _, m := range msgs {
			if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
				continue
			}
			if len(m.Data)%4 != 0 {
				// The kernel always writes whole ints (scm_detach_fds), and
				// x/sys's ParseUnixRights indexes out of range on a partial
				// one (see docs/GUARANTEES.md): not a layout a peer can make.
				return
			}
			total += len(m.Data) / 4
		}
		if total > 64 {
			return // more fds than we care to open
		}
		var all []int // the fds put in the slots, in order
		off := 0
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS {
				fds := devNull(t, len(m.Data)/4)
				for i, fd := range fds {
					binary.NativeEndian.PutUint32(oob[off+unix.CmsgLen(0)+4*i:], uint32(fd))
				}
				all = append(all, fds...)
			}
			off += cmsgLenAligned(int(m.Header.Len))
		}
		flags := 0
		if ctrunc {
			flags = unix.MSG_CTRUNC
		}
		c := &conn{closeFDs: closeNow}
		c.collect(oob, flags)
		refused := perr != nil || ctrunc || len(all) > maxFDs
		if refused != (c.badReason() != "") {
			t.Fatalf("oob %x (ctrunc %v): bad reason %q, refused %v", oob, ctrunc, c.badReason(), refused)
		}
		if !refused && len(all) > 0 {
			batch := c.take()
			if len(batch) != len(all) {
				t.Fatalf("oob %x: a batch of %d files, want %d", oob, len(batch), len(all))
			}
			for i, fd := range batch {
				if fd != all[i] {
					t.Fatalf("oob %x: file %d is fd %d, want %d", oob, i, fd, all[i])
				}
			}
			c.pending = append([][]int{batch}, c.pending...)
		}
		c.release()
		for _, fd := range all {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
				t.Fatalf("oob %x: fd %d still open after release", oob, fd)
			}
		}
		if after := openFDs(t); after != before {
			t.Fatalf("oob %x: %d fds open after, %d before", oob, after, before)
		}
	})
}

func cmsgLenAligned(n int) int {
	const align = 8 // sizeof(long) on linux/amd64 and arm64
	return (n + align - 1) &^ (align - 1)
}
