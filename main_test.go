//go:build linux

package main

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/signals"
)

func TestSplitArgsSubcommands(t *testing.T) {
	for _, tt := range []struct {
		args, cli, argv []string
	}{
		{[]string{"tend", "spawn", "--", "sh", "-c", "x"}, []string{"tend", "spawn", "--", "sh", "-c", "x"}, nil},
		{[]string{"tend", "-v", "status"}, []string{"tend", "-v", "status"}, nil},
		{[]string{"tend", "--", "status"}, []string{"tend"}, []string{"status"}},
		{[]string{"tend", "--expect-exit=3", "--", "x"}, []string{"tend", "-e=3"}, []string{"x"}},
	} {
		cli, argv := splitArgs(tt.args)
		if !slices.Equal(cli, tt.cli) || !slices.Equal(argv, tt.argv) {
			t.Errorf("splitArgs(%q) = %q, %q; want %q, %q", tt.args, cli, argv, tt.cli, tt.argv)
		}
	}
}

// fakeJobs answers POST /v1/jobs and GET /v1/jobs/{id}/wait: every job
// exits with the code its argv[0] names ("exit3"), or 0.
func fakeJobs(t *testing.T) (sock string, argv0s func() []string) {
	sock = filepath.Join(t.TempDir(), "tend.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		var req api.JobRequest
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		seen = append(seen, req.Argv[0])
		mu.Unlock()
		pid := 7
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(api.Job{ID: "j-" + req.Argv[0], PID: &pid, State: api.StateRunning, Argv: req.Argv})
	})
	mux.HandleFunc("GET /v1/jobs/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		code := 0
		if id := r.PathValue("id"); strings.HasPrefix(id, "j-exit") {
			code = int(id[len(id)-1] - '0')
		}
		json.NewEncoder(w).Encode(api.Job{ID: r.PathValue("id"), State: api.StateExited, ExitCode: &code, Reason: api.ReasonExited})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(seen) }
}

// TestRunDispatchesClientCommands: the root command hands subcommands to
// the client package, and `--` still makes "help" a job's program.
func TestRunDispatchesClientCommands(t *testing.T) {
	sock, seen := fakeJobs(t)
	sigs := signals.Notify()
	if got := run([]string{"tend", "spawn", "--socket", sock, "--", "exit3"}, sigs); got != 3 {
		t.Errorf("run(tend spawn -- exit3) = %d, want 3", got)
	}
	if got := run([]string{"tend", "spawn", "--socket", sock, "--", "help"}, sigs); got != 0 {
		t.Errorf("run(tend spawn -- help) = %d, want 0 (the job help)", got)
	}
	if got := run([]string{"tend", "wait", "--socket", sock, "j-exit4"}, sigs); got != 4 {
		t.Errorf("run(tend wait j-exit4) = %d, want 4", got)
	}
	if got := run([]string{"tend", "status", "--bogus"}, sigs); got != exitUsage {
		t.Errorf("run(tend status --bogus) = %d, want %d", got, exitUsage)
	}
	if got := run([]string{"tend", "--grace", "0", "--", "true"}, sigs); got != exitUsage {
		t.Errorf("run(tend --grace 0) = %d, want %d", got, exitUsage)
	}
	if got := seen(); !slices.Equal(got, []string{"exit3", "help"}) {
		t.Errorf("jobs submitted: %q, want exit3 and help", got)
	}
}

// TestFlagDefaultsFromConfig: the flags that have a default take it from
// config's table, the only one: --help shows it and an unset flag gets it.
func TestFlagDefaultsFromConfig(t *testing.T) {
	want := map[string]string{
		"cleanup-grace": config.DefaultCleanupGrace.String(),
		"log-format":    config.DefaultLogFormat,
	}
	code := -1
	for _, f := range newApp(nil, nil, &code).Flags {
		sf, ok := f.(*cli.StringFlag)
		if !ok {
			continue
		}
		if w, ok := want[sf.Name]; ok {
			if sf.Value != w {
				t.Errorf("--%s defaults to %q, want config's %q", sf.Name, sf.Value, w)
			}
			delete(want, sf.Name)
		}
	}
	for name := range want {
		t.Errorf("no flag --%s", name)
	}
}
