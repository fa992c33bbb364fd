//go:build linux

package notify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Socket is one service's NOTIFY_SOCKET: a datagram socket whose file only
// the service's uid (and root) may write to, that asks the kernel for every
// sender's credentials (SO_PASSCRED) and, where the kernel has them
// (Linux 6.5), a pidfd of the sender (SO_PASSPIDFD), and refuses passed
// fds (SO_PASSRIGHTS = 0, Linux 6.16; older kernels deliver them, and Recv
// closes them).
type Socket struct {
	Path string
	conn *net.UnixConn
}

// Datagram is one message and who sent it, as the kernel vouches.
type Datagram struct {
	Msg Message
	Pid int // the sender's pid in tend's pid namespace; 0: unknown
	Uid int
	// PidFD is a pidfd of the sender, or -1 (an older kernel): the
	// receiver owns it and closes it.
	PidFD int
	// Truncated: the datagram was longer than MaxDatagram and was
	// dropped (Msg is empty).
	Truncated bool
}

// Listen makes the socket at path (which must not exist), owned by uid:gid
// with mode 0600: sendto(2) on a unix socket needs write permission on it.
func Listen(path string, uid, gid int) (*Socket, error) {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	raw, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1); serr != nil {
				serr = fmt.Errorf("SO_PASSCRED: %w", serr)
				return
			}
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSPIDFD, 1)  // optional: Linux 6.5
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSRIGHTS, 0) // optional: Linux 6.16
		})
		err = errors.Join(err, serr)
	}
	if err == nil {
		err = os.Chown(path, uid, gid)
	}
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("notify socket %s: %w", path, err)
	}
	return &Socket{Path: path, conn: c}, nil
}

// Close closes the socket and removes its file; a Recv in progress returns.
func (s *Socket) Close() error {
	err := s.conn.Close()
	if rerr := os.Remove(s.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// oobSize holds the credentials, a pidfd and, on kernels that deliver
// them regardless, a few fds (more are truncated: the kernel closes those).
var oobSize = unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(4) + unix.CmsgSpace(4*16)

// Recv waits for the next datagram. Fds passed with it are closed: a
// service cannot make tend hold its files.
func (s *Socket) Recv(buf []byte) (Datagram, error) {
	if len(buf) < MaxDatagram+1 {
		buf = make([]byte, MaxDatagram+1)
	}
	oob := make([]byte, oobSize)
	n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf[:MaxDatagram+1], oob)
	if err != nil {
		return Datagram{PidFD: -1}, err
	}
	d := Datagram{PidFD: -1}
	if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range cms {
			cm := &cms[i]
			if cm.Header.Level != unix.SOL_SOCKET {
				continue
			}
			switch cm.Header.Type {
			case unix.SCM_CREDENTIALS:
				if uc, err := unix.ParseUnixCredentials(cm); err == nil {
					d.Pid, d.Uid = int(uc.Pid), int(uc.Uid)
				}
			case unix.SCM_PIDFD:
				if len(cm.Data) >= 4 {
					if d.PidFD >= 0 {
						unix.Close(d.PidFD)
					}
					d.PidFD = int(int32(binary.NativeEndian.Uint32(cm.Data)))
				}
			case unix.SCM_RIGHTS:
				if fds, err := unix.ParseUnixRights(cm); err == nil {
					for _, fd := range fds {
						unix.Close(fd)
					}
				}
			}
		}
	}
	if n > MaxDatagram || flags&unix.MSG_TRUNC != 0 {
		d.Truncated = true
		return d, nil
	}
	d.Msg = Parse(buf[:n])
	return d, nil
}
