//go:build linux

package test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tendinit/tend/api"
)

// TestMetrics: GET /v1/metrics as PID 1 with services and jobs: Prometheus'
// text format that Debian's promtool accepts (check metrics: syntax and
// lint), with the counts exact (2 jobs exited, 1 signaled, the services'
// states and checks), tend's own RssAnon, threads and fds; OpenMetrics
// (ending in "# EOF") when the client asks for it.
func TestMetrics(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not installed (apt-get install prometheus): " + err.Error()
		if v := os.Getenv("CI"); v != "" && v != "false" && v != "0" {
			t.Fatal(msg + " (CI=true: not skipping)")
		}
		t.Skip(msg)
	}
	dir := hDir(t)
	cfg := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" +
		svShell("web", dir, "exec sleep 1000", "[[service.check]]", `probe = "exec:false"`, `period = "100ms"`, "threshold = 1", `on_failure = "ignore"`) +
		svShell("once", dir, "exit 0", `restart = "never"`)
	r, sock := hConfig(t, opts{}, dir, cfg)
	c := hClient(t, sock)
	for _, script := range []string{"exit 0", "exit 3", "kill -9 $$"} {
		j, err := c.Spawn(hCtx(t), api.JobRequest{Argv: []string{"sh", "-c", script}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		hWaitJob(t, c, j.ID)
	}
	get := func(accept string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://tend/v1/metrics", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := rHTTP(sock).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /v1/metrics: %d %s", resp.StatusCode, b)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	var body string
	svPoll(t, r, svWait, "web's check failing in the metrics", func() bool {
		_, body = get("")
		return strings.Contains(body, `tend_service_check_failing{service="web",check="check-1"} 1`)
	})
	ct, body := get("")
	if ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, out, body)
	}
	for _, want := range []string{
		"tend_jobs_started_total 3", `tend_jobs_ended_total{reason="exited"} 2`, `tend_jobs_ended_total{reason="signaled"} 1`,
		`tend_jobs_ended_total{reason="oom"} 0`, `tend_jobs{state="running"} 0`, "tend_job_records 3",
		`tend_service_state{service="web",state="running"} 1`, `tend_service_state{service="web",state="failed"} 0`,
		`tend_service_state{service="once",state="stopped"} 1`, `tend_service_ready{service="web"} 1`,
		`tend_service_runs_total{service="once"} 1`, "tend_stopping 0",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	for _, re := range []string{`(?m)^tend_reaped_total [1-9]\d*$`, `(?m)^tend_resident_anon_bytes [1-9]\d{5,}$`,
		`(?m)^tend_threads [1-9]\d*$`, `(?m)^tend_open_fds [1-9]\d*$`} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("metrics do not match %s:\n%s", re, body)
		}
	}
	ct, open := get("application/openmetrics-text; version=1.0.0")
	if ct != "application/openmetrics-text; version=1.0.0; charset=utf-8" || !strings.HasSuffix(open, "# EOF\n") ||
		!strings.Contains(open, "# TYPE tend_reaped counter\n") || !strings.Contains(open, "\ntend_reaped_total ") {
		t.Errorf("OpenMetrics: %q\n%s", ct, open)
	}
	if bytes.Count([]byte(body), []byte("# TYPE")) != bytes.Count([]byte(body), []byte("# HELP")) {
		t.Errorf("a family without HELP or TYPE:\n%s", body)
	}
}
