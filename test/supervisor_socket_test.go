//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSupervisorSocketEnv: with a control socket, every service gets
// TEND_SOCKET pointing at it (and no other TEND_ setting), so a `tend spawn`
// inside any service reaches this tend; the socket is gone after the exit.
func TestSupervisorSocketEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "tend.sock")
	body := "[control]\nsocket = " + svQuote(sock) + "\n" +
		svShell("a", dir, `env | grep '^TEND_' | grep -v '^TEND_TEST_' > "$D/a.tmp"; mv "$D/a.tmp" "$D/a.env"; exec sleep 1000`)
	r := svStart(t, opts{pid1: true}, dir, body)
	svPoll(t, r, svWait, "a wrote its environment", func() bool { return svExists(filepath.Join(dir, "a.env")) })
	if got := strings.Join(svLines(filepath.Join(dir, "a.env")), " "); got != "TEND_SOCKET="+sock {
		t.Errorf("service's TEND_ variables = %q, want %q", got, "TEND_SOCKET="+sock)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after tend exited: %v", err)
	}
}
