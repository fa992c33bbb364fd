//go:build linux

package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocket: a datagram arrives with the sender's pid and uid (and a
// pidfd on kernels that have SO_PASSPIDFD), fds passed with it are not
// kept, a datagram longer than MaxDatagram is reported truncated, and the
// socket's file is 0600 and gone after Close.
func TestSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	s, err := Listen(path, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v %v", fi, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrUnix{Name: path}
	send := func(b []byte, oob []byte) {
		t.Helper()
		if err := unix.Sendmsg(fd, b, oob, to, 0); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, MaxDatagram+1)

	send([]byte("READY=1\nSTATUS=up"), nil)
	d, err := s.Recv(buf)
	if err != nil || !d.Msg.Ready || d.Msg.Status != "up" || d.Pid != os.Getpid() || d.Uid != os.Getuid() {
		t.Fatalf("Recv = %+v, %v", d, err)
	}
	if d.PidFD >= 0 {
		if err := unix.PidfdSendSignal(d.PidFD, 0, nil, 0); err != nil {
			t.Errorf("the pidfd does not reach the sender: %v", err)
		}
		unix.Close(d.PidFD)
	} else {
		t.Logf("no pidfd (kernel before 6.5)")
	}

	before := openFDs(t)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Sendmsg(fd, []byte("FDSTORE=1"), unix.UnixRights(int(f.Fd()), int(f.Fd()), int(f.Fd())), to, 0)
	f.Close()
	switch err {
	case unix.EPERM: // SO_PASSRIGHTS = 0 (Linux 6.16): the kernel refuses them
		t.Logf("passing fds refused by the kernel: %v", err)
	case nil: // an older kernel delivers them: Recv closes them
		d, err = s.Recv(buf)
		if err != nil || d.Msg.Ignored != 1 {
			t.Fatalf("Recv = %+v, %v", d, err)
		}
		if d.PidFD >= 0 {
			unix.Close(d.PidFD)
		}
	default:
		t.Fatal(err)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d fds open after a datagram that passed 3, %d before: kept", after, before)
	}

	send([]byte("READY=1\nSTATUS="+strings.Repeat("x", MaxDatagram)), nil)
	d, err = s.Recv(buf)
	if err != nil || !d.Truncated || d.Msg.Ready {
		t.Errorf("an oversized datagram: %+v, %v", d, err)
	}
	if d.PidFD >= 0 {
		unix.Close(d.PidFD)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after Close: %v", err)
	}
	if _, err := s.Recv(buf); err == nil {
		t.Error("Recv after Close succeeded")
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
