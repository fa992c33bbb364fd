//go:build linux

package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// pidfdSubmit sends POST /v1/jobs with body on a fresh connection and
// reads the answer with recvmsg: the record and the fds passed with it.
func pidfdSubmit(t *testing.T, sock, body string) (int, api.Job, []int) {
	t.Helper()
	c := hDial(t, sock)
	defer c.Close()
	req := "POST /v1/jobs HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	var fds []int
	buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4*8))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		all.Write(buf[:n])
		if oobn > 0 {
			cms, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for i := range cms {
				if got, err := unix.ParseUnixRights(&cms[i]); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		if err != nil || n == 0 {
			break
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(&all), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", all.String(), err)
	}
	defer resp.Body.Close()
	var rec api.Job
	if resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, rec, fds
}

// fdinfoPid is the Pid: line of a pidfd's fdinfo (-1 once it was reaped).
func fdinfoPid(t *testing.T, fd int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pid:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestJobPidFD: POST /v1/jobs with "pidfd": true passes a pidfd of the
// job's process with the 201 answer, for every track (subreaper: the one
// its helper opened before it could reap the command): it names the job's
// pid, signals it (pidfd_send_signal), becomes readable when the job
// exits, and cannot be waited on (tend stays the only reaper: the record
// has the status). Without the key no fd comes; tend keeps no copy of a
// running job's pidfd once the answer has it, and 200 such requests leave
// tend with no more fds than before.
func TestJobPidFD(t *testing.T) {
	t.Parallel()
	for _, track := range []string{"group", "subreaper"} {
		t.Run(track, func(t *testing.T) {
			t.Parallel()
			dir := hDir(t)
			r, sock := hServe(t, opts{}, dir, []string{"--track", track})
			c := hClient(t, sock)
			code, rec, fds := pidfdSubmit(t, sock, `{"argv":["sleep","1000"],"pidfd":true}`)
			if code != 201 || rec.PID == nil {
				t.Fatalf("submit: %d %+v", code, rec)
			}
			if rec.Track != track { // --track wins over a TEND_TRACK pass
				t.Errorf("the job's track %q; want %q", rec.Track, track)
			}
			if len(fds) != 1 {
				t.Fatalf("%d fds with the answer, want the job's pidfd", len(fds))
			}
			pidfd := fds[0]
			defer unix.Close(pidfd)
			// fdinfo's Pid is in the namespace of the reader (this test,
			// outside tend's): compare through NSpid instead.
			b, _ := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
			if !strings.Contains(string(b), "\t"+strconv.Itoa(*rec.PID)+"\n") {
				t.Errorf("the pidfd's fdinfo %q does not name the job's pid %d", b, *rec.PID)
			}
			var info unix.Siginfo
			if err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG, nil); err != unix.ECHILD {
				t.Errorf("waitid on the pidfd: %v, want ECHILD (not the caller's child)", err)
			}
			if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil {
				t.Fatalf("pidfd_send_signal: %v", err)
			}
			pfd := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil {
				t.Errorf("poll on the pidfd after SIGKILL: %d, %v; want readable", n, err)
			}
			j := hWaitJob(t, c, rec.ID)
			if j.Signal == nil || *j.Signal != "SIGKILL" {
				t.Errorf("the record: %+v; want SIGKILL", j)
			}
			if fdinfoPid(t, pidfd) != "-1" {
				t.Errorf("fdinfo Pid %q after the reap, want -1", fdinfoPid(t, pidfd))
			}
			if _, _, fds := pidfdSubmit(t, sock, `{"argv":["true"]}`); len(fds) != 0 {
				t.Errorf("%d fds without pidfd asked", len(fds))
			}
			// Running jobs: those whose answers passed a pidfd cost tend
			// no more fds than those without one (a subreaper unit's
			// copy goes with the answer).
			const n = 10
			running := func(body string) int {
				before := hFDs(t, r)
				var ids []string
				for range n {
					code, rec, fds := pidfdSubmit(t, sock, body)
					if code != 201 || rec.State != api.StateRunning {
						t.Fatalf("submit %s: %d %+v", body, code, rec)
					}
					for _, fd := range fds {
						unix.Close(fd)
					}
					ids = append(ids, rec.ID)
				}
				grown := hFDs(t, r) - before
				for _, id := range ids {
					c.Signal(hCtx(t), id, api.SignalRequest{Signal: "SIGKILL"})
					hWaitJob(t, c, id)
				}
				return grown
			}
			without := running(`{"argv":["sleep","1000"]}`)
			with := running(`{"argv":["sleep","1000"],"pidfd":true}`)
			if with > without+2 {
				t.Errorf("%d running jobs with pidfds grew tend's fds by %d, without by %d: tend kept copies", n, with, without)
			}
			before := hFDs(t, r)
			passed := 0
			for range 200 {
				_, rec, fds := pidfdSubmit(t, sock, `{"argv":["true"],"pidfd":true}`)
				passed += len(fds)
				for _, fd := range fds {
					unix.Close(fd)
				}
				hWaitJob(t, c, rec.ID)
			}
			t.Logf("200 short jobs: %d pidfds passed (none for those that exited before their answer)", passed)
			svPoll(t, r, 5*time.Second, "tend's fds back to their count before 200 pidfd requests", func() bool {
				return hFDs(t, r) <= before+2
			})
		})
	}
}

// TestJobWaitOneRoundTrip: POST /v1/jobs?wait=1 answers 201 with the
// record at the start at once (the job still running), then, on the same
// answer, its record at the exit; a bad wait value is a 400; a bound
// waiting client that leaves kills its job (reason disconnected), an
// unbound one's job runs on.
func TestJobWaitOneRoundTrip(t *testing.T) {
	t.Parallel()
	dir := hDir(t)
	r, sock := hServe(t, opts{}, dir, nil)
	c := hClient(t, sock)
	conn := hDial(t, sock)
	defer conn.Close()
	body := `{"argv":["sh","-c","sleep 0.5; exit 6"]}`
	fmt.Fprintf(conn, "POST /v1/jobs?wait=1 HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("answer %v %v", resp, err)
	}
	t0 := time.Now()
	dec := json.NewDecoder(resp.Body)
	var first, final api.Job
	if err := dec.Decode(&first); err != nil || first.State != api.StateRunning {
		t.Fatalf("first record %+v, %v; want running", first, err)
	}
	if d := time.Since(t0); d > 300*time.Millisecond {
		t.Errorf("the first record came %v late: want it at the start", d)
	}
	if err := dec.Decode(&final); err != nil || final.ID != first.ID || final.ExitCode == nil || *final.ExitCode != 6 {
		t.Fatalf("final record %+v, %v; want exit 6 of %s", final, err, first.ID)
	}
	if d := time.Since(t0); d < 400*time.Millisecond {
		t.Errorf("the final record came after %v, before the job could have exited", d)
	}
	resp.Body.Close()

	if code, _ := rawPost(t, sock, "/v1/jobs?wait=maybe", `{"argv":["true"]}`); code != http.StatusBadRequest {
		t.Errorf("wait=maybe: %d, want 400", code)
	}
	for _, bind := range []bool{true, false} {
		conn := hDial(t, sock)
		body := fmt.Sprintf(`{"argv":["sleep","30"],"bind":%v}`, bind)
		fmt.Fprintf(conn, "POST /v1/jobs?wait=1 HTTP/1.1\r\nHost: tend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		var j api.Job
		if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if bind {
			// Polled, not waited on: a wait on a bound job binds it to
			// the waiting connection too, and would keep it alive.
			var rec api.Job
			svPoll(t, r, svWait, "the bound job killed", func() bool {
				var err error
				rec, err = c.Job(hCtx(t), j.ID)
				return err == nil && rec.State == api.StateExited
			})
			if rec.Reason != api.ReasonDisconnected {
				t.Errorf("a bound job whose waiting client left: %+v; want reason disconnected", rec)
			}
			continue
		}
		time.Sleep(300 * time.Millisecond)
		if rec, err := c.Job(hCtx(t), j.ID); err != nil || rec.State != api.StateRunning {
			t.Errorf("an unbound job whose waiting client left: %+v, %v; want it running", rec, err)
		}
		c.Signal(hCtx(t), j.ID, api.SignalRequest{Signal: "SIGKILL"})
	}
	// The Go client's one round trip.
	j, err := c.Run(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", "exit 4"}})
	if err != nil || j.ExitCode == nil || *j.ExitCode != 4 || j.State != api.StateExited {
		t.Errorf("Client.Run: %+v, %v", j, err)
	}
}

// rawPost is POST path with body on sock: status and body.
func rawPost(t *testing.T, sock, path, body string) (int, string) {
	t.Helper()
	resp, err := rHTTP(sock).Post("http://tend"+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
