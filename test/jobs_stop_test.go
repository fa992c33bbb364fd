//go:build linux

package test

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// TestJobsStopOrder: --jobs-stop (and [jobs] stop) orders the shutdown.
// The main process and a job each write when they get SIGTERM and when
// they exit, half a second later. with_main: both get it at once; first:
// the main process gets it after the job has exited; after_main: the job
// gets it after the main process has exited (a gateway drains its own
// workers). Every job's record says reason shutdown; the status is exact.
func TestJobsStopOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode string
		// order: which of main.term, job.term comes first and by how much
		check func(mainTerm, mainExit, jobTerm, jobExit time.Time) bool
	}{
		// With the main process: the job's TERM comes before the main
		// process's end (half a second after its own TERM), not after.
		{"with_main", func(mt, me, jt, je time.Time) bool { return jt.Before(me) }},
		{"first", func(mt, me, jt, je time.Time) bool { return !mt.Before(je) }},
		{"after_main", func(mt, me, jt, je time.Time) bool { return !jt.Before(me) }},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			dir := hDir(t)
			trap := func(name string) string {
				return `trap 'date +%s%N > ` + dir + `/` + name + `.term; sleep 0.5; date +%s%N > ` + dir + `/` + name + `.exit; exit 7' TERM; ` +
					`touch ` + dir + `/` + name + `.up; while :; do sleep 0.05; done`
			}
			r, sock := hServe(t, opts{}, dir, []string{"-v", "--jobs-stop", tc.mode, "--grace", "20s"}, "sh", "-c", trap("main"))
			c := hClient(t, sock)
			j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", trap("job")}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			svPoll(t, r, svWait, "main and job up", func() bool {
				return svExists(filepath.Join(dir, "main.up")) && svExists(filepath.Join(dir, "job.up"))
			})
			ev, err := c.Events(hCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			got := make(chan api.Job, 1)
			go func() {
				for {
					e, err := ev.Next()
					if err != nil {
						return
					}
					if e.Type == api.EventJobExited && e.Job != nil && e.Job.ID == j.ID {
						got <- *e.Job
						return
					}
				}
			}()
			code, _ := svTermAndExit(t, r)
			stamp := func(n string) time.Time { return svStamp(t, filepath.Join(dir, n)) }
			mt, me, jt, je := stamp("main.term"), stamp("main.exit"), stamp("job.term"), stamp("job.exit")
			t.Logf("%s: job TERM %+v after main's, main exit %v after its TERM, job exit %v after its TERM",
				tc.mode, jt.Sub(mt).Round(time.Millisecond), me.Sub(mt).Round(time.Millisecond), je.Sub(jt).Round(time.Millisecond))
			if !tc.check(mt, me, jt, je) {
				t.Errorf("%s: main TERM %v exit %v; job TERM %v exit %v: the wrong order; stderr:\n%s", tc.mode,
					mt.Format(time.StampMicro), me.Format(time.StampMicro), jt.Format(time.StampMicro), je.Format(time.StampMicro), r.stderrNow())
			}
			if code != 7 {
				t.Errorf("tend exit %d, want the main process's 7", code)
			}
			select {
			case rec := <-got:
				if rec.ExitCode == nil || *rec.ExitCode != 7 || rec.Reason != api.ReasonShutdown {
					t.Errorf("the job's record: %+v; want exit 7, reason shutdown", rec)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("no job.exited event")
			}
		})
	}
}

// TestJobsByPidAndStatus: GET /v1/jobs?pid=N finds the record of the job
// that ran as N, after it exited (a restarted dispatcher's lookup), and a
// record says how the job ended as wait(2) and Python would: exit 3 is
// wait_status 768 and returncode 3; SIGKILL is 9 and -9. Another uid's
// lookup of the same pid finds nothing.
func TestJobsByPidAndStatus(t *testing.T) {
	t.Parallel()
	r, sock, _ := hSecure(t) // a socket uid 1000 may use
	c := hClient(t, sock)
	run := func(script string) api.Job {
		t.Helper()
		j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", script}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return hWaitJob(t, c, j.ID)
	}
	three, killed := run("exit 3"), run("kill -9 $$")
	for _, tc := range []struct {
		job        api.Job
		ws, rc     string
		reasonWant string
	}{{three, `"wait_status":768`, `"returncode":3`, api.ReasonExited}, {killed, `"wait_status":9`, `"returncode":-9`, api.ReasonSignaled}} {
		resp, err := rHTTP(sock).Get("http://tend/v1/jobs?pid=" + strconv.Itoa(*tc.job.PID))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var list []api.Job
		if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list) < 1 || list[0].ID != tc.job.ID {
			t.Fatalf("GET /v1/jobs?pid=%d: %d %s, %v; want the record of %s first", *tc.job.PID, resp.StatusCode, body, err, tc.job.ID)
		}
		if !strings.Contains(string(body), tc.ws) || !strings.Contains(string(body), tc.rc) || list[0].Reason != tc.reasonWant {
			t.Errorf("record %s: want %s and %s, reason %s", body, tc.ws, tc.rc, tc.reasonWant)
		}
		if out := hAs(t, 1000, 1000, []int{1000, hGroup}, sock, "list-pid", strconv.Itoa(*tc.job.PID)); len(out) != 1 || out[0] != "200 0" {
			t.Errorf("uid 1000's GET /v1/jobs?pid=%d: %q, want 200 with no record", *tc.job.PID, out)
		}
	}
	resp, err := rHTTP(sock).Get("http://tend/v1/jobs?pid=0")
	if err != nil || resp.StatusCode != 400 {
		t.Errorf("GET /v1/jobs?pid=0: %v %v, want 400", resp, err)
	}
	if !r.running() {
		t.Errorf("tend exited: %v", r.cmd.ProcessState)
	}
}
