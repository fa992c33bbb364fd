//go:build linux

package test

import (
	"path/filepath"
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
		{"with_main", func(mt, me, jt, je time.Time) bool { return absDur(jt.Sub(mt)) < 300*time.Millisecond }},
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
			r, sock := hServe(t, opts{}, dir, []string{"--jobs-stop", tc.mode, "--grace", "20s"}, "sh", "-c", trap("main"))
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
				t.Errorf("%s: main TERM %v exit %v; job TERM %v exit %v: the wrong order", tc.mode,
					mt.Format(time.StampMicro), me.Format(time.StampMicro), jt.Format(time.StampMicro), je.Format(time.StampMicro))
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

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
