//go:build linux

package jobs

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// BenchmarkSubmitWait is one job of /bin/true through the manager alone
// (no HTTP): Submit as root with tend's environment, then Wait. spawn-us is
// the time Submit takes (the fork and exec of the child included), wait-us
// the rest, until the exit has been reaped and delivered.
func BenchmarkSubmitWait(b *testing.B) {
	m := New(testReaper, Config{Env: os.Environ()})
	ctx := context.Background()
	var submit, wait time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		j, err := m.Submit(SubmitRequest{JobRequest: api.JobRequest{Argv: []string{"/bin/true"}}, Caller: root})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if j, err = m.Wait(ctx, root, j.ID, 0); err != nil || *j.ExitCode != 0 {
			b.Fatalf("Wait = %+v, %v", j, err)
		}
		submit += t1.Sub(t0)
		wait += time.Since(t1)
	}
	b.ReportMetric(float64(submit.Microseconds())/float64(b.N), "submit-us")
	b.ReportMetric(float64(wait.Microseconds())/float64(b.N), "wait-us")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
