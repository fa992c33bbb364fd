//go:build linux

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// Records, subscribers and parked fds bounded by configuration (issue 13):
// floods by a non-root caller in the socket's group (mode 0660) keep tend's
// memory and fds under stated bounds, and root is still served.

func init() { helpers["rflood"] = helperRFlood }

const (
	rUID      = 1000
	rMaxRssKB = 64 << 10 // the stated bound of every flood here: 64 MiB
)

// rServe starts tend (supervisor mode, PID 1, one sleeping service) with a
// socket of mode 0660 whose group hGroup may connect, and extra [control]
// and [jobs] lines.
func rServe(t *testing.T, o opts, control, jobs string) (*tendRun, string) {
	t.Helper()
	dir := hDir(t)
	body := fmt.Sprintf("[control]\nsocket = %s\nmode = \"0660\"\ngroup = \"%d\"\n%s\n[jobs]\n%s\n",
		svQuote(filepath.Join(dir, "s")), hGroup, control, jobs) + svShell("svc", dir, "exec sleep 100000")
	return hConfig(t, o, dir, body)
}

// rFlood is the rflood helper running as uid rUID in hGroup: its stdout
// lines and its stdin, whose closing ends a helper that holds.
type rFlood struct {
	cmd   *exec.Cmd
	lines chan string
	stdin io.WriteCloser
}

func rStart(t *testing.T, sock string, action ...string) *rFlood {
	t.Helper()
	args := append([]string{"rflood", strconv.Itoa(rUID), strconv.Itoa(rUID), fmt.Sprintf("%d,%d", rUID, hGroup), sock}, action...)
	cmd := exec.Command(testBin, args...)
	cmd.Env = childEnv(nil)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &rFlood{cmd: cmd, lines: make(chan string, 64), stdin: in}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	return f
}

// line is the helper's next line, within d.
func (f *rFlood) line(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-f.lines:
		if !ok {
			t.Fatalf("rflood ended early: %v", f.cmd.Wait())
		}
		return l
	case <-time.After(d):
		t.Fatalf("rflood said nothing within %v", d)
	}
	return ""
}

// end closes the helper's stdin and waits for it.
func (f *rFlood) end(t *testing.T) {
	t.Helper()
	f.stdin.Close()
	if err := f.cmd.Wait(); err != nil {
		t.Errorf("rflood: %v", err)
	}
}

// rSampler samples tend's RssAnon until stopped, and its threads
// (watchThreads): the peaks.
type rSampler struct {
	stop    chan struct{}
	done    chan struct{}
	rss     atomic.Int64
	samples atomic.Int64
	threads *threadWatch
}

func rSample(t *testing.T, r *tendRun) *rSampler {
	s := &rSampler{stop: make(chan struct{}), done: make(chan struct{}), threads: watchThreads(r)}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := int64(rStatus(r, "RssAnon")); v > s.rss.Load() {
				s.rss.Store(v)
			}
			s.samples.Add(1)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// end stops the sampling and fails t if tend's threads went over their
// stated bound during flood.
func (s *rSampler) end(t *testing.T, flood string) (rssKB int) {
	t.Helper()
	close(s.stop)
	<-s.done
	s.threads.done(t, flood)
	return int(s.rss.Load())
}

// rStatus reads a number field of tend's /proc status (0 if gone); safe
// off the test's goroutine.
func rStatus(r *tendRun, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid()))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// rMaxRequest is a job request at every default limit: 32 labels of the
// longest key and value, argv of max_argv_bytes.
func rMaxRequest(i int) api.JobRequest {
	labels := map[string]string{"owner": "flood"}
	for k := 1; k < config.DefaultMaxLabels; k++ {
		key := fmt.Sprintf("%03d-%d-", k, i)
		labels[key+strings.Repeat("k", config.DefaultMaxLabelKeyBytes-len(key))] = strings.Repeat("v", config.DefaultMaxLabelValueBytes)
	}
	const prog = "/bin/true"
	arg := strings.Repeat("a", config.DefaultMaxArgvBytes-len(prog)-2) // each string with its NUL
	return api.JobRequest{Argv: []string{prog, arg}, Labels: labels, Track: "group"}
}

// TestRecordFloodBounded: uid 1000 submits 3,000 jobs at every request
// limit (about 140 KB each); tend's RssAnon stays under 64 MiB during and
// after (max_record_bytes 16 MiB here), root's records all survive the
// flood (max_records 1,000 here: the flood alone is 3 times that), and a
// root GET /v1/status over the full table answers within 1 s with one
// page, its counters exact.
func TestRecordFloodBounded(t *testing.T) {
	t.Parallel()
	r, sock := rServe(t, opts{}, "", "max_records = 1000\nmax_record_bytes = 16777216\n")
	c := hClient(t, sock)
	var roots []string
	for i := range 5 {
		j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"true"}, Labels: map[string]string{"owner": "root", "n": strconv.Itoa(i)}}, nil)
		if err != nil {
			t.Fatalf("root's job %d: %v", i, err)
		}
		hWaitJob(t, c, j.ID)
		roots = append(roots, j.ID)
	}
	base := hRssAnon(t, r)
	s := rSample(t, r)
	const jobs = 3000
	f := rStart(t, sock, "jobs", strconv.Itoa(jobs), "8")
	got := f.line(t, 3*time.Minute)
	f.end(t)
	peak := s.end(t, "the record flood")
	after := hRssAnon(t, r)
	t.Logf("uid %d: %s; RssAnon %d KiB before, peak %d KiB during, %d KiB after", rUID, got, base, peak, after)
	if got != fmt.Sprintf("created %d refused 0", jobs) {
		t.Errorf("flood: %q, want every job created", got)
	}
	if peak > rMaxRssKB || after > rMaxRssKB {
		t.Errorf("RssAnon peaked at %d KiB, %d KiB after: over the bound of %d KiB", peak, after, rMaxRssKB)
	}
	mine, err := c.Jobs(hCtx(t), map[string]string{"owner": "root"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range mine {
		ids = append(ids, j.ID)
	}
	sort.Strings(ids)
	sort.Strings(roots)
	if strings.Join(ids, " ") != strings.Join(roots, " ") {
		t.Errorf("root's records after uid %d's flood: %q, want all of %q", rUID, ids, roots)
	}
	// A root status over the full table: one page, fast, counters exact.
	start := time.Now()
	resp, err := rHTTP(sock).Do(rGet(t, "/v1/status"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	st, err := c.Status(hCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("root GET /v1/status: %v, %d bytes, %d jobs shown, %d exit records kept, next %q", took, len(body), len(st.Jobs), st.Counters.JobsKept, st.JobsNext)
	if took > time.Second || len(body) > 4<<20 {
		t.Errorf("root GET /v1/status took %v for %d bytes: want within 1 s and 4 MiB", took, len(body))
	}
	if len(st.Jobs) != config.DefaultPageSize || st.JobsNext == "" {
		t.Errorf("status shows %d jobs (next %q), want one page of %d and a cursor", len(st.Jobs), st.JobsNext, config.DefaultPageSize)
	}
	if st.Counters.JobsStarted != jobs+5 || st.Counters.JobsKept < 5 || st.Counters.JobsKept > 1000 {
		t.Errorf("counters %+v: want %d started and between 5 and 1,000 records kept", st.Counters, jobs+5)
	}
	hAlive(t, r, c)
}

// rGet is a GET of path, for timing the raw answer.
func rGet(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(hCtx(t), "GET", "http://tend"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// rHTTP is a plain HTTP client of sock, one connection a request.
func rHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}, DisableKeepAlives: true}}
}

// TestEventSubscriberFlood: uid 1000 asks for 10,000 event streams: it
// gets [control] max_subscribers_per_uid of them (32 by default), the rest
// are 429s naming the setting; another uid fills the overall cap (64 here)
// and a third is refused with a 503; RssAnon stays under 64 MiB; once the
// streams close their places (and memory) are back: uid 1000 gets 32 again.
func TestEventSubscriberFlood(t *testing.T) {
	t.Parallel()
	r, sock := rServe(t, opts{}, "max_subscribers = 64\n", "")
	c := hClient(t, sock)
	base := hRssAnon(t, r)
	s := rSample(t, r)
	f := rStart(t, sock, "events", "10000", "64")
	got := f.line(t, 3*time.Minute)
	if want := fmt.Sprintf("open %d codes 200:%d 429:%d", config.DefaultMaxSubscribersPerUID, config.DefaultMaxSubscribersPerUID, 10000-config.DefaultMaxSubscribersPerUID); got != want {
		t.Errorf("uid %d's 10,000 event streams: %q, want %q", rUID, got, want)
	}
	msg := f.line(t, hWait)
	if !strings.Contains(msg, "[control] max_subscribers_per_uid") {
		t.Errorf("a refusal said %q, want it to name [control] max_subscribers_per_uid", msg)
	}
	// Root takes the other 32 places; then nobody gets one.
	var held []net.Conn
	for i := range 33 {
		conn := hDial(t, sock)
		conn.Write([]byte("GET /v1/events HTTP/1.1\r\nHost: tend\r\n\r\n"))
		code := hReadStatus(t, conn)
		switch {
		case i < 32 && code != http.StatusOK:
			t.Fatalf("root's event stream %d: %d, want 200", i, code)
		case i == 32 && code != http.StatusServiceUnavailable:
			t.Errorf("the 65th event stream: %d, want 503 (max_subscribers)", code)
		}
		held = append(held, conn)
	}
	during := hRssAnon(t, r)
	f.end(t)
	for _, conn := range held {
		conn.Close()
	}
	// Their places come back: uid 1000 gets its 32 again.
	var again string
	deadline := time.Now().Add(hWait)
	for {
		g := rStart(t, sock, "events", "40", "8")
		again = g.line(t, time.Minute)
		g.end(t)
		if strings.HasPrefix(again, fmt.Sprintf("open %d ", config.DefaultMaxSubscribersPerUID)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	peak := s.end(t, "the event stream flood")
	after := hRssAnon(t, r)
	t.Logf("event streams: uid %d %q, again %q; RssAnon %d KiB before, %d while held, peak %d, %d after",
		rUID, got, again, base, during, peak, after)
	if !strings.HasPrefix(again, fmt.Sprintf("open %d ", config.DefaultMaxSubscribersPerUID)) {
		t.Errorf("after every stream closed, uid %d got %q: the places were not given back", rUID, again)
	}
	if peak > rMaxRssKB || after > rMaxRssKB {
		t.Errorf("RssAnon peaked at %d KiB (%d after), over %d KiB", peak, after, rMaxRssKB)
	}
	hAlive(t, r, c)
}

// hReadStatus reads the status code of the answer on conn (its headers).
func hReadStatus(t *testing.T, conn net.Conn) int {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(hWait))
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.SetReadDeadline(time.Time{})
	f := strings.Fields(line)
	if err != nil || len(f) < 2 {
		t.Fatalf("status line %q: %v", line, err)
	}
	return atoi(f[1])
}

// TestParkedFDFlood: uid 1000 opens 1,000 connections, each passing 3 fds
// twice with GET requests that never claim them (6 parked fds a
// connection), against a tend whose RLIMIT_NOFILE is 4,096. Beyond
// [control] max_parked_fds_per_uid (192) the requests are 429s naming it;
// tend's fds stay far from its limit, and root's job still starts and
// exits 0.
func TestParkedFDFlood(t *testing.T) {
	t.Parallel()
	r, sock := rServe(t, opts{}, "", "")
	const nofile = 4096
	if err := unix.Prlimit(r.pid(), unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: nofile, Max: nofile}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	c := hClient(t, sock)
	s := rSample(t, r)
	f := rStart(t, sock, "fds", "1000")
	got := f.line(t, 3*time.Minute)
	fds := hFDs(t, r)
	// Root, with uid 1000's connections still open.
	j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"/usr/bin/true"}}, nil)
	if err == nil {
		j = hWaitJob(t, c, j.ID)
	}
	f.end(t)
	peak := s.end(t, "the parked fd flood")
	t.Logf("uid %d's fd flood: %s; tend's fds %d of %d during; root's job %+v, %v; RssAnon peak %d KiB", rUID, got, fds, nofile, j.ExitCode, err, peak)
	if err != nil || j.ExitCode == nil || *j.ExitCode != 0 {
		t.Errorf("root's job during the flood: %v, %+v; want it started and exit 0", err, j)
	}
	if fds > nofile/2 {
		t.Errorf("tend held %d fds of %d during the flood", fds, nofile)
	}
	if !strings.Contains(got, " 429:") || !strings.Contains(f.lastMsg(t), "[control] max_parked_fds_per_uid") {
		t.Errorf("flood answers %q: want 429s naming [control] max_parked_fds_per_uid", got)
	}
	hAlive(t, r, c)
}

// lastMsg is the refusal message the helper printed after its summary.
func (f *rFlood) lastMsg(t *testing.T) string {
	t.Helper()
	for l := range f.lines {
		if m, ok := strings.CutPrefix(l, "msg "); ok {
			return m
		}
	}
	return ""
}

// helperRFlood drops to UID, GID and GROUPS, then floods SOCKET:
//
//	jobs N CONC     N POST /v1/jobs at every default request limit, CONC
//	                at a time, not waited for: "created N refused M"
//	events N CONC   N GET /v1/events, CONC connecting at a time; keeps the
//	                200s open, closes the rest: "open N codes C:N...", then
//	                "msg TEXT" of a refusal; holds until stdin closes
//	fds N           N connections, each passing 3 fds with a GET
//	                /v1/jobs/j-none/wait twice: "codes C:N...", "msg TEXT";
//	                holds until stdin closes
//
// args: UID GID GROUPS SOCKET ACTION ARGS...
func helperRFlood(args []string) int {
	var groups []int
	for _, g := range strings.Split(args[2], ",") {
		groups = append(groups, atoi(g))
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(atoi(args[1])); err != nil {
		return fail("setgid: %v", err)
	}
	if err := syscall.Setuid(atoi(args[0])); err != nil {
		return fail("setuid: %v", err)
	}
	sock := args[3]
	switch args[4] {
	case "jobs":
		return rFloodJobs(sock, atoi(args[5]), atoi(args[6]))
	case "events":
		return rFloodEvents(sock, atoi(args[5]), atoi(args[6]))
	case "fds":
		return rFloodFDs(sock, atoi(args[5]))
	}
	return fail("rflood: unknown action %q", args[4])
}

func rFloodJobs(sock string, n, conc int) int {
	c := api.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var created, refused atomic.Int64
	var wg sync.WaitGroup
	var first sync.Once
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += conc {
				if _, err := c.Spawn(ctx, rMaxRequest(i), nil); err != nil {
					refused.Add(1)
					first.Do(func() { fmt.Fprintf(os.Stderr, "rflood: job %d: %v\n", i, err) })
					continue
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("created %d refused %d\n", created.Load(), refused.Load())
	return 0
}

// rCodes prints a histogram of status codes.
func rCodes(codes map[int]int) string {
	var keys []int
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d:%d", k, codes[k]))
	}
	return strings.Join(parts, " ")
}

func rFloodEvents(sock string, n, conc int) int {
	var mu sync.Mutex
	codes := map[int]int{}
	var open []net.Conn
	msg := ""
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := net.Dial("unix", sock)
			if err != nil {
				mu.Lock()
				codes[-1]++
				mu.Unlock()
				return
			}
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			conn.Write([]byte("GET /v1/events HTTP/1.1\r\nHost: tend\r\n\r\n"))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			code := 0
			if err == nil {
				code = resp.StatusCode
			}
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == http.StatusOK {
				conn.SetDeadline(time.Time{})
				open = append(open, conn)
				return
			}
			if err == nil && msg == "" {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				msg = strings.TrimSpace(string(b))
			}
			conn.Close()
		}()
	}
	wg.Wait()
	fmt.Printf("open %d codes %s\n", len(open), rCodes(codes))
	fmt.Printf("msg %s\n", msg)
	io.Copy(io.Discard, os.Stdin) // hold until the test closes stdin
	for _, c := range open {
		c.Close()
	}
	return 0
}

func rFloodFDs(sock string, n int) int {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return fail("%v", err)
	}
	fd := int(null.Fd())
	rights := unix.UnixRights(fd, fd, fd)
	req := []byte("GET /v1/jobs/j-none/wait HTTP/1.1\r\nHost: tend\r\n\r\n")
	codes := map[int]int{}
	msg := ""
	var open []*net.UnixConn
	for range n {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			codes[-1]++
			continue
		}
		open = append(open, conn)
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		for range 2 {
			if _, _, err := conn.WriteMsgUnix(req, rights, nil); err != nil {
				codes[-2]++
			}
		}
		br := bufio.NewReader(conn)
		for range 2 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break // closed after a refusal
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusTooManyRequests && msg == "" {
				msg = strings.TrimSpace(string(b))
			}
		}
		conn.SetDeadline(time.Time{})
	}
	fmt.Printf("codes %s\n", rCodes(codes))
	fmt.Printf("msg %s\n", msg)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range open {
		c.Close()
	}
	return 0
}
