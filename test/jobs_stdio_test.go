//go:build linux

package test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// Stdio passing, the parent of jobs, and tend spawn --detach / tend wait.

var jobIDRe = regexp.MustCompile(`^j-[0-9a-f]+$`)

// TestJobsParentIsPID1 runs a job that reports its PPid on the pipe passed
// as its stdout: tend, PID 1, is its parent, whoever asked for it; with the
// subreaper track its parent is its unit's helper, tend's own child, which
// runs tend's binary.
func TestJobsParentIsPID1(t *testing.T) {
	t.Parallel()
	for _, track := range []string{"group", "subreaper"} {
		t.Run(track, func(t *testing.T) {
			jt := startJobsTend(t, opts{}, "")
			r, w := mustPipe(t)
			defer r.Close()
			j := jt.spawn(t, api.JobRequest{
				Argv: []string{"sh", "-c", `pp=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$$/status); echo $pp
					sed -n 's/^PPid:[[:space:]]*//p' /proc/$pp/status; readlink /proc/$pp/exe
					echo "sid=$(cut -d' ' -f6 /proc/$$/stat) pid=$$"`},
				Stdio: []int{1},
				Track: track,
			}, w)
			w.Close() // tend closed its copy after the start: EOF comes with the job's end
			out := readAllWithin(t, r)
			rec := jt.waitJob(t, j.ID)
			if err := jobsExact(rec, 0); err != nil {
				t.Error(err)
			}
			if rec.Track != track {
				t.Errorf("record's track %q, want %q", rec.Track, track)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 4 {
				t.Fatalf("job's output %q; want 4 lines", out)
			}
			switch track {
			case "group":
				if lines[0] != "1" {
					t.Fatalf("job's output %q; want PPid 1 first", out)
				}
			case "subreaper":
				// The standalone helper beside tend, as released, or
				// tend itself when the suite runs without it.
				exe, err := filepath.EvalSymlinks(tendBin)
				if err != nil {
					t.Fatal(err)
				}
				if standalone := filepath.Join(filepath.Dir(exe), "tend-unit-helper"); statOK(standalone) {
					exe = standalone
				}
				if lines[0] == "1" || lines[1] != "1" || lines[2] != exe {
					t.Fatalf("job's output %q; want a parent (not 1) whose parent is 1, running %s", out, exe)
				}
			}
			// setsid: the job leads a session of its own.
			var sid, pid int
			if _, err := fmt.Sscanf(lines[3], "sid=%d pid=%d", &sid, &pid); err != nil {
				t.Fatalf("job: %q: %v", lines[3], err)
			}
			if sid != pid {
				t.Errorf("job: %q; want its own session (sid = pid)", lines[3])
			}
		})
	}
}

// readAllWithin reads r to EOF, failing the test after jobsWait.
func readAllWithin(t *testing.T, r *os.File) string {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(jobsWait))
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v (got %q)", r.Name(), err, b)
	}
	return string(b)
}

// TestJobsCaptureInsideNamespace runs, as tend's main process,
// x=$(tend spawn -- echo hi): the job's stdout is the shell's pipe, and the
// command substitution ends because tend keeps no copy of it.
func TestJobsCaptureInsideNamespace(t *testing.T) {
	t.Parallel()
	script := `x=$(` + tendBin + ` spawn -- echo hi) || exit 1
test "$x" = hi || { echo "got [$x]"; exit 2; }
y=$(echo in | ` + tendBin + ` spawn -- sh -c 'read v; echo "$v-out"; echo err >&2; exit 5' 2>/dev/null)
test $? = 5 || exit 3
test "$y" = in-out || { echo "got [$y]"; exit 4; }
exit 42`
	jt := startJobsTend(t, opts{}, "", "sh", "-c", script)
	jt.expectExit(42)
}

// TestJobsCaptureFromTest is the same from outside the namespace: stdin,
// stdout and stderr of tend spawn are the job's.
func TestJobsCaptureFromTest(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	res := jobsRun(t, jt.tendCmd("spawn", "--", "echo", "hi"))
	if res.code() != 0 || res.stdout != "hi\n" {
		t.Errorf("tend spawn -- echo hi: exit %d, stdout %q, stderr %q; want 0, \"hi\\n\"", res.code(), res.stdout, res.stderr)
	}
	cmd := jt.tendCmd("spawn", "--", "sh", "-c", `read v; echo "out:$v"; echo "err:$v" >&2; echo "cwd:$(pwd)"; echo "env:$JOBS_MARK"; exit 9`)
	cmd.Stdin = strings.NewReader("ping\n")
	cmd.Dir = jt.dir
	cmd.Env = append(cmd.Env, "JOBS_MARK=m4rk")
	res = jobsRun(t, cmd)
	want := "out:ping\ncwd:" + jt.dir + "\nenv:m4rk\n"
	if res.code() != 9 || res.stdout != want || res.stderr != "err:ping\n" {
		t.Errorf("tend spawn: exit %d, stdout %q, stderr %q; want 9, %q, \"err:ping\\n\"", res.code(), res.stdout, res.stderr, want)
	}
	// Exec failures are the command's, as a shell reports them.
	for _, c := range []struct {
		argv []string
		code int
	}{{[]string{"/nonexistent/cmd"}, 127}, {[]string{jt.dir}, 126}} {
		res := jobsRun(t, jt.tendCmd(append([]string{"spawn", "--"}, c.argv...)...))
		if res.code() != c.code || !strings.Contains(res.stderr, c.argv[0]) {
			t.Errorf("tend spawn -- %s: exit %d, stderr %q; want %d naming the path", c.argv[0], res.code(), res.stderr, c.code)
		}
	}
	jt.expectHealthy(t)
}

// TestJobsDetachWait covers tend spawn --detach (id, --json, --stdout,
// --stderr) and tend wait (code, 128+N).
func TestJobsDetachWait(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{}, "")
	res := jobsRun(t, jt.tendCmd("spawn", "--detach", "--", "sh", "-c", "exit 7"))
	id := strings.TrimSuffix(res.stdout, "\n")
	if res.code() != 0 || !jobIDRe.MatchString(id) {
		t.Fatalf("tend spawn --detach: exit %d, stdout %q, stderr %q; want 0 and a job id", res.code(), res.stdout, res.stderr)
	}
	if res := jobsRun(t, jt.tendCmd("wait", id)); res.code() != 7 {
		t.Errorf("tend wait %s: exit %d (stderr %q), want 7", id, res.code(), res.stderr)
	}
	// Waiting again, on the kept record, gives the same.
	if res := jobsRun(t, jt.tendCmd("wait", id)); res.code() != 7 {
		t.Errorf("tend wait %s again: exit %d, want 7", id, res.code())
	}

	res = jobsRun(t, jt.tendCmd("spawn", "--detach", "--json", "--label", "k=v=w", "--", "sh", "-c", "kill -USR1 $$"))
	var j api.Job
	if err := json.Unmarshal([]byte(res.stdout), &j); err != nil || res.code() != 0 || !jobIDRe.MatchString(j.ID) {
		t.Fatalf("tend spawn --detach --json: exit %d, stdout %q (%v); want a job record", res.code(), res.stdout, err)
	}
	if j.State == api.StateExited || j.Labels["k"] != "v=w" || len(j.Argv) != 3 || j.UID != 0 {
		t.Errorf("--json record %+v; want queued or running, label k=v=w, the argv, uid 0", j)
	}
	if res := jobsRun(t, jt.tendCmd("wait", j.ID)); res.code() != 128+10 {
		t.Errorf("tend wait of a job killed by SIGUSR1: exit %d, want 138", res.code())
	}

	out, errf := filepath.Join(jt.dir, "out"), filepath.Join(jt.dir, "err")
	if err := os.WriteFile(out, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res = jobsRun(t, jt.tendCmd("spawn", "-d", "--stdout", out, "--stderr", errf, "--",
		"sh", "-c", "echo to-out; echo to-err >&2; read x; echo \"stdin:$x\""))
	id = strings.TrimSpace(res.stdout)
	if res.code() != 0 || !jobIDRe.MatchString(id) {
		t.Fatalf("tend spawn -d --stdout: exit %d, stdout %q, stderr %q", res.code(), res.stdout, res.stderr)
	}
	if res := jobsRun(t, jt.tendCmd("wait", id)); res.code() != 0 {
		t.Errorf("tend wait %s: exit %d (stderr %q), want 0", id, res.code(), res.stderr)
	}
	// Appended after what was there; stdin was /dev/null.
	if b, _ := os.ReadFile(out); string(b) != "before\nto-out\nstdin:\n" {
		t.Errorf("--stdout file: %q; want \"before\\nto-out\\nstdin:\\n\"", b)
	}
	if b, _ := os.ReadFile(errf); string(b) != "to-err\n" {
		t.Errorf("--stderr file: %q; want \"to-err\\n\"", b)
	}

	// Failures: an unknown id is tend's (125), a usage error is 2.
	if res := jobsRun(t, jt.tendCmd("wait", "j-00000000")); res.code() != 125 || !strings.Contains(res.stderr, "404") {
		t.Errorf("tend wait of an unknown id: exit %d, stderr %q; want 125 and the 404", res.code(), res.stderr)
	}
	if res := jobsRun(t, jt.tendCmd("wait")); res.code() != 2 {
		t.Errorf("tend wait without an id: exit %d, want 2", res.code())
	}
	if res := jobsRun(t, jt.tendCmd("spawn", "--json", "--", "true")); res.code() != 2 {
		t.Errorf("tend spawn --json without --detach: exit %d, want 2", res.code())
	}
	jt.expectHealthy(t)
}

// statOK says whether name exists.
func statOK(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}
