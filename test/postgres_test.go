//go:build linux

package test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// pgBin is where Debian 12's postgresql-15 and postgresql-client-15 put
// the server and its tools.
const pgBin = "/usr/lib/postgresql/15/bin"

// pgStopWithin bounds tend's exit after SIGTERM: a fast shutdown of an idle
// database takes well under a second; a smart one would wait for the idle
// client until the example's 60 s grace.
const pgStopWithin = 10 * time.Second

// TestPostgresFastShutdown runs examples/postgres/tend.toml (its keys, with
// a temporary data directory, port and socket) as PID 1: postgres becomes
// ready, its tcp check passes, it answers a query, and with a client left connected, SIGTERM to tend
// still ends everything within seconds with 143, postgres having shut down
// cleanly. That is stop_signal = "SIGINT" (the fast shutdown) at work:
// postgres's own SIGTERM is the smart shutdown, which waits for the client.
func TestPostgresFastShutdown(t *testing.T) {
	t.Parallel()
	pc := newPgCluster(t)
	port, sock := pc.port, pc.sock

	t0 := time.Now()
	r := pc.start(t, pc.config)
	client := api.NewClient(sock)
	t.Cleanup(client.CloseIdle)
	svPoll(t, r, time.Minute, "GET /v1/health is 200", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		h, err := client.Health(ctx)
		if stderr := r.stderrNow(); !r.running() || svLog(stderr, "service exited", "postgres") > 0 {
			t.Fatalf("postgres or tend exited before it was ready: %v; stderr:\n%s", r.cmd.ProcessState, stderr)
		}
		return err == nil && h.Healthy
	})
	t.Logf("postgres ready %v after tend's start", time.Since(t0).Round(time.Millisecond))
	pgExpectService(t, client, "running")
	svPoll(t, r, svWait, "postgres's tcp check passing", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := client.Status(ctx)
		if err != nil {
			return false
		}
		s := svcStatus(t, st, "postgres")
		return len(s.Checks) == 1 && s.Checks[0].Name == "port" && s.Checks[0].State == api.CheckPassing
	})

	if out, err := pgPsql(port, "-Atc", "select 1").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("psql -c 'select 1' = %q, %v; want 1; tend's stderr:\n%s", out, err, r.stderrNow())
	}
	idle := pgConnect(t, port)

	code, took := svTermAndExit(t, r)
	stderr := r.stderrAll()
	t.Logf("tend exited %v after SIGTERM", took.Round(time.Millisecond))
	if code != 143 || took > pgStopWithin {
		t.Errorf("tend exit code = %d after %v, want 143 within %v (a smart shutdown waits for the idle client); stderr:\n%s",
			code, took, pgStopWithin, stderr)
	}
	for _, want := range []string{"postgres | ", "received fast shutdown request", "database system is shut down"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("tend's stderr does not have %q:\n%s", want, stderr)
		}
	}
	if svLog(stderr, "service exited", "postgres") != 1 || !pgExitedZero(stderr) {
		t.Errorf("postgres did not exit once with code 0 (a clean shutdown); stderr:\n%s", stderr)
	}
	if strings.Contains(stderr, "did not stop in time") {
		t.Errorf("postgres was killed, not stopped:\n%s", stderr)
	}
	idle.expectClosed(t)
}

// pgCluster is a fresh database cluster for one test: the example's
// config for it (data directory, socket directory, port and tend's
// control socket put in), the test's directory, the port and the socket.
type pgCluster struct {
	dir, config, sock string
	port              int
}

// newPgCluster runs initdb in a new directory (as postgres) and fills
// examples/postgres/tend.toml in for it.
func newPgCluster(t *testing.T) pgCluster {
	t.Helper()
	needRoot(t) // initdb as postgres, and CLONE_NEWPID
	pg := pgUser(t)
	dir := hDir(t) // 0755: postgres reaches its data directory inside
	data, run := filepath.Join(dir, "data"), filepath.Join(dir, "run")
	pgMkdirs(t, pg, data, run)
	pgInitdb(t, pg, dir, data)
	c := pgCluster{dir: dir, port: freePort(t), sock: filepath.Join(dir, "tend.sock")}
	c.config = pgConfig(t, data, run, c.sock, c.port)
	return c
}

// start writes body as the cluster's tend.toml and starts tend on it as PID 1.
func (c pgCluster) start(t *testing.T, body string) *tendRun {
	t.Helper()
	path := filepath.Join(c.dir, "tend.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return startTend(t, opts{pid1: true}, "-v", "--config", path)
}

// pgUser returns the postgres account. Without the server, its tools or the
// account the test fails under CI=true, where scripts/container-deps must
// have installed them, and skips elsewhere.
func pgUser(t *testing.T) *user.User {
	t.Helper()
	var missing []string
	for _, name := range []string{"postgres", "initdb", "pg_isready", "psql"} {
		if _, err := os.Stat(filepath.Join(pgBin, name)); err != nil {
			missing = append(missing, filepath.Join(pgBin, name))
		}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		missing = append(missing, "the postgres user")
	}
	if len(missing) == 0 {
		return u
	}
	msg := "PostgreSQL 15 not installed (apt-get install postgresql-15): no " + strings.Join(missing, ", ")
	if v := os.Getenv("CI"); v != "" && v != "false" && v != "0" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
	return nil
}

// pgMkdirs makes directories that only postgres may write: postgres wants
// its data directory 0700, and the directory of its Unix socket and lock
// file writable.
func pgMkdirs(t *testing.T, pg *user.User, dirs ...string) {
	t.Helper()
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// pgInitdb makes a database cluster in data, as postgres (initdb refuses
// root), with trust authentication and no fsync, which a test does not need.
func pgInitdb(t *testing.T, pg *user.User, dir, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid="+pg.Uid, "--regid="+pg.Gid, "--init-groups", "--",
		filepath.Join(pgBin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync",
		"--encoding=UTF8", "--locale=C")
	cmd.Dir = dir // postgres may not enter the test's working directory
	cmd.Env = append(os.Environ(), "HOME="+pg.HomeDir)
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Logf("initdb took %v", time.Since(t0).Round(time.Millisecond))
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pgConfig is examples/postgres/tend.toml with the test's data directory,
// postgres socket directory, port and control socket in place of the
// example's. Each must be found: the test runs the example's own keys.
func pgConfig(t *testing.T, data, run, sock string, port int) string {
	t.Helper()
	b, err := os.ReadFile("../examples/postgres/tend.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, r := range []struct{ old, new string }{
		{`"/var/lib/postgresql/data"`, svQuote(data)},
		{`"-k", "/tmp"`, `"-k", ` + svQuote(run)},
		{`"-p", "5432"`, `"-p", "` + strconv.Itoa(port) + `"`},
		{"-p 5432 ", "-p " + strconv.Itoa(port) + " "},
		{`socket = "/run/tend.sock"`, "socket = " + svQuote(sock)},
		{`"tcp:127.0.0.1:5432"`, `"tcp:127.0.0.1:` + strconv.Itoa(port) + `"`},
		{`period = "10s"`, `period = "200ms"`}, // the check's: seen passing within the test
	} {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("examples/postgres/tend.toml has no %s for the test to replace", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	return cfg
}

// pgExpectService fails unless tend's status has the postgres service in
// state, ready.
func pgExpectService(t *testing.T, client *api.Client, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), jobsWait)
	defer cancel()
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatalf("Status(): %v", err)
	}
	for _, s := range st.Services {
		if s.Name == "postgres" {
			if s.State != state || !s.Ready || !s.Critical {
				t.Errorf("postgres service = %+v, want %s, ready and critical", s, state)
			}
			return
		}
	}
	t.Errorf("status has no postgres service: %+v", st.Services)
}

// pgPsql is psql as the postgres role on the test's server, over TCP.
func pgPsql(port int, args ...string) *exec.Cmd {
	base := []string{"-X", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres"}
	cmd := exec.Command(filepath.Join(pgBin, "psql"), append(base, args...)...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	return cmd
}

// pgClient is a psql session kept open: an idle client.
type pgClient struct {
	cmd    *exec.Cmd
	stdin  *os.File
	lines  chan string
	stderr *strings.Builder
	done   chan struct{}
}

// pgConnect starts psql reading commands from a pipe and waits until it is
// connected (it answers a query); the session then stays open and idle.
func pgConnect(t *testing.T, port int) *pgClient {
	t.Helper()
	c := &pgClient{cmd: pgPsql(port, "-Aqt"), lines: make(chan string, 16), stderr: new(strings.Builder), done: make(chan struct{})}
	inR, inW := mustPipe(t)
	outR, outW := mustPipe(t)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr, c.stdin = inR, outW, c.stderr, inW
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start psql: %v", err)
	}
	inR.Close()
	outW.Close()
	go func() {
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	go func() {
		_ = c.cmd.Wait() // a child of the test, not of tend
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	c.send(t, "select 'connected';")
	select {
	case l, ok := <-c.lines:
		if !ok || l != "connected" {
			t.Fatalf("idle psql: got %q (open %v), want \"connected\"; stderr: %s", l, ok, c.stderrNow())
		}
	case <-time.After(jobsWait):
		t.Fatalf("idle psql did not answer within %v", jobsWait)
	}
	return c
}

func (c *pgClient) send(t *testing.T, sql string) {
	t.Helper()
	if _, err := c.stdin.WriteString(sql + "\n"); err != nil {
		t.Fatalf("write to psql: %v", err)
	}
}

// stderrNow reads psql's stderr; psql must have exited, so nothing writes it.
func (c *pgClient) stderrNow() string {
	select {
	case <-c.done:
		return c.stderr.String()
	default:
		return "(psql still running)"
	}
}

// expectClosed fails unless the server closed the idle session: its next
// query finds the connection gone.
func (c *pgClient) expectClosed(t *testing.T) {
	t.Helper()
	c.send(t, "select 'still here';")
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(jobsWait):
		t.Fatalf("idle psql still running %v after its stdin closed", jobsWait)
	}
	got := c.stderrNow()
	t.Logf("the idle psql, once postgres was gone: %q", got)
	// 57P01, what a fast shutdown tells each client as it disconnects it.
	if !strings.Contains(got, "terminating connection due to administrator command") {
		t.Errorf("idle psql's stderr = %q, want the server to have terminated its session", got)
	}
	for l := range c.lines {
		if l == "still here" {
			t.Errorf("the idle session still answered after postgres shut down")
		}
	}
}

// pgExitedZero reports whether the log line of the postgres service's exit
// has code=0.
func pgExitedZero(stderr string) bool {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "service exited") && strings.Contains(l, "service=postgres ") {
			return strings.Contains(l, " code=0 ")
		}
	}
	return false
}
