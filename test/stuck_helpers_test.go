//go:build linux

package test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Helpers of stuck_test.go: a FUSE file system that answers FUSE_INIT and
// then nothing (every lookup under it hangs), or, served, one whose single
// file can be looked up but never opened (an exec of it hangs); and TCP
// sockets whose last close lingers for 120 s.

func init() {
	helpers["fusesetup"] = helperFuseSetup
	helpers["fuseserve"] = helperFuseServe
}

// inCI reports whether a missing precondition must fail the test instead
// of skipping it.
func inCI() bool { return os.Getenv("CI") == "true" }

// needOrSkip skips the test when a precondition is missing, except in CI,
// where that is a failure: a skip must never pass for a pass there.
func needOrSkip(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		return
	}
	if inCI() {
		t.Fatalf("precondition %s: %v", what, err)
	}
	t.Skipf("precondition %s: %v", what, err)
}

// The FUSE protocol, as much of it as a file system that never answers
// needs (linux/fuse.h).
const (
	fuseLookup      = 1
	fuseForget      = 2
	fuseGetattr     = 3
	fuseOpen        = 14
	fuseRead        = 15
	fuseAccess      = 34
	fuseInterrupt   = 36
	fuseBatchForget = 42
	fuseInit        = 26
	fuseInHdrLen    = 40 // len, opcode, unique, nodeid, uid, gid, pid, padding
	fuseOutHdrLen   = 16 // len, error, unique
	fuseInitOutLen  = 64 // struct fuse_init_out since 7.23 (7.36 names its unused tail)
	fuseCompatInit  = 24 // FUSE_COMPAT_22_INIT_OUT_SIZE, for older kernels
	fuseFD          = 100
)

// helperFuseSetup runs as PID 1 of tend's namespace (after helperPID1):
// it mounts a FUSE file system on DIR/fuse whose server answers FUSE_INIT
// and then never reads /dev/fuse again: the fd is left open (as fd 100)
// across the exec of ARGV (tend), so the connection lives as long as tend
// and every request under DIR/fuse hangs. It mounts fusectl on DIR/ctl and
// writes the connection's number to DIR/conn, for the test to abort it
// through /proc/TENDPID/root. Everything is in tend's private mount
// namespace: nothing is left on the host.
//
// With "serve" before the "--", a server (helperFuseServe, a child of the
// helper and so of tend, which reaps it as an orphan when it ends) answers
// every request after FUSE_INIT but OPEN and READ: DIR/fuse/prog is an
// executable regular file that stat and access(X_OK) see, whose open (an
// execve's) never returns until the connection is aborted.
// args: DIR [serve] -- ARGV...
func helperFuseSetup(args []string) int {
	dir := args[0]
	serve := len(args) > 1 && args[1] == "serve"
	if serve {
		args = append(args[:1], args[2:]...)
	}
	if len(args) < 3 || args[1] != "--" {
		return fail("fusesetup: want DIR [serve] -- ARGV")
	}
	mnt, ctl := filepath.Join(dir, "fuse"), filepath.Join(dir, "ctl")
	for _, d := range []string{mnt, ctl} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail("%v", err)
		}
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR, 0)
	if err != nil {
		return fail("open /dev/fuse: %v", err)
	}
	if err := unix.Dup3(fd, fuseFD, 0); err != nil { // no O_CLOEXEC: tend keeps it
		return fail("dup3: %v", err)
	}
	unix.Close(fd)
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fuseFD)
	if err := unix.Mount("tendtest", mnt, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fail("mount fuse on %s: %v", mnt, err)
	}
	buf := make([]byte, 1<<20+4096) // at least FUSE_MIN_READ_BUFFER
	n, err := unix.Read(fuseFD, buf)
	if err != nil || n < fuseInHdrLen+8 {
		return fail("read FUSE_INIT: %d, %v", n, err)
	}
	le := binary.LittleEndian
	if op := le.Uint32(buf[4:]); op != fuseInit {
		return fail("first FUSE request is opcode %d, want FUSE_INIT", op)
	}
	unique := le.Uint64(buf[8:])
	kmajor, kminor := le.Uint32(buf[fuseInHdrLen:]), le.Uint32(buf[fuseInHdrLen+4:])
	if kmajor != 7 {
		return fail("kernel FUSE major %d, want 7", kmajor)
	}
	var readahead uint32
	if n >= fuseInHdrLen+12 {
		readahead = le.Uint32(buf[fuseInHdrLen+8:])
	}
	reply := func(size int) error {
		out := make([]byte, fuseOutHdrLen+size)
		le.PutUint32(out[0:], uint32(len(out)))
		le.PutUint64(out[8:], unique)
		b := out[fuseOutHdrLen:]
		le.PutUint32(b[0:], 7)
		le.PutUint32(b[4:], min(kminor, 31))
		le.PutUint32(b[8:], readahead)
		// flags 0: no optional feature
		if size > fuseCompatInit {
			le.PutUint16(b[16:], 16)   // max_background
			le.PutUint16(b[18:], 12)   // congestion_threshold
			le.PutUint32(b[20:], 4096) // max_write
			le.PutUint32(b[24:], 1)    // time_gran
		} else {
			le.PutUint32(b[20:], 4096)
		}
		_, err := unix.Write(fuseFD, out)
		return err
	}
	if err := reply(fuseInitOutLen); errors.Is(err, unix.EINVAL) {
		err = reply(fuseCompatInit)
		if err != nil {
			return fail("FUSE_INIT reply: %v", err)
		}
	} else if err != nil {
		return fail("FUSE_INIT reply: %v", err)
	}
	// The connection's number: the minor of the mount's device.
	conn, err := mountMinor(mnt)
	if err != nil {
		return fail("%v", err)
	}
	if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
		return fail("mount fusectl: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conn"), []byte(strconv.Itoa(conn)+"\n"), 0o644); err != nil {
		return fail("%v", err)
	}
	if serve {
		dup, err := unix.Dup(fuseFD)
		if err != nil {
			return fail("dup: %v", err)
		}
		srv := exec.Command(os.Args[0], "fuseserve", filepath.Join(dir, "fuselog"))
		srv.ExtraFiles = []*os.File{os.NewFile(uintptr(dup), "/dev/fuse")} // its fd 3
		srv.Stderr = os.Stderr
		if err := srv.Start(); err != nil {
			return fail("start the FUSE server: %v", err)
		}
	}
	err = unix.Exec(args[2], args[2:], os.Environ())
	return fail("exec %s: %v", args[2], err)
}

// The nodes of the served file system.
const (
	fuseRootNode = 1
	fuseProgNode = 2
)

// helperFuseServe serves the FUSE connection on fd 3 (see helperFuseSetup)
// until it is aborted, and appends a line per request to LOG: the opcode's
// name and the node (and the name looked up), with "(never answered)" for
// OPEN and READ. The root holds one file, prog: mode 0755, 4 KiB; every
// other name is ENOENT, every other request ENOSYS.
// args: LOG
func helperFuseServe(args []string) int {
	logf, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	le := binary.LittleEndian
	attr := func(b []byte, node uint64) {
		// struct fuse_attr: ino, size, blocks, atime, mtime, ctime,
		// their nsecs, mode, nlink, uid, gid, rdev, blksize, flags.
		le.PutUint64(b[0:], node)
		mode, nlink := uint32(unix.S_IFDIR|0o755), uint32(2)
		if node == fuseProgNode {
			mode, nlink = unix.S_IFREG|0o755, 1
			le.PutUint64(b[8:], 4096)
			le.PutUint64(b[16:], 8)
		}
		le.PutUint32(b[60:], mode)
		le.PutUint32(b[64:], nlink)
		le.PutUint32(b[80:], 4096)
	}
	const attrLen = 88
	buf := make([]byte, 1<<20+4096)
	for {
		n, err := unix.Read(3, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ECONNABORTED):
			return 0 // aborted or unmounted
		case err != nil:
			return fail("read /dev/fuse: %v", err)
		case n < fuseInHdrLen:
			return fail("short FUSE request: %d bytes", n)
		}
		op, unique, node := le.Uint32(buf[4:]), le.Uint64(buf[8:]), le.Uint64(buf[16:])
		body := buf[fuseInHdrLen:n]
		var out []byte // nil: no answer
		answer := func(errno unix.Errno, size int) []byte {
			out := make([]byte, fuseOutHdrLen+size)
			le.PutUint32(out[0:], uint32(len(out)))
			le.PutUint32(out[4:], uint32(-int32(errno)))
			le.PutUint64(out[8:], unique)
			return out
		}
		line := fmt.Sprintf("op%d %d", op, node)
		switch op {
		case fuseLookup:
			name, _, _ := strings.Cut(string(body), "\x00")
			line = fmt.Sprintf("LOOKUP %d %s", node, name)
			if node != fuseRootNode || name != "prog" {
				out = answer(unix.ENOENT, 0)
				break
			}
			// struct fuse_entry_out: nodeid, generation, entry_valid,
			// attr_valid, their nsecs, attr.
			out = answer(0, 40+attrLen)
			b := out[fuseOutHdrLen:]
			le.PutUint64(b[0:], fuseProgNode)
			le.PutUint64(b[16:], 60)
			le.PutUint64(b[24:], 60)
			attr(b[40:], fuseProgNode)
		case fuseGetattr:
			line = fmt.Sprintf("GETATTR %d", node)
			if node != fuseRootNode && node != fuseProgNode {
				out = answer(unix.ENOENT, 0)
				break
			}
			// struct fuse_attr_out: attr_valid, its nsec, dummy, attr.
			out = answer(0, 16+attrLen)
			le.PutUint64(out[fuseOutHdrLen:], 60)
			attr(out[fuseOutHdrLen+16:], node)
		case fuseAccess:
			line = fmt.Sprintf("ACCESS %d", node)
			out = answer(0, 0)
		case fuseOpen:
			line = fmt.Sprintf("OPEN %d (never answered)", node)
		case fuseRead:
			line = fmt.Sprintf("READ %d (never answered)", node)
		case fuseForget, fuseBatchForget, fuseInterrupt:
			// no answer is expected
		default:
			out = answer(unix.ENOSYS, 0)
		}
		fmt.Fprintln(logf, line)
		if out != nil {
			if _, err := unix.Write(3, out); err != nil && !errors.Is(err, unix.ENOENT) {
				// ENOENT: the request was interrupted meanwhile.
				return fail("answer %s: %v", line, err)
			}
		}
	}
}

// mountMinor finds mnt in /proc/self/mountinfo and returns the minor of
// its device, without touching mnt itself (a stat would hang).
func mountMinor(mnt string) (int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && fs[4] == mnt {
			_, minor, ok := strings.Cut(fs[2], ":")
			if !ok {
				break
			}
			return strconv.Atoi(minor)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/self/mountinfo", mnt)
}

// fuseSetup is opts.argv0 running tend through helperFuseSetup.
func fuseSetup(dir string) []string {
	return []string{testBin, "fusesetup", dir, "--", tendBin}
}

// fuseServed is fuseSetup with the file system served (DIR/fuse/prog).
func fuseServed(dir string) []string {
	return []string{testBin, "fusesetup", dir, "serve", "--", tendBin}
}

// fuseAbort aborts the FUSE connection of a tend started with fuseSetup:
// every hung request ends with an error (ENOTCONN; ECONNABORTED on Linux
// 6.18). Later aborts do nothing.
func fuseAbort(t *testing.T, r *tendRun, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "conn"))
	if err != nil {
		t.Errorf("FUSE connection number: %v", err)
		return
	}
	ctl := fmt.Sprintf("/proc/%d/root%s/ctl/%s/abort", r.pid(), dir, strings.TrimSpace(string(b)))
	if err := os.WriteFile(ctl, []byte("1"), 0); err != nil && r.running() {
		t.Errorf("abort the FUSE connection: %v", err)
	}
}

// lingerer makes TCP sockets on loopback whose last close blocks: SO_LINGER
// {1, 120}, a send buffer full of data the peer never reads. The peers
// stay open (never read) until the test ends; closing them resets the
// connections, which ends any close still lingering.
type lingerer struct {
	ln    *net.TCPListener
	peers []net.Conn
}

func newLingerer(t *testing.T) *lingerer {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// A small receive window (accepted sockets inherit it): the peer's
	// queue fills at once, and what is left stays in the sender's.
	if rc, err := ln.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}
	lg := &lingerer{ln: ln}
	t.Cleanup(func() {
		for _, p := range lg.peers {
			if tc, ok := p.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST: ends the lingering close at once
			}
			p.Close()
		}
		ln.Close()
	})
	return lg
}

// socket returns a connected socket (a raw fd, the caller's to pass and
// close) whose last close will linger.
func (lg *lingerer) socket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	port := lg.ln.Addr().(*net.TCPAddr).Port
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	peer, err := lg.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	lg.peers = append(lg.peers, peer)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 120}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	// Write until the queues stay full: the kernel keeps moving data to
	// the peer after an EAGAIN while its window is open.
	chunk := make([]byte, 64<<10)
	for full := 0; full < 5; {
		if _, err := unix.Write(fd, chunk); err != nil {
			if !errors.Is(err, unix.EAGAIN) {
				t.Fatalf("fill the socket: %v", err)
			}
			full++
			time.Sleep(2 * time.Millisecond)
			continue
		}
		full = 0
	}
	_ = unix.SetNonblock(fd, false)
	return fd
}

// closeTime closes fd on a goroutine and reports on the channel how long
// it took (or that it is still blocked after limit).
func closeTime(fd int, limit time.Duration) <-chan time.Duration {
	c := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		done := make(chan struct{})
		go func() { unix.Close(fd); close(done) }()
		select {
		case <-done:
			c <- time.Since(t0)
		case <-time.After(limit):
			c <- limit
		}
	}()
	return c
}

// tendThreads is tend's OS thread count.
func tendThreads(t *testing.T, r *tendRun) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid()))
	if err != nil {
		t.Fatalf("tend's status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Threads:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no Threads in tend's status")
	return 0
}

// zombiesUnder lists the zombies among pid's descendants.
func zombiesUnder(pid int) []int {
	var z []int
	for _, d := range descendants(pid) {
		if st, _, err := procStat(d); err == nil && st == 'Z' {
			z = append(z, d)
		}
	}
	return z
}
