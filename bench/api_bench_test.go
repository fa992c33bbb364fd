//go:build linux

// Package bench holds the Go benchmarks that cross packages (the control
// API end to end, in one process, so that pprof sees client and server);
// the benchmarks of one package live beside it (reaper/, spawn/, jobs/,
// signals/). bench/run and tendbench measure the built binary instead.
package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/events"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/supervisor"
)

var (
	discard  = slog.New(slog.NewTextHandler(io.Discard, nil)) // level info: as tend -v would
	warnOnly = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
)

// server runs tend's loop in this process, in init mode with a main
// process that sleeps and the control API on a socket in a temporary
// directory, as the built tend would, and returns a client of it.
func server(b *testing.B) *api.Client {
	sock := filepath.Join(b.TempDir(), "tend.sock")
	file, err := config.Parse(nil, "defaults")
	if err != nil {
		b.Fatal(err)
	}
	file.Control.Socket = sock
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	sigs := make(chan unix.Signal, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := supervisor.Run(supervisor.Config{
			File: file, SocketExplicit: true, Init: true, Main: []string{"sleep", "3600"},
			Env: os.Environ(), Log: discard, CleanupGrace: time.Second, PidFDs: true,
			Signals: sigs, SIGCHLD: chld, Stdout: io.Discard, Stderr: io.Discard,
		})
		if err != nil {
			b.Error(err)
		}
	}()
	c := api.NewClient(sock)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := c.Status(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("tend's socket did not answer within 5s")
		}
	}
	b.Cleanup(func() {
		c.CloseIdle()
		sigs <- unix.SIGTERM
		<-done
		signal.Stop(chld)
	})
	return c
}

func spawnWait(ctx context.Context, b *testing.B, c *api.Client) {
	j, err := c.Spawn(ctx, api.JobRequest{Argv: []string{"/bin/true"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if j, err = c.Wait(ctx, j.ID, 0); err != nil || j.ExitCode == nil || *j.ExitCode != 0 {
		b.Fatalf("Wait(%s) = %+v, %v", j.ID, j, err)
	}
}

// BenchmarkAPISpawnWait is one job of /bin/true through the control API
// with a persistent client: POST /v1/jobs, then GET /v1/jobs/{id}/wait.
func BenchmarkAPISpawnWait(b *testing.B) {
	c := server(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		spawnWait(ctx, b, c)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkAPIRun is the same job in one round trip: POST
// /v1/jobs?wait=1, whose answer ends with the exit record.
func BenchmarkAPIRun(b *testing.B) {
	c := server(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		j, err := c.Run(ctx, api.JobRequest{Argv: []string{"/bin/true"}})
		if err != nil || j.ExitCode == nil || *j.ExitCode != 0 {
			b.Fatal(j, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkAPISpawnWaitParallel is the same with 4 clients at once.
func BenchmarkAPISpawnWaitParallel(b *testing.B) {
	c := server(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(2) // 2 x GOMAXPROCS(2) = 4 clients
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			spawnWait(ctx, b, c)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkGoExec is the floor the API is compared with: fork/exec of
// /bin/true and its wait, straight from Go (pidfd wait, no reaper).
func BenchmarkGoExec(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
		if err != nil {
			b.Fatal(err)
		}
		if st, err := p.Wait(); err != nil || !st.Success() {
			b.Fatal(st, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkOrphanCallback reaps 100 orphans per pass through tend's own
// orphan callback (supervisor.OrphanHandler: a debug log line and an
// orphan.reaped event), against a bare reaper, to show what each orphan
// costs beyond wait4. Allocations per orphan are the figure to watch.
func BenchmarkOrphanCallback(b *testing.B) {
	for _, bc := range []struct {
		name string
		r    *reaper.Reaper
	}{
		{"bare", reaper.New(reaper.Options{})},
		{"tend-init-mode", reaper.New(reaper.Options{Orphan: supervisor.OrphanHandler(warnOnly, false, nil)})},
		{"tend-socket", reaper.New(reaper.Options{Orphan: supervisor.OrphanHandler(warnOnly, false, events.NewHub(events.Limits{}).Publish)})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const batch = 100
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				makeZombies(b, batch)
				b.StartTimer()
				if n := bc.r.Reap(); n != batch {
					b.Fatalf("Reap() = %d, want %d", n, batch)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/orphan")
		})
	}
}

// makeZombies forks n children of /bin/true and waits until all have
// exited, without reaping them (waitid WNOWAIT on each).
func makeZombies(b *testing.B, n int) {
	pids := make([]int, n)
	for i := range pids {
		pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
		if err != nil {
			b.Fatal(err)
		}
		pids[i] = pid
	}
	for _, pid := range pids {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				if err != nil {
					b.Fatal(err)
				}
				break
			}
		}
	}
}
