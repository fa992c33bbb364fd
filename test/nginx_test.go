//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// nginxBin is Debian 12's nginx (nginx-light, scripts/container-deps).
const nginxBin = "/usr/sbin/nginx"

// nginxConf serves $DIR/www on 127.0.0.1:PORT, with /healthz answered by
// nginx itself; everything it writes stays under $DIR.
const nginxConf = `daemon off;
master_process on;
worker_processes 1;
pid DIR/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path DIR/tmp/body;
    proxy_temp_path DIR/tmp/proxy;
    fastcgi_temp_path DIR/tmp/fastcgi;
    uwsgi_temp_path DIR/tmp/uwsgi;
    scgi_temp_path DIR/tmp/scgi;
    server {
        listen 127.0.0.1:PORT;
        root DIR/www;
        location = /healthz { return 200 "ok\n"; }
    }
}
`

// TestNginxReadyAndCheck runs nginx as PID 1's service: ready = "http://
// .../healthz" holds its dependent back until nginx answers; a check of
// the page it serves passes, then, once the page is gone (404), fails
// twice and restarts nginx (a new master pid, run 2); with the page back,
// run 2's check passes and nginx stays up.
func TestNginxReadyAndCheck(t *testing.T) {
	t.Parallel()
	needRoot(t)
	if _, err := os.Stat(nginxBin); err != nil {
		msg := "nginx not installed (apt-get install nginx-light): " + err.Error()
		if v := os.Getenv("CI"); v != "" && v != "false" && v != "0" {
			t.Fatal(msg + " (CI=true: not skipping)")
		}
		t.Skip(msg)
	}
	dir := hDir(t)
	port := strconv.Itoa(freePort(t))
	for _, d := range []string{"www", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	page := filepath.Join(dir, "www", "page.html")
	if err := os.WriteFile(page, []byte("<h1>hello</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("DIR", dir, "PORT", port).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:" + port
	cfg := "[control]\nsocket = " + svQuote(filepath.Join(dir, "s")) + "\n" +
		"\n[[service]]\nname = \"nginx\"\ncommand = [" + svQuote(nginxBin) + ", \"-e\", \"stderr\", \"-p\", " + svQuote(dir) +
		", \"-c\", " + svQuote(filepath.Join(dir, "nginx.conf")) + "]\nstop_signal = \"SIGQUIT\"\nready = " + svQuote(base+"/healthz") +
		"\nbackoff = \"100ms\"\n[[service.check]]\nname = \"page\"\nprobe = " + svQuote(base+"/page.html") +
		"\nperiod = \"200ms\"\nthreshold = 2\ntimeout = \"1s\"\n" +
		svShell("b", dir, `touch "$D/b.start"; exec sleep 1000`, `after = ["nginx"]`)
	r, sock := hConfig(t, opts{}, dir, cfg)
	c := hClient(t, sock)
	nginx := func() api.Service {
		t.Helper()
		st, err := c.Status(hCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		return svcStatus(t, st, "nginx")
	}
	svPoll(t, r, svWait, "nginx's check passing", func() bool {
		s := nginx()
		return s.Ready && len(s.Checks) == 1 && s.Checks[0].State == api.CheckPassing
	})
	if !svExists(filepath.Join(dir, "b.start")) {
		t.Errorf("b has not started, although nginx is ready")
	}
	first := nginx()

	if err := os.Remove(page); err != nil {
		t.Fatal(err)
	}
	svWaitLog(t, r, "service failed while running: restarting it", "nginx")
	if err := os.WriteFile(page, []byte("<h1>back</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.stderrNow(), "check page failed 2 times: GET "+base+"/page.html: 404 Not Found") {
		t.Errorf("the restart does not name the check and the 404:\n%s", r.stderrNow())
	}
	svPoll(t, r, svWait, "nginx's run 2 checked and passing", func() bool {
		s := nginx()
		return s.Runs == 2 && s.Ready && s.Checks[0].State == api.CheckPassing
	})
	second := nginx()
	if first.PID == nil || second.PID == nil || *first.PID == *second.PID {
		t.Errorf("nginx's master pid %v then %v: want a new process", ptrInt(first.PID), ptrInt(second.PID))
	}
	time.Sleep(time.Second) // five more checks
	if s := nginx(); s.Runs != 2 || s.Checks[0].State != api.CheckPassing || s.Checks[0].Failures != 0 {
		t.Errorf("nginx after the page came back: %+v", s)
	}
	if code, _ := svTermAndExit(t, r); code != 143 {
		t.Errorf("tend exit %d, want 143; stderr:\n%s", code, r.stderrAll())
	}
}
