//go:build linux

package test

import (
	"bufio"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
)

// The rough edges of issue 14, as PID 1: what a user of tini, nohup and
// `docker run --init -e` meets first.

// TestIgnoredAtStartWarned: tend started with HUP and INT ignored (nohup, a
// script's `tend ... &`) says so once at the default level, naming them and
// how to start tend so that it gets them; the children still inherit them
// ignored. Ignored TTOU alone (never forwarded anyway) is no warning.
func TestIgnoredAtStartWarned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		ignore []unix.Signal
		warn   string // "" = no warning
	}{
		{"HUP and INT", []unix.Signal{unix.SIGHUP, unix.SIGINT}, "SIGHUP,SIGINT"},
		{"TTOU only", []unix.Signal{unix.SIGTTOU}, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startTend(t, opts{pid1: true, ignore: tc.ignore}, "--", "grep", "^SigIgn", "/proc/self/status")
			r.expectExit(0)
			stderr := r.stderrAll()
			warns := 0
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, "level=WARN") && strings.Contains(l, "started with signals ignored") {
					warns++
					for _, w := range []string{"sigs=" + tc.warn, "env --default-signal=" + tc.warn + " tend", "nohup"} {
						if !strings.Contains(l, w) {
							t.Errorf("warning does not say %q:\n%s", w, l)
						}
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.warn != ""]; warns != want {
				t.Errorf("%d warnings about ignored signals at the default level, want %d; stderr:\n%s", warns, want, stderr)
			}
			if out := r.rest(); len(out) != 1 || out[0] != "SigIgn:\t"+hex16(mask(tc.ignore...)) {
				t.Errorf("child's %q, want SigIgn %s: ignored signals stay ignored for the children", out, hex16(mask(tc.ignore...)))
			}
		})
	}
}

// hex16 is m as /proc/PID/status prints a signal set.
func hex16(m uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[m&0xf]
		m >>= 4
	}
	return string(b)
}

// TestControlSocketEnv: TEND_CONTROL_SOCKET turns the API on in init mode
// (`docker run --init -e TEND_CONTROL_SOCKET=...`), as --socket does; the
// children do not get it, and get TEND_SOCKET pointing at the socket (even
// when tend's own TEND_SOCKET named another), so a tend client inside the
// main process reaches this tend.
func TestControlSocketEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	script := `env | grep '^TEND_' | grep -v '^TEND_TEST_' | sort; "$1" status --json >/dev/null && echo status ok`
	r := startTend(t, opts{pid1: true, env: []string{"TEND_CONTROL_SOCKET=" + sock, "TEND_SOCKET=/nonexistent/other.sock"}},
		"--", "sh", "-c", script, "sh", tendBin)
	r.expectExit(0)
	out := r.rest()
	sort.Strings(out)
	if got, want := strings.Join(out, " "), "TEND_SOCKET="+sock+" status ok"; got != want {
		t.Errorf("main printed %q, want %q (its TEND_ variables, then a tend status through the socket); stderr:\n%s",
			got, want, r.stderrAll())
	}
}

// TestHealthAsProbe: `tend health` as a Kubernetes exec probe reads it, and
// GET /v1/health as an httpGet probe does: a non-critical service that has
// failed for good is named (in the body, and on tend health's stdout) but
// fails neither probe; a critical service that is not ready fails both
// (503, exit 1), named with why, at level ready, and neither at level
// alive; with [health] include = "all" the failed non-critical service
// fails both levels.
func TestHealthAsProbe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		web     []string // web's extra keys
		include string   // [health] include
		level   string   // "" none asked
		code    int      // tend health's exit code
		http    int
		stdout  string
		body    []string
		notBody string
	}{
		{"healthy with a failed non-critical service", nil, "", "", 0, 200, "healthy; failed: crashy",
			[]string{`"healthy":true`, `"level":"ready"`, `"include":"critical"`, `"failed":["crashy"]`}, `"not_ready"`},
		{"critical not ready", []string{`ready = "exec:false"`, `ready_timeout = "5m"`}, "", "", 1, 503, "not ready: web (starting); failed: crashy",
			[]string{`"healthy":false`, `"down":[{"service":"web","reason":"starting"}]`, `"not_ready":["web"]`, `"failed":["crashy"]`}, ""},
		{"critical not ready, alive", []string{`ready = "exec:false"`, `ready_timeout = "5m"`}, "", "alive", 0, 200, "healthy; failed: crashy",
			[]string{`"healthy":true`, `"level":"alive"`, `"failed":["crashy"]`}, `"down"`},
		{"include all, ready", nil, "all", "ready", 1, 503, "not ready: crashy (failed); failed: crashy",
			[]string{`"healthy":false`, `"include":"all"`, `"down":[{"service":"crashy","reason":"failed"}]`}, ""},
		{"include all, alive", nil, "all", "alive", 1, 503, "not alive: crashy (failed); failed: crashy",
			[]string{`"healthy":false`, `"level":"alive"`, `"down":[{"service":"crashy","reason":"failed"}]`}, `"not_ready"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := hDir(t)
			sock := filepath.Join(dir, "s")
			body := "[control]\nsocket = " + svQuote(sock) + "\n"
			if tc.include != "" {
				body += "[health]\ninclude = " + svQuote(tc.include) + "\n"
			}
			body += svShell("web", dir, svLoop, append([]string{"critical = true"}, tc.web...)...) +
				svShell("crashy", dir, "exit 1", `restart = "on-failure"`, "max_restarts = 0")
			r, _ := hConfig(t, opts{}, dir, body)
			svWaitLog(t, r, "service failed", "crashy")
			args, path := []string{"health"}, "/v1/health"
			if tc.level != "" {
				args, path = append(args, "--level", tc.level), path+"?level="+tc.level
			}
			res := cliRun(t, []string{"TEND_SOCKET=" + sock}, args...)
			if res.code() != tc.code || strings.TrimSpace(res.stdout) != tc.stdout {
				t.Errorf("tend %v: exit %d, stdout %q; want %d, %q (stderr %q)", args, res.code(), res.stdout, tc.code, tc.stdout, res.stderr)
			}
			code, got := rawGet(t, sock, path)
			for _, w := range tc.body {
				if code != tc.http || !strings.Contains(got, w) {
					t.Errorf("GET %s = %d %s, want %d with %s", path, code, got, tc.http, w)
				}
			}
			if tc.notBody != "" && strings.Contains(got, tc.notBody) {
				t.Errorf("GET %s body %s has %s", path, got, tc.notBody)
			}
			if code, _ := svTermAndExit(t, r); code != 143 && code != 0 {
				t.Errorf("tend exit code = %d after SIGTERM", code)
			}
		})
	}
	// A level that is not one: the client refuses it before asking.
	res := cliRun(t, []string{"TEND_SOCKET=/nonexistent"}, "health", "--level", "sideways")
	if res.code() != 2 || !strings.Contains(res.stderr, `--level: "sideways" is not alive or ready`) {
		t.Errorf("tend health --level sideways: exit %d, stderr %q; want 2 naming the level", res.code(), res.stderr)
	}
}

// rawGet is GET path on sock as an httpGet probe sees it: status and body.
func rawGet(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	c := hDial(t, sock)
	_ = c.SetDeadline(time.Now().Add(hWait))
	if _, err := io.WriteString(c, jobsGet(path)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestShutdownForcedSummary: a shutdown that has to SIGKILL a service ends
// with one warning and one shutdown.forced event naming each unit, how long
// it took and whether it was killed, and exits with [shutdown]
// killed_exit_code when it is set; a clean stop has no summary and keeps
// its code (143 for the SIGTERM), killed_exit_code or not.
func TestShutdownForcedSummary(t *testing.T) {
	t.Parallel()
	stubborn := `trap '' TERM; echo > "$D/stubborn.up"; ` + svLoop
	polite := `echo > "$D/polite.up"; exec sleep 1000`
	for _, tc := range []struct {
		name    string
		code    string // killed_exit_code, "" = unset
		svcs    []string
		want    int
		summary string // a regexp; "" = none
	}{
		{"forced, killed_exit_code", "137", []string{"stubborn", "polite"}, 137, `shutdown forced: service stubborn 1\d{3}ms killed`},
		{"forced, unset", "", []string{"stubborn", "polite"}, 143, `shutdown forced: service stubborn 1\d{3}ms killed`},
		{"clean, killed_exit_code", "137", []string{"polite"}, 143, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := hDir(t)
			sock := filepath.Join(dir, "s")
			body := "[control]\nsocket = " + svQuote(sock) + "\n[shutdown]\ngrace = \"1s\"\n"
			if tc.code != "" {
				body += "killed_exit_code = " + tc.code + "\n"
			}
			for _, n := range tc.svcs {
				body += svShell(n, dir, map[string]string{"stubborn": stubborn, "polite": polite}[n])
			}
			r, _ := hConfig(t, opts{}, dir, body)
			svUp(t, r, dir, tc.svcs...)
			ev, err := hClient(t, sock).Events(hCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			got := make(chan api.Event, 1)
			go func() {
				for {
					e, err := ev.Next()
					if err != nil {
						close(got)
						return
					}
					if e.Type == api.EventShutdownForced {
						got <- e
					}
				}
			}()
			code, took := svTermAndExit(t, r)
			stderr := r.stderrAll()
			if code != tc.want {
				t.Errorf("tend exit code = %d after %v, want %d; stderr:\n%s", code, took, tc.want, stderr)
			}
			lines := 0
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, "shutdown forced") {
					lines++
					if !strings.Contains(l, "level=WARN") || !regexp.MustCompile(tc.summary).MatchString(l) ||
						!regexp.MustCompile(`service polite \d+ms[,"]`).MatchString(l) || strings.Contains(l, "polite 0ms killed") {
						t.Errorf("summary %q: want a warning naming stubborn (killed after the 1s grace) and polite (not killed)", l)
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.summary != ""]; lines != want {
				t.Errorf("%d summary lines, want %d; stderr:\n%s", lines, want, stderr)
			}
			e, ok := <-got
			switch {
			case tc.summary == "" && ok:
				t.Errorf("clean stop published %+v", e)
			case tc.summary != "" && !ok:
				t.Errorf("no %s event before tend exited", api.EventShutdownForced)
			case tc.summary != "":
				if len(e.Units) != 2 || e.Units[0].Name != "service stubborn" || !e.Units[0].Killed || e.Units[0].TookMS < 900 ||
					e.Units[1].Name != "service polite" || e.Units[1].Killed || e.Code == nil || *e.Code != tc.want {
					t.Errorf("event %+v (code %v): want stubborn killed after about 1000 ms, polite not killed, code %d", e.Units, e.Code, tc.want)
				}
			}
		})
	}
}

// TestInitKilledExitCode: in init mode --killed-exit-code (and its twin)
// tells a forced stop from a clean one. The main exits 0 on SIGTERM, but
// its child ignores SIGTERM and is SIGKILLed by the sweep: the summary
// names the sweep, and tend exits with the code given, not the main's 0.
func TestInitKilledExitCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
		env   []string
		want  int
	}{
		{"unset", nil, nil, 0},
		{"flag", []string{"--killed-exit-code", "99"}, nil, 99},
		{"env twin", nil, []string{"TEND_KILLED_EXIT_CODE=98"}, 98},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The child says "up" once it ignores TERM: a SIGTERM sent
			// before its trap (the main's "up" came first, under load)
			// killed it, and then no sweep was needed.
			main := `trap 'exit 0' TERM; (trap '' TERM; echo up; exec sleep 1000) & wait; wait`
			args := append(append([]string{"-v", "--grace", "5s", "--cleanup-grace", "200ms"}, tc.flags...), "--", "sh", "-c", main)
			r := startTend(t, opts{pid1: true, env: tc.env}, args...)
			r.expect("up")
			code, _ := svTermAndExit(t, r)
			stderr := r.stderrAll()
			if code != tc.want || !regexp.MustCompile(`shutdown forced: service main \d+ms, sweep killed"`).MatchString(stderr) {
				t.Errorf("tend exit code = %d, want %d, with a summary naming main (not killed) and the sweep; stderr:\n%s", code, tc.want, stderr)
			}
		})
	}
}

// TestSignalRouteWithMain: with a main command, a signal other than TERM
// and INT goes to the main service and to the services that list it, and
// to no other: `docker kill -s HUP` for nginx never kills a worker that
// does not handle HUP (issue 14: it used to go to every service).
func TestSignalRouteWithMain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := svTrapper("nginx", dir, []string{"HUP"}, `signals = { SIGHUP = "SIGHUP" }`) +
		svTrapper("worker", dir, nil, `restart = "never"`) // no trap: a HUP would kill it
	main := `trap 'echo HUP >> "$D/main.sig"' HUP; echo > "$D/main.up"; ` + svLoop
	r := svStart(t, opts{pid1: true, env: []string{"D=" + dir}}, dir, cfg, "--", "sh", "-c", main)
	svUp(t, r, dir, "main")
	for _, n := range []string{"nginx", "worker"} {
		svWaitLines(t, r, filepath.Join(dir, n+".pid"), 1)
	}
	r.signal(unix.SIGHUP)
	svWaitLines(t, r, filepath.Join(dir, "main.sig"), 1)
	svWaitLines(t, r, filepath.Join(dir, "nginx.sig"), 1)
	time.Sleep(150 * time.Millisecond) // a HUP to the worker would have killed it by now
	if stderr := r.stderrNow(); svLog(stderr, "service exited", "worker") != 0 {
		t.Errorf("the worker got the HUP; stderr:\n%s", stderr)
	}
	if n := strings.Count(r.stderrNow(), `msg="forwarding signal" sig=SIGHUP`); n != 2 {
		t.Errorf("%d forwards logged at -v, want 2 (main and nginx):\n%s", n, r.stderrNow())
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit code = %d, want 143", code)
	}
}
