//go:build linux

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// The harness of the hardening tests: tend as PID 1 with a control socket
// in a short, world-searchable directory, a client of it, and readings of
// tend's memory, fds and CPU time from the host's /proc.

func init() {
	helpers["hclient"] = helperHClient
	helpers["hsetup"] = helperHSetup
}

// hWait bounds every wait of the hardening tests.
const hWait = 20 * time.Second

// hDir returns a fresh directory every user may enter, with a path short
// enough for a socket (t.TempDir's may pass sun_path's 108 bytes).
func hDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "th")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hServe starts tend (PID 1) in init mode serving dir/s, with COMMAND (a
// long sleep by default) as its main process, and waits for the socket.
func hServe(t *testing.T, o opts, dir string, flags []string, command ...string) (*tendRun, string) {
	t.Helper()
	o.pid1 = true
	sock := filepath.Join(dir, "s")
	if len(command) == 0 {
		command = []string{"sleep", "100000"}
	}
	args := append(append(append([]string{}, flags...), "--socket", sock, "--"), command...)
	r := startTend(t, o, args...)
	hWaitUp(t, r, sock)
	return r, sock
}

// hConfig starts tend (PID 1) in supervisor mode with body, whose
// [control] socket must be dir/s, and waits for the socket.
func hConfig(t *testing.T, o opts, dir, body string, args ...string) (*tendRun, string) {
	t.Helper()
	o.pid1 = true
	r := svStart(t, o, dir, body, args...)
	sock := filepath.Join(dir, "s")
	hWaitUp(t, r, sock)
	return r, sock
}

// hWaitUp waits until tend answers on sock.
func hWaitUp(t *testing.T, r *tendRun, sock string) {
	t.Helper()
	c := api.NewClient(sock)
	defer c.CloseIdle()
	svPoll(t, r, hWait, "control socket "+sock+" answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Status(ctx)
		return err == nil
	})
}

// hClient is a client of sock whose idle connections close with the test.
func hClient(t *testing.T, sock string) *api.Client {
	c := api.NewClient(sock)
	t.Cleanup(c.CloseIdle)
	return c
}

// hCtx is a context with the harness deadline.
func hCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hWait)
	t.Cleanup(cancel)
	return ctx
}

// hDial opens a raw connection to sock, closed with the test.
func hDial(t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hStatusKB reads a "Field:   N kB" line of /proc/PID/status.
func hStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("tend's status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// hRssAnon is tend's RssAnon in KiB.
func hRssAnon(t *testing.T, r *tendRun) int { return hStatusKB(t, r.pid(), "RssAnon") }

// hFDs counts tend's open fds.
func hFDs(t *testing.T, r *tendRun) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", r.pid()))
	if err != nil {
		t.Fatalf("tend's fds: %v", err)
	}
	return len(ents)
}

// hCPU is tend's user plus system CPU time so far.
func hCPU(t *testing.T, r *tendRun) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.pid()))
	if err != nil {
		t.Fatalf("tend's stat: %v", err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11]) // fields 14 and 15 of proc(5), counted after the comm
	stime, _ := strconv.Atoi(f[12])
	const hz = 100 // USER_HZ
	return time.Duration(utime+stime) * time.Second / hz
}

// hCode is the HTTP status of a client error, 0 if it is not an answer.
func hCode(err error) int {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// hWaitJob waits for job id to exit and returns its record.
func hWaitJob(t *testing.T, c *api.Client, id string) api.Job {
	t.Helper()
	j, err := c.Wait(hCtx(t), id, 0)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return j
}

// hAs runs the hclient helper as uid:gid with groups, acting on sock, and
// returns its output lines. See helperHClient for the actions.
func hAs(t *testing.T, uid, gid int, groups []int, sock string, action ...string) []string {
	t.Helper()
	gs := make([]string, len(groups))
	for i, g := range groups {
		gs[i] = strconv.Itoa(g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hWait)
	defer cancel()
	args := append([]string{"hclient", strconv.Itoa(uid), strconv.Itoa(gid), strings.Join(gs, ","), sock}, action...)
	cmd := exec.CommandContext(ctx, testBin, args...)
	cmd.Env = childEnv([]string{"HCLIENT_MARK=caller-env"})
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("hclient %v as %d: %v\n%s%s", action, uid, err, out, ee.Stderr)
		}
		t.Fatalf("hclient %v as %d: %v", action, uid, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// helperHClient drops to uid, gid and groups, then acts on the socket as
// that caller and prints what it got. SO_PEERCRED is taken at connect(2),
// so every connection is made after the drop.
//
//	spawn JSON          POST /v1/jobs with JSON (an api.JobRequest), passing
//	                    /dev/null and our stdout as the job's fds 0 and 1;
//	                    waits; prints "job ID CODE SIGNAL" after the output
//	job ID              GET /v1/jobs/ID: "code HTTPCODE"
//	signal ID           POST /v1/jobs/ID/signal (SIGKILL): "code HTTPCODE"
//	list                GET /v1/jobs: "ids ID..."
//	service OP NAME     POST /v1/services/NAME/OP: "code HTTPCODE"
//	status              GET /v1/status: "code HTTPCODE"
//
// args: UID GID GROUPS SOCKET ACTION ARGS...
func helperHClient(args []string) int {
	uid, gid := atoi(args[0]), atoi(args[1])
	var groups []int
	for _, g := range strings.Split(args[2], ",") {
		if g != "" {
			groups = append(groups, atoi(g))
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fail("setgid: %v", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fail("setuid: %v", err)
	}
	c := api.NewClient(args[3])
	defer c.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), hWait)
	defer cancel()
	code := func(err error) {
		if err != nil && hCode(err) == 0 {
			fmt.Printf("error %v\n", err)
			return
		}
		fmt.Printf("code %d\n", map[bool]int{true: 200, false: hCode(err)}[err == nil])
	}
	switch action := args[4]; action {
	case "spawn":
		var req api.JobRequest
		if err := json.Unmarshal([]byte(args[5]), &req); err != nil {
			return fail("%v", err)
		}
		null, err := os.Open(os.DevNull)
		if err != nil {
			return fail("%v", err)
		}
		j, err := c.Spawn(ctx, req, []*os.File{null, os.Stdout})
		null.Close()
		if err != nil {
			code(err)
			return 0
		}
		if j, err = c.Wait(ctx, j.ID, 0); err != nil {
			return fail("wait: %v", err)
		}
		ec, sig := -1, ""
		if j.ExitCode != nil {
			ec = *j.ExitCode
		}
		if j.Signal != nil {
			sig = *j.Signal
		}
		fmt.Printf("job %s %d %s\n", j.ID, ec, sig)
	case "job":
		_, err := c.Job(ctx, args[5])
		code(err)
	case "signal":
		code(c.Signal(ctx, args[5], api.SignalRequest{Signal: "SIGKILL"}))
	case "list":
		js, err := c.Jobs(ctx, nil)
		if err != nil {
			code(err)
			return 0
		}
		ids := []string{"ids"}
		for _, j := range js {
			ids = append(ids, j.ID)
		}
		fmt.Println(strings.Join(ids, " "))
	case "zombies":
		zs, err := c.Zombies(ctx)
		if err != nil {
			code(err)
			return 0
		}
		out := []string{"zombies"}
		for _, z := range zs {
			out = append(out, fmt.Sprintf("%d:%d:%s", z.PID, z.Zombies, z.Owner))
		}
		fmt.Println(strings.Join(out, " "))
	case "list-pid":
		pid, _ := strconv.Atoi(args[5])
		js, err := c.JobsByPID(ctx, pid)
		if err != nil {
			code(err)
			return 0
		}
		fmt.Printf("200 %d\n", len(js))
	case "service":
		code(c.ServiceOp(ctx, args[6], args[5], "SIGHUP"))
	case "status":
		_, err := c.Status(ctx)
		code(err)
	default:
		return fail("hclient: unknown action %q", action)
	}
	return 0
}

// helperHSetup prepares tend's stdio, then execs ARGV (tend):
//
//	stdout=closed        fd 1 closed (a shell's >&-)
//	stdout=fullpipe      fd 1 a pipe nobody reads, already full
//	stderr=fullpipe      fd 2 a pipe nobody reads, already full
//	run=readonly         /run an empty read-only tmpfs of mode 0755, as /run is (in pid1's private
//	                     mount namespace), so the default socket cannot be bound
//
// args: SETTING... -- ARGV...
func helperHSetup(args []string) int {
	for len(args) > 0 && args[0] != "--" {
		switch args[0] {
		case "stdout=closed":
			unix.Close(1)
		case "stdout=fullpipe", "stderr=fullpipe":
			fd := 1
			if args[0] == "stderr=fullpipe" {
				fd = 2
			}
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_NONBLOCK); err != nil { // both ends kept: writes block
				return fail("pipe: %v", err)
			}
			for {
				if _, err := unix.Write(p[1], make([]byte, 4096)); err != nil {
					break // EAGAIN: full
				}
			}
			// Blocking again for tend (whatever it makes of it), and fd 1 or 2.
			if err := unix.SetNonblock(p[1], false); err != nil {
				return fail("%v", err)
			}
			if err := unix.Dup3(p[1], fd, 0); err != nil {
				return fail("dup3: %v", err)
			}
		case "run=readonly":
			if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "size=64k,mode=0755"); err != nil {
				return fail("mount a read-only /run: %v", err)
			}
		default:
			return fail("hsetup: unknown setting %q", args[0])
		}
		args = args[1:]
	}
	if len(args) < 2 {
		return fail("hsetup: no -- ARGV")
	}
	err := unix.Exec(args[1], args[1:], os.Environ())
	return fail("exec %s: %v", args[1], err)
}

// hSetup is opts.argv0 running tend through helperHSetup.
func hSetup(settings ...string) []string {
	return append(append([]string{testBin, "hsetup"}, settings...), "--", tendBin)
}

// hReadResponses reads n HTTP answers from c (status codes), bounded.
func hReadResponses(t *testing.T, c net.Conn, n int) []int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(hWait))
	br := bufio.NewReader(c)
	var codes []int
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", len(codes)+1, n, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	return codes
}
