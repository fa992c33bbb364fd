//go:build linux

package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Deadlines: every wait in this package has one, so a hang fails the test.
const (
	lineTimeout = 20 * time.Second // one expected line of output
	exitTimeout = 30 * time.Second // tend's exit once it is due
)

// opts says how to start tend.
type opts struct {
	pid1   bool          // PID 1 of a fresh PID and mount namespace
	pidMax int           // with pid1: write this to the namespace's pid_max
	ignore []unix.Signal // with pid1: SIG_IGN at tend's start
	block  []unix.Signal // with pid1: blocked at tend's start
	env    []string      // added to tend's environment
	stdin  bool          // pipe tend's stdin (closing it ends sigreport helpers)
	extra  bool          // pass a pipe's read end as fd 3; closeExtra ends it
	argv0  []string      // what runs instead of tend (pid1 then execs it)

	closedStderr bool // tend's stderr is a pipe nobody reads: writes get EPIPE
}

// tendRun is a started tend (or a helper that runs one). Its stdout is read
// line by line into lines; stderr is collected.
type tendRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	start  time.Time
	lines  chan string
	stdin  *os.File // write end, or nil
	extraW *os.File // write end of fd 3, or nil
	done   chan struct{}
	ended  time.Time // set before done is closed

	mu      sync.Mutex
	stderr  bytes.Buffer // guarded by mu
	errDone chan struct{}
}

// childEnv is the environment of every process started by the tests.
func childEnv(extra []string) []string {
	env := append(os.Environ(), helperEnv+"=1", "GORACE=atexit_sleep_ms=0")
	return append(env, extra...)
}

// helperArgv is the command line that runs helper name with args.
func helperArgv(name string, args ...string) []string {
	return append([]string{testBin, name}, args...)
}

// startTend starts tend with args (tend's flags, `--` and the command).
func startTend(t *testing.T, o opts, args ...string) *tendRun {
	t.Helper()
	argv := append([]string{tendBin}, args...)
	if o.argv0 != nil {
		argv = append(append([]string{}, o.argv0...), args...)
	}
	var cmd *exec.Cmd
	if o.pid1 {
		needRoot(t)
		pa := []string{strconv.Itoa(o.pidMax), sigList(o.ignore), sigList(o.block)}
		cmd = exec.Command(testBin, append(append([]string{"pid1"}, pa...), argv...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
			Pdeathsig:  syscall.SIGKILL,
		}
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	cmd.Env = childEnv(o.env)
	r := &tendRun{t: t, cmd: cmd, lines: make(chan string, 1<<16), done: make(chan struct{}), errDone: make(chan struct{})}
	outR, outW := mustPipe(t)
	errR, errW := mustPipe(t)
	cmd.Stdout, cmd.Stderr = outW, errW
	var inR, exR *os.File
	if o.stdin {
		inR, r.stdin = mustPipe(t)
		cmd.Stdin = inR
	}
	if o.extra {
		exR, r.extraW = mustPipe(t)
		cmd.ExtraFiles = []*os.File{exR}
	}
	r.start = time.Now()
	err := cmd.Start()
	for _, f := range []*os.File{outW, errW, inR, exR} {
		if f != nil {
			f.Close()
		}
	}
	if err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	go r.readLines(outR)
	if o.closedStderr {
		errR.Close()
		close(r.errDone)
	} else {
		go r.readStderr(errR)
	}
	go func() {
		_ = cmd.Wait() // the state is in cmd.ProcessState
		r.ended = time.Now()
		close(r.done)
	}()
	t.Cleanup(r.kill)
	return r
}

func mustPipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

func sigList(sigs []unix.Signal) string {
	s := make([]string, len(sigs))
	for i, sig := range sigs {
		s[i] = strconv.Itoa(int(sig))
	}
	return strings.Join(s, ",")
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for CLONE_NEWPID")
	}
}

func (r *tendRun) readLines(f *os.File) {
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r.lines <- sc.Text()
	}
	close(r.lines)
}

func (r *tendRun) readStderr(f *os.File) {
	defer close(r.errDone)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		r.mu.Lock()
		r.stderr.Write(buf[:n])
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// kill ends whatever is left: SIGKILL to a PID 1 ends its namespace; a
// plain tend's descendants are killed first.
func (r *tendRun) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	pid := r.cmd.Process.Pid
	for _, d := range descendants(pid) {
		_ = unix.Kill(d, unix.SIGKILL)
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
	case <-time.After(exitTimeout):
		r.t.Errorf("pid %d still there %v after SIGKILL", pid, exitTimeout)
	}
}

// pid is tend's pid as the test sees it (the pid1 helper execs tend).
func (r *tendRun) pid() int { return r.cmd.Process.Pid }

// signal sends sig to tend from outside its namespace.
func (r *tendRun) signal(sig unix.Signal) {
	r.t.Helper()
	if err := r.trySignal(sig); err != nil {
		r.t.Fatalf("signal %v to tend (pid %d): %v", sig, r.pid(), err)
	}
}

// trySignal sends sig to tend through its pidfd (os.Process uses one), so
// it can never reach a recycled pid once tend is reaped.
func (r *tendRun) trySignal(sig unix.Signal) error { return r.cmd.Process.Signal(sig) }

// next returns the next line of stdout, failing the test after lineTimeout.
func (r *tendRun) next() string {
	r.t.Helper()
	return r.nextWithin(lineTimeout)
}

// nextWithin returns the next line of stdout, failing the test after d.
func (r *tendRun) nextWithin(d time.Duration) string {
	r.t.Helper()
	select {
	case l, ok := <-r.lines:
		if !ok {
			r.t.Fatalf("stdout closed; stderr:\n%s", r.stderrNow())
		}
		return l
	case <-time.After(d):
		r.t.Fatalf("no line on stdout within %v; stderr:\n%s", d, r.stderrNow())
	}
	return ""
}

// expect fails unless the next line of stdout is want.
func (r *tendRun) expect(want string) {
	r.t.Helper()
	if got := r.next(); got != want {
		r.t.Fatalf("stdout line = %q, want %q; stderr:\n%s", got, want, r.stderrNow())
	}
}

// expectMatch fails unless the next line matches re; it returns the submatches.
func (r *tendRun) expectMatch(re string) []string {
	r.t.Helper()
	return r.expectMatchWithin(re, lineTimeout)
}

// expectMatchWithin is expectMatch with its own deadline.
func (r *tendRun) expectMatchWithin(re string, d time.Duration) []string {
	r.t.Helper()
	got := r.nextWithin(d)
	m := regexp.MustCompile(re).FindStringSubmatch(got)
	if m == nil {
		r.t.Fatalf("stdout line = %q, want a match of %q; stderr:\n%s", got, re, r.stderrNow())
	}
	return m
}

// rest returns the remaining stdout lines once stdout is closed.
func (r *tendRun) rest() []string {
	r.t.Helper()
	var out []string
	deadline := time.After(lineTimeout)
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				return out
			}
			out = append(out, l)
		case <-deadline:
			r.t.Fatalf("stdout not closed within %v; got %q", lineTimeout, out)
		}
	}
}

// closeStdin ends tend's stdin, which ends the sigreport helpers.
func (r *tendRun) closeStdin() { r.stdin.Close() }

// closeExtra closes the write end of fd 3.
func (r *tendRun) closeExtra() { r.extraW.Close() }

// running reports whether tend has not exited.
func (r *tendRun) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// wait waits for tend to exit and returns its exit code as a shell would
// report it (128+N for signal N).
func (r *tendRun) wait() int {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(exitTimeout):
		r.t.Fatalf("tend still running %v later; stderr:\n%s", exitTimeout, r.stderrNow())
	}
	// The stderr reader may not have read tend's last lines yet (CI saw an
	// exit 2 with an empty stderr): give it a moment to reach the end.
	// Not longer: a process tend left behind may hold the pipe open.
	select {
	case <-r.errDone:
	case <-time.After(time.Second):
	}
	return shellCode(r.cmd.ProcessState)
}

// expectExit fails unless tend exits with want.
func (r *tendRun) expectExit(want int) {
	r.t.Helper()
	if got := r.wait(); got != want {
		r.t.Fatalf("tend exit code = %d (%v), want %d; stderr:\n%s", got, r.cmd.ProcessState, want, r.stderrAll())
	}
}

func shellCode(ps *os.ProcessState) int {
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (r *tendRun) stderrNow() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// stderrAll returns all of stderr: it waits (boundedly) for its end.
func (r *tendRun) stderrAll() string {
	select {
	case <-r.errDone:
	case <-time.After(5 * time.Second):
		r.t.Errorf("stderr still open 5s after the end")
	}
	return r.stderrNow()
}

// reapedPids returns the pids named by -w's lines, one per line.
func reapedPids(t *testing.T, stderr string) []int {
	t.Helper()
	re := regexp.MustCompile(`Reaped zombie process with pid=(\d+)`)
	var pids []int
	for _, m := range re.FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[1])
		pids = append(pids, n)
	}
	return pids
}

// descendants lists the live descendants of pid from /proc (children first).
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range childrenOf(p) {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func childrenOf(pid int) []int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// procStat reads the state and parent of pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, errors.New("bad stat")
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}
