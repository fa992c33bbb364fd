//go:build linux

package client

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
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// fakeTend is a fake control server that reads requests straight off the
// socket, taking the fds passed with each connection's first bytes, and
// answers them in order with handle.
type fakeTend struct {
	sock   string
	handle func(req *http.Request, body []byte, files []*os.File) (int, any)
}

func newFakeTend(t *testing.T, handle func(*http.Request, []byte, []*os.File) (int, any)) *fakeTend {
	t.Helper()
	f := &fakeTend{sock: filepath.Join(t.TempDir(), "tend.sock"), handle: handle}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.sock, Net: "unix"})
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
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeTend) serve(conn *net.UnixConn) {
	defer conn.Close()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	var files []*os.File
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for i := range msgs {
		fds, _ := unix.ParseUnixRights(&msgs[i])
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "passed"))
		}
	}
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), conn))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		code, v := f.handle(req, body, files)
		for _, file := range files {
			file.Close() // as tend closes its copies once the job started
		}
		files = nil
		if msg, ok := v.(string); ok && code >= 400 {
			v = api.Error{Error: msg}
		}
		b := encode(v)
		_, err = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			code, http.StatusText(code), len(b), b)
		if err != nil {
			return
		}
	}
}

// ndjson is an answer of one JSON value a line, as GET /v1/events.
type ndjson []any

func encode(v any) []byte {
	lines, ok := v.(ndjson)
	if !ok {
		b, _ := json.Marshal(v)
		return b
	}
	var buf bytes.Buffer
	for _, l := range lines {
		json.NewEncoder(&buf).Encode(l)
	}
	return buf.Bytes()
}

// testIO is a clientIO on temporary files, with the signals it raised.
type testIO struct {
	*clientIO
	raised []unix.Signal
}

func newTestIO(t *testing.T, env ...string) *testIO {
	t.Helper()
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	tio := &testIO{}
	tio.clientIO = &clientIO{stdin: open("stdin"), stdout: open("stdout"), stderr: open("stderr"),
		environ: func() []string { return env }, getwd: func() (string, error) { return "/work/dir", nil },
		getenv: func(k string) string {
			for _, kv := range env {
				if name, v, _ := strings.Cut(kv, "="); name == k {
					return v
				}
			}
			return ""
		},
		raise: func(sig unix.Signal) { tio.raised = append(tio.raised, sig) }}
	return tio
}

// output returns what was written to f.
func output(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
