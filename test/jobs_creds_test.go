//go:build linux

package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// Unprivileged callers in the socket's group: what they may do, as whom
// their jobs run, and what they never see.

func init() {
	helpers["jobs-as"] = helperJobsAs
}

// The socket's group and its unprivileged users: 65534 is nobody/nogroup;
// 65533 is a uid and gid with no entry anywhere.
const (
	jobsGroup    = 65534
	jobsStranger = 65533
)

// TestJobsUnprivilegedCaller: with [control] mode 0660 and group nogroup,
// uid 65534 may spawn (its job runs as 65534, without tend's environment)
// but may not name another user, see or signal root's job, or control a
// service; a member through a supplementary group gets its groups; a uid
// outside the group cannot connect, and gets 403 even when the file mode
// would let it.
func TestJobsUnprivilegedCaller(t *testing.T) {
	t.Parallel()
	jt := startJobsTend(t, opts{env: []string{"SECRET=s3cret"}}, fmt.Sprintf("[control]\nmode = \"0660\"\ngroup = \"%d\"\n", jobsGroup))
	if fi, err := os.Stat(jt.sock); err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != jobsGroup {
		t.Fatalf("socket: %v, %v; want mode 0660, group %d", fi.Mode(), err, jobsGroup)
	}
	in, inW := mustPipe(t)
	defer inW.Close()
	in.Fd() // blocking: see TestJobsPassedFdsBlocking
	rootJob := jt.spawn(t, api.JobRequest{Argv: []string{"sh", "-c", "read x; exit 21"}, Stdio: []int{0}}, in)
	in.Close()

	member := jobsAs(t, jt, jobsGroup, jobsGroup, "-", rootJob.ID)
	want := map[string]string{
		"status": "ok", "job.uid": "65534", "job.code": "0", "list": "1",
		"get-root": "404", "signal-root": "404", "wait-root": "404", "user-root": "403",
		"service-signal": "403", "service-restart": "403", "service-status-jobs": "1",
	}
	for k, v := range want {
		if member[k] != v {
			t.Errorf("uid 65534: %s = %q, want %q", k, member[k], v)
		}
	}
	out := member["job.out"]
	if !strings.HasPrefix(out, "65534\n65534\n65534\n") {
		t.Errorf("uid 65534's job: id -u, -g, -G said %q; want 65534 three times", out)
	}
	if strings.Contains(out, "s3cret") || !strings.Contains(out, "\nPATH=") || !strings.Contains(out, "\nTEND_SOCKET="+jt.sock+"\n") {
		t.Errorf("uid 65534's job's environment:\n%s\nwant PATH and TEND_SOCKET, never tend's SECRET", out)
	}

	// A member through a supplementary group (SO_PEERGROUPS): its job keeps it.
	supp := jobsAs(t, jt, jobsStranger, jobsStranger, strconv.Itoa(jobsGroup), rootJob.ID)
	if supp["status"] != "ok" || !strings.HasPrefix(supp["job.out"], "65533\n65533\n65533 65534\n") {
		t.Errorf("uid 65533 in group 65534: status %q, job said %q; want ok and groups 65533 65534", supp["status"], supp["job.out"])
	}

	// Outside the group the kernel refuses connect(2) (mode 0660); with a
	// mode that lets anyone connect, tend itself answers 403.
	if got := jobsAs(t, jt, jobsStranger, jobsStranger, "-", rootJob.ID)["status"]; got != "EACCES" {
		t.Errorf("uid 65533 outside the group: status %q, want EACCES from connect", got)
	}
	jobsCLI(t, jt)
	if err := os.Chmod(jt.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := jobsAs(t, jt, jobsStranger, jobsStranger, "-", rootJob.ID)["status"]; got != "403" {
		t.Errorf("uid 65533 outside the group, socket 0666: status %q, want 403", got)
	}
	res := jobsRun(t, jobsSetpriv(jt, jobsStranger, "status"))
	if res.code() != 125 || !strings.Contains(res.stderr, "403") {
		t.Errorf("tend status as uid 65533: exit %d, stderr %q; want 125 and the 403", res.code(), res.stderr)
	}

	// Root's job was never touched: it runs, then exits with its own code.
	if j, err := jt.client.Job(jobsCtx(t), rootJob.ID); err != nil || j.State != api.StateRunning {
		t.Errorf("root's job after uid 65534 tried to kill it: %s, %v; want running", j.State, err)
	}
	inW.Close()
	if j := jt.waitJob(t, rootJob.ID); jobsExact(j, 21) != nil {
		t.Error(jobsExact(j, 21))
	}
	jt.expectHealthy(t)
}

// jobsCLI runs the CLI clients as uid 65534 (setpriv, with a copy of tend
// that nobody can execute: the test's build directory is 0700).
func jobsCLI(t *testing.T, jt *jobsTend) {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Log("no setpriv: CLI as uid 65534 not tested")
		return
	}
	res := jobsRun(t, jobsSetpriv(jt, jobsGroup, "spawn", "--", "sh", "-c", "id -u; echo \"$SECRET\""))
	if res.code() != 0 || res.stdout != "65534\n\n" {
		t.Errorf("tend spawn as uid 65534: exit %d, stdout %q, stderr %q; want 0, \"65534\\n\\n\"", res.code(), res.stdout, res.stderr)
	}
	for _, args := range [][]string{
		{"restart", "main"},
		{"signal", "--service", "main", "HUP"},
		{"spawn", "--user", "root", "--", "true"},
	} {
		res := jobsRun(t, jobsSetpriv(jt, jobsGroup, args...))
		if res.code() != 125 || !strings.Contains(res.stderr, "403") {
			t.Errorf("tend %s as uid 65534: exit %d, stderr %q; want 125 and the 403", strings.Join(args, " "), res.code(), res.stderr)
		}
	}
}

// jobsSetpriv is `tend ARGS...` run as uid:uid with no supplementary group.
func jobsSetpriv(jt *jobsTend, uid int, args ...string) *exec.Cmd {
	bin := filepath.Join(jt.dir, "tend")
	if _, err := os.Stat(bin); err != nil {
		b, err := os.ReadFile(tendBin)
		if err == nil {
			err = os.WriteFile(bin, b, 0o755)
		}
		if err != nil {
			jt.t.Fatal(err)
		}
	}
	id := strconv.Itoa(uid)
	cmd := jt.tendCmd()
	cmd.Path = "/usr/bin/setpriv"
	cmd.Args = append([]string{"setpriv", "--reuid", id, "--regid", id, "--clear-groups", bin}, args...)
	cmd.Dir = "/"
	return cmd
}

// jobsAs runs the jobs-as helper as uid:gid with the supplementary groups
// (comma-separated, "-" for none) and returns what it found out.
func jobsAs(t *testing.T, jt *jobsTend, uid, gid int, groups, rootJob string) map[string]string {
	t.Helper()
	cmd := exec.Command(testBin, "jobs-as", strconv.Itoa(uid), strconv.Itoa(gid), groups, jt.sock, rootJob)
	cmd.Env = childEnv(nil)
	res := jobsRun(t, cmd)
	if res.code() != 0 {
		t.Fatalf("jobs-as %d: exit %d, stderr %q", uid, res.code(), res.stderr)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		k, v, _ := strings.Cut(l, "=")
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		got[k] = v
	}
	return got
}

// helperJobsAs becomes UID, GID and GROUPS (comma-separated, "-" for none)
// and tries the API on SOCKET, printing "key=value" lines.
// args: UID GID GROUPS SOCKET ROOT-JOB-ID
func helperJobsAs(args []string) int {
	var groups []int
	if args[2] != "-" {
		for _, g := range strings.Split(args[2], ",") {
			groups = append(groups, atoi(g))
		}
	}
	// Go applies these to every thread of the process.
	if err := syscall.Setgroups(groups); err != nil {
		return fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(atoi(args[1])); err != nil {
		return fail("setgid: %v", err)
	}
	if err := syscall.Setuid(atoi(args[0])); err != nil {
		return fail("setuid: %v", err)
	}
	c := api.NewClient(args[3])
	defer c.CloseIdle()
	ctx, cancel := context.WithTimeout(context.Background(), jobsWait)
	defer cancel()
	say := func(k string, v any) { fmt.Printf("%s=%s\n", k, strconv.Quote(fmt.Sprint(v))) }
	code := func(err error) string {
		if err == nil {
			return "ok"
		}
		if errors.Is(err, syscall.EACCES) {
			return "EACCES"
		}
		if n := jobsCode(err); n > 0 {
			return strconv.Itoa(n)
		}
		return err.Error()
	}
	_, err := c.Status(ctx)
	say("status", code(err))
	if err != nil {
		return 0
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail("pipe: %v", err)
	}
	j, err := c.Spawn(ctx, api.JobRequest{Argv: []string{"sh", "-c", "id -u; id -g; id -G; env"}, Stdio: []int{1}}, []*os.File{w})
	w.Close()
	if err != nil {
		say("spawn", code(err))
		return 0
	}
	_ = r.SetReadDeadline(time.Now().Add(jobsWait))
	out, _ := io.ReadAll(bufio.NewReader(r))
	say("job.out", string(out))
	if j, err = c.Wait(ctx, j.ID, 0); err != nil {
		say("wait", code(err))
	}
	say("job.uid", j.UID)
	say("job.code", jobsDeref(j.ExitCode))
	list, _ := c.Jobs(ctx, nil)
	say("list", len(list))
	st, _ := c.Status(ctx)
	say("service-status-jobs", len(st.Jobs))
	_, err = c.Job(ctx, args[4])
	say("get-root", code(err))
	say("signal-root", code(c.Signal(ctx, args[4], api.SignalRequest{Signal: "SIGKILL"})))
	_, err = c.Wait(ctx, args[4], time.Second)
	say("wait-root", code(err))
	_, err = c.Spawn(ctx, api.JobRequest{Argv: []string{"true"}, User: "root"}, nil)
	say("user-root", code(err))
	say("service-signal", code(c.ServiceOp(ctx, "main", api.OpSignal, "SIGHUP")))
	say("service-restart", code(c.ServiceOp(ctx, "main", api.OpRestart, "")))
	return 0
}
