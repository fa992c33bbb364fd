//go:build linux

package control

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// helperClient sends each "METHOD PATH" of args (args[0] is the socket) and
// prints "CODE BODY" for each, one a line.
func helperClient(args []string) int {
	socket := args[0]
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	for _, a := range args[1:] {
		method, path, _ := strings.Cut(a, " ")
		req, _ := http.NewRequest(method, "http://tend"+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return 0
}

func TestPeerCredsRoot(t *testing.T) {
	h := startServer(t, nil)
	if code, _ := h.do(t, "GET", "/v1/status", ""); code != http.StatusOK {
		t.Fatalf("GET /v1/status = %d", code)
	}
	c := <-h.jobs.callers
	groups, _ := os.Getgroups()
	slices.Sort(groups)
	slices.Sort(c.Groups)
	if c.PID != os.Getpid() || c.UID != os.Getuid() || c.GID != os.Getgid() || !slices.Equal(c.Groups, groups) {
		t.Errorf("caller = %+v, want pid %d uid %d gid %d groups %v", c, os.Getpid(), os.Getuid(), os.Getgid(), groups)
	}
}

// A non-root client, run as uid 65534 from a re-executed test binary: 403
// without the socket's group; allowed with it as its primary or a
// supplementary group (SO_PEERGROUPS); never allowed to control services.
func TestPeerCredsNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	const nobody, group = 65534, 4242
	dir := sharedDir(t)
	for _, tc := range []struct {
		name   string
		gid    uint32
		groups []uint32
		want   []string // one answer per request
	}{
		{"no group", nobody, nil, []string{"403 {\"error\":\"uid 65534 may not use this socket: only root, uid 0 and members of gid 4242 may ([control] mode = \\\"0666\\\", group = \\\"4242\\\")\"}", "403", "403"}},
		{"supplementary", nobody, []uint32{100, group}, []string{"200", "403 {\"error\":\"uid 65534 may not control services: only root and uid 0 may\"}",
			"403 {\"error\":\"uid 65534 may not reload: only root and uid 0 may\"}"}},
		{"primary", group, nil, []string{"200", "403", "403"}},
		{"many groups", nobody, manyGroups(group), []string{"200", "403", "403"}}, // over SO_PEERGROUPS' first guess
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".sock")
			h := startServer(t, func(c *Config) { c.Path, c.Mode, c.Group = path, 0o666, fmt.Sprint(group) })
			cred := &syscall.Credential{Uid: nobody, Gid: tc.gid, Groups: tc.groups}
			if tc.groups == nil {
				cred.Groups = []uint32{} // setgroups(0): drop root's groups
			}
			out, err := helperCmd(t, dir, cred, "client", path, "GET /v1/status", "POST /v1/services/gateway/restart", "POST /v1/reload").CombinedOutput()
			if err != nil {
				t.Fatalf("helper: %v: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			for i, want := range tc.want {
				if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
					t.Errorf("answers %q, want %d starting with %q", lines, i, want)
				}
			}
			if ops := h.svcs.calls(); len(ops) != 0 {
				t.Errorf("a non-root caller controlled a service: %q", ops)
			}
			if tc.want[0] == "200" {
				c := <-h.jobs.callers
				if c.UID != nobody || c.GID != int(tc.gid) || !slices.Equal(c.Groups, u32s(tc.groups)) {
					t.Errorf("caller = %+v, want uid %d gid %d groups %v", c, nobody, tc.gid, tc.groups)
				}
			}
		})
	}
}

func u32s(v []uint32) []int {
	out := []int{}
	for _, x := range v {
		out = append(out, int(x))
	}
	return out
}

// manyGroups returns 200 groups, g among them, sorted as the kernel keeps them.
func manyGroups(g uint32) []uint32 {
	groups := []uint32{g}
	for i := range uint32(199) {
		groups = append(groups, 5000+i)
	}
	slices.Sort(groups)
	return groups
}
