//go:build linux

package client

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

func intp(n int) *int       { return &n }
func strp(s string) *string { return &s }

// scripted is a fake tend whose jobs end as their argv[0] says.
type scripted struct {
	mu       sync.Mutex
	requests []api.JobRequest // guarded by mu
	nfiles   []int            // fds passed with each POST /v1/jobs, guarded by mu
	signals  []string         // "j-1 SIGUSR2 tree=false", guarded by mu
	gotSig   chan string      // each forwarded signal
}

func (s *scripted) handle(req *http.Request, body []byte, files []*os.File) (int, any) {
	switch p := req.URL.Path; {
	case req.Method == "POST" && p == "/v1/jobs":
		var jr api.JobRequest
		json.Unmarshal(body, &jr)
		s.mu.Lock()
		s.requests, s.nfiles = append(s.requests, jr), append(s.nfiles, len(files))
		s.mu.Unlock()
		if len(files) > 0 && jr.Argv[0] == "write" {
			files[0].WriteString("from the job\n")
		}
		switch jr.Argv[0] {
		case "nope":
			return 422, "exec nope: no such file or directory (ENOENT)"
		case "noexec":
			return 422, "exec /etc/passwd: permission denied (EACCES)"
		case "busy":
			return 429, "queue full"
		case "forbidden":
			return 403, "uid 1000 may not connect"
		case "forward":
			unix.Kill(os.Getpid(), unix.SIGUSR2) // caught: tend spawn forwards it
		}
		return 201, api.Job{ID: "j-" + jr.Argv[0], State: api.StateRunning, Argv: jr.Argv}
	case strings.HasSuffix(p, "/signal") && strings.Contains(p, "j-404"):
		return 404, "no job j-404"
	case strings.HasSuffix(p, "/signal"):
		var sr api.SignalRequest
		json.Unmarshal(body, &sr)
		s.mu.Lock()
		s.signals = append(s.signals, p+" "+sr.Signal)
		s.mu.Unlock()
		s.gotSig <- sr.Signal
		return 204, nil
	case strings.HasSuffix(p, "/wait"):
		return 200, s.ending(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/jobs/"), "/wait"))
	case p == "/v1/health":
		return 503, api.Health{NotReady: []string{"gw"}}
	case p == "/v1/status":
		return 200, api.Status{Version: "t", Services: []api.Service{{Name: "gw", State: "running", PID: intp(7)}},
			Jobs: []api.Job{{ID: "j-1", State: api.StateExited, ExitCode: intp(0), Argv: []string{"true"}}}}
	case p == "/v1/events":
		return 200, ndjson{api.Event{Seq: 1, Type: api.EventJobStarted, Job: &api.Job{ID: "j-1", PID: intp(9)}},
			api.Event{Seq: 2, Type: api.EventOrphanReaped, PID: 12, Code: intp(0)}}
	}
	return 404, "no such job"
}

// ending is the final record of job id.
func (s *scripted) ending(id string) api.Job {
	j := api.Job{ID: id, State: api.StateExited, Reason: api.ReasonExited}
	switch id {
	case "j-exit3":
		j.ExitCode = intp(3)
	case "j-usr1":
		j.Signal, j.Reason = strp("SIGUSR1"), api.ReasonSignaled
	case "j-forward":
		select {
		case sig := <-s.gotSig:
			j.Signal, j.Reason = strp(sig), api.ReasonSignaled
		case <-time.After(10 * time.Second):
			j.ExitCode = intp(99)
		}
	case "j-queuedfail":
		j.ExitCode, j.Reason, j.Error = intp(127), api.ReasonExecFailed, "exec queuedfail: no such file or directory (ENOENT)"
	default:
		j.ExitCode = intp(0)
	}
	return j
}

func newScripted(t *testing.T) (*scripted, string) {
	s := &scripted{gotSig: make(chan string, 8)}
	return s, newFakeTend(t, s.handle).sock
}

func TestClientExitCodes(t *testing.T) {
	_, sock := newScripted(t)
	none := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"spawn", "--", "exit3"}, 3},
		{[]string{"spawn", "--", "usr1"}, 128 + 10},
		{[]string{"spawn", "--", "nope"}, 127},
		{[]string{"spawn", "--", "noexec"}, 126},
		{[]string{"spawn", "--", "queuedfail"}, 127},
		{[]string{"spawn", "--", "busy"}, 125},
		{[]string{"spawn", "--", "forbidden"}, 125},
		{[]string{"spawn", "-d", "--", "busy"}, 125},
		{[]string{"spawn", "--socket", none, "--", "true"}, 125},
		{[]string{"spawn"}, 2},
		{[]string{"spawn", "--bogus", "--", "x"}, 2},
		{[]string{"spawn", "--timeout", "soon", "--", "x"}, 2},
		{[]string{"spawn", "--memory-max", "12Q", "--", "x"}, 2},
		{[]string{"spawn", "--pids-max", "0", "--", "x"}, 2},
		{[]string{"spawn", "--label", "novalue", "--", "x"}, 2},
		{[]string{"spawn", "--json", "--", "x"}, 2},
		{[]string{"wait", "j-exit3"}, 3},
		{[]string{"wait", "j-usr1"}, 128 + 10},
		{[]string{"wait"}, 2},
		{[]string{"wait", "--socket", none, "j-1"}, 125},
		{[]string{"health"}, 1},
		{[]string{"health", "--socket", none}, 125},
		{[]string{"signal", "j-1", "SIGFOO"}, 2},
		{[]string{"signal", "--service", "--tree", "gw"}, 2},
		{[]string{"signal", "j-1", "hup"}, 0},
		{[]string{"signal", "j-404"}, 125},
		{[]string{"service", "explode", "gw"}, 2},
		{[]string{"status", "--socket", none}, 125},
		{[]string{"jobs", "extra"}, 2},
	}
	for _, tt := range tests {
		tio := newTestIO(t, "TEND_SOCKET="+sock)
		if got := runClient(append([]string{"tend"}, tt.args...), tio.clientIO); got != tt.want {
			t.Errorf("tend %s: exit %d, want %d; stderr %q", strings.Join(tt.args, " "), got, tt.want, output(t, tio.stderr))
		}
	}
}

func TestSpawnBoundRequest(t *testing.T) {
	s, sock := newScripted(t)
	tio := newTestIO(t, "TEND_SOCKET="+sock, "A=1")
	if got := runClient([]string{"tend", "spawn", "-l", "k=v,w", "--timeout", "1m", "--", "usr1", "x"}, tio.clientIO); got != 138 {
		t.Fatalf("tend spawn usr1: exit %d, want 138; stderr %q", got, output(t, tio.stderr))
	}
	if !slices.Equal(tio.raised, []unix.Signal{unix.SIGUSR1}) {
		t.Errorf("tend spawn raised %v, want [SIGUSR1]", tio.raised)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	jr := s.requests[0]
	if !jr.Bind || jr.Dir != "/work/dir" || !slices.Equal(jr.Env, []string{"TEND_SOCKET=" + sock, "A=1"}) ||
		jr.Labels["k"] != "v,w" || jr.Timeout != "1m" || !slices.Equal(jr.Stdio, []int{0, 1, 2}) || s.nfiles[0] != 3 {
		t.Errorf("request %+v with %d files; want bound, dir, env, label k=v,w, timeout, stdio 0 1 2 and 3 files", jr, s.nfiles[0])
	}
}

func TestSpawnClosedStdin(t *testing.T) {
	s, sock := newScripted(t)
	tio := newTestIO(t, "TEND_SOCKET="+sock)
	tio.stdin.Close()
	if got := runClient([]string{"tend", "spawn", "--", "true"}, tio.clientIO); got != 0 {
		t.Fatalf("tend spawn <&-: exit %d; stderr %q", got, output(t, tio.stderr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if jr := s.requests[0]; !slices.Equal(jr.Stdio, []int{1, 2}) || s.nfiles[0] != 2 {
		t.Errorf("closed stdin: stdio %v with %d files, want [1 2] and 2", jr.Stdio, s.nfiles[0])
	}
}

func TestSpawnForwardsSignals(t *testing.T) {
	s, sock := newScripted(t)
	tio := newTestIO(t, "TEND_SOCKET="+sock)
	if got := runClient([]string{"tend", "spawn", "--", "forward"}, tio.clientIO); got != 128+int(unix.SIGUSR2) {
		t.Fatalf("tend spawn forward: exit %d; stderr %q", got, output(t, tio.stderr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.signals, []string{"/v1/jobs/j-forward/signal SIGUSR2"}) {
		t.Errorf("forwarded %q, want SIGUSR2 to j-forward", s.signals)
	}
}

func TestSpawnDetached(t *testing.T) {
	s, sock := newScripted(t)
	out := filepath.Join(t.TempDir(), "out.log")
	tio := newTestIO(t, "TEND_SOCKET="+sock)
	args := []string{"tend", "spawn", "-d", "--stdout", out, "--stderr", out, "--", "write"}
	if got := runClient(args, tio.clientIO); got != 0 || output(t, tio.stdout) != "j-write\n" {
		t.Fatalf("tend spawn -d: exit %d, stdout %q; stderr %q", got, output(t, tio.stdout), output(t, tio.stderr))
	}
	if b, _ := os.ReadFile(out); string(b) != "from the job\n" {
		t.Errorf("--stdout file holds %q", b)
	}
	tio = newTestIO(t, "TEND_SOCKET="+sock)
	if got := runClient([]string{"tend", "spawn", "-d", "--json", "--", "true"}, tio.clientIO); got != 0 {
		t.Fatalf("tend spawn -d --json: exit %d", got)
	}
	var j api.Job
	if err := json.Unmarshal([]byte(output(t, tio.stdout)), &j); err != nil || j.ID != "j-true" {
		t.Errorf("tend spawn -d --json printed %q (%v)", output(t, tio.stdout), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if jr := s.requests[0]; jr.Bind || jr.Dir != "/work/dir" || len(jr.Env) != 1 || !slices.Equal(jr.Stdio, []int{1, 2}) || s.nfiles[0] != 2 {
		t.Errorf("detached request %+v with %d files; want unbound, dir and env, stdio [1 2], 2 files", jr, s.nfiles[0])
	}
	if jr := s.requests[1]; jr.Stdio != nil || s.nfiles[1] != 0 {
		t.Errorf("detached request without files: %+v with %d files", jr, s.nfiles[1])
	}
}

func TestClientOutput(t *testing.T) {
	_, sock := newScripted(t)
	for _, tt := range []struct {
		args []string
		want []string // substrings of stdout
	}{
		{[]string{"status"}, []string{"gw", "running", "j-1", "true"}},
		{[]string{"status", "--json"}, []string{`"version": "t"`}},
		{[]string{"events"}, []string{"job.started job=j-1 pid=9", "orphan.reaped pid=12 code=0"}},
		{[]string{"events", "--json"}, []string{`"type":"job.started"`}},
	} {
		tio := newTestIO(t, "TEND_SOCKET="+sock)
		code := runClient(append([]string{"tend"}, tt.args...), tio.clientIO)
		out := output(t, tio.stdout)
		for _, w := range tt.want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("tend %v: exit %d, stdout %q; want 0 and %q in it", tt.args, code, out, w)
			}
		}
	}
}
