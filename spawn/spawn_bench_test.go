//go:build linux

package spawn

import (
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkStart prepares, forks and execs /bin/true as a job would be (new
// session, the caller's credentials, /dev/null stdio, tend's environment)
// and waits for it directly (no reaper here). prepare-us is the lookup off
// the lock; start-us the fork and exec under it, until the child has exec'd.
func BenchmarkStart(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	files := []uintptr{null.Fd(), null.Fd(), null.Fd()}
	root := &syscall.Credential{Groups: []uint32{}}
	for _, bc := range []struct {
		name string
		spec Spec
	}{
		{"plain", Spec{Argv: []string{"/bin/true"}, Files: files}},
		{"job", Spec{Argv: []string{"/bin/true"}, Env: os.Environ(), Dir: "/", Setsid: true, Cred: root, Files: files}},
		{"job-lookpath", Spec{Argv: []string{"true"}, Env: os.Environ(), Dir: "/", Setsid: true, Cred: root, Files: files}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var prep, fork time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t := time.Now()
				p, err := Prepare(bc.spec)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				pid, err := p.Start(nil)
				fork += time.Since(t1)
				prep += t1.Sub(t)
				p.Release()
				if err != nil {
					b.Fatal(err)
				}
				var ws unix.WaitStatus
				if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
					b.Fatalf("wait4(%d) = %v, %v", pid, ws, err)
				}
			}
			b.ReportMetric(float64(prep.Microseconds())/float64(b.N), "prepare-us")
			b.ReportMetric(float64(fork.Microseconds())/float64(b.N), "start-us")
		})
	}
}

// BenchmarkStartProcess is the standard library's way, for comparison:
// os.StartProcess (which also opens a pidfd) and Process.Wait.
func BenchmarkStartProcess(b *testing.B) {
	var start time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t := time.Now()
		p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
		if err != nil {
			b.Fatal(err)
		}
		start += time.Since(t)
		if st, err := p.Wait(); err != nil || !st.Success() {
			b.Fatal(st, err)
		}
	}
	b.ReportMetric(float64(start.Microseconds())/float64(b.N), "start-us")
}
