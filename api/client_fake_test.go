//go:build linux

package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// rawServer is a fake tend that reads requests straight off the socket, so
// that it can take the fds passed with a request's first bytes
// (ReadMsgUnix), as the real server must. Requests on one connection are
// answered in order, as HTTP/1.1 keep-alive has them.
type rawServer struct {
	sock   string
	conns  atomic.Int32  // connections accepted
	closed chan struct{} // one value each time a client closes its connection
	// handle answers one request; files are the fds that came with the
	// request's first bytes (the first request on a connection only).
	handle func(req *http.Request, body []byte, files []*os.File) (int, any)
}

// newRawServer listens on a socket in t.TempDir and serves until the test
// ends.
func newRawServer(t *testing.T, handle func(*http.Request, []byte, []*os.File) (int, any)) *rawServer {
	t.Helper()
	s := &rawServer{sock: filepath.Join(t.TempDir(), "tend.sock"), closed: make(chan struct{}, 16), handle: handle}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serve(t, conn)
		}
	}()
	return s
}

// serve answers the requests of one connection.
func (s *rawServer) serve(t *testing.T, conn *net.UnixConn) {
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*8)) // room for more fds than allowed
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		t.Errorf("fake server: %v", err)
		return
	}
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), conn))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			s.closed <- struct{}{}
			return
		}
		body, _ := io.ReadAll(req.Body)
		code, v := s.handle(req, body, files)
		files = nil
		if err := writeAnswer(conn, code, v); err != nil {
			return
		}
	}
}

// parseRights returns the fds of SCM_RIGHTS messages as files.
func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("passed-%d", fd)))
		}
	}
	return files, nil
}

// writeAnswer writes an HTTP/1.1 answer with v as its JSON body; a string v
// with an error code becomes an Error.
func writeAnswer(w io.Writer, code int, v any) error {
	if msg, ok := v.(string); ok && code >= 400 {
		v = Error{Error: msg}
	}
	b, _ := json.Marshal(v)
	_, err := fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(b), b)
	return err
}
