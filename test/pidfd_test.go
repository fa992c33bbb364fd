//go:build linux

package test

import (
	"bufio"
	"bytes"
	"encoding/json"
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
// job's process with the 201 answer (group and cgroup tracking): it names
// the job's pid, signals it (pidfd_send_signal), becomes readable when the
// job exits, and cannot be waited on (tend stays the only reaper: the
// record has the status). Without the key, or with subreaper tracking, no
// fd comes; 200 such requests leave tend with no more fds than before.
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
			if track == "subreaper" || os.Getenv("TEND_TRACK") == "subreaper" {
				if len(fds) != 0 {
					t.Errorf("subreaper: %d fds passed, want none (the command is its helper's child)", len(fds))
				}
				return
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
			before := hFDs(t, r)
			for range 200 {
				_, rec, fds := pidfdSubmit(t, sock, `{"argv":["true"],"pidfd":true}`)
				for _, fd := range fds {
					unix.Close(fd)
				}
				hWaitJob(t, c, rec.ID)
			}
			time.Sleep(100 * time.Millisecond)
			if after := hFDs(t, r); after > before+2 {
				t.Errorf("tend has %d fds after 200 pidfd requests, %d before", after, before)
			}
		})
	}
}
