//go:build linux

package control

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/signals"
)

// parseJob is the one validator of a job request: it refuses what is wrong
// on its face (with a 400 naming the field) and returns the request the
// backend works with. The backend checks the rest against the caller (who
// may name a user) and the filesystem (the command, dir).
func parseJob(req api.JobRequest, files []int, c Caller, conn uint64) (Submit, error) {
	bad := func(format string, args ...any) (Submit, error) {
		return Submit{}, api.Errorf(http.StatusBadRequest, "body: "+format, args...)
	}
	if len(req.Argv) == 0 {
		return bad("argv is empty: want the command and its arguments")
	}
	if req.Argv[0] == "" {
		return bad("argv[0] is empty")
	}
	if req.Dir != "" && !filepath.IsAbs(req.Dir) {
		// tend's cwd means nothing to the caller.
		return bad("dir %q is not an absolute path", req.Dir)
	}
	sub := Submit{Caller: c, Conn: conn, Argv: req.Argv, Env: req.Env, Dir: req.Dir,
		Labels: req.Labels, Bind: req.Bind, User: req.User, Files: files}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d < 0 {
			return bad("timeout %q: want a duration such as 30m (0: none)", req.Timeout)
		}
		sub.Timeout, sub.TimeoutSet = d, true
	}
	for k := range req.Labels {
		if k == "" {
			return bad("labels: a label with an empty key")
		}
	}
	if _, err := config.ParseTrack(req.Track); err != nil {
		return bad("track: %v", err)
	}
	sub.Track = req.Track
	if len(files) > maxFDs {
		return bad("%d fds passed, at most %d (stdin, stdout, stderr)", len(files), maxFDs)
	}
	if len(req.Stdio) == 0 {
		sub.Stdio = []int{0, 1, 2}[:len(files)]
		return sub, nil
	}
	if len(req.Stdio) != len(files) {
		return bad("stdio names %d fds but %d were passed with the request", len(req.Stdio), len(files))
	}
	var seen [maxFDs]bool
	for _, fd := range req.Stdio {
		if fd < 0 || fd >= maxFDs || seen[fd] {
			return bad("stdio %v: want distinct fds among 0, 1 and 2", req.Stdio)
		}
		seen[fd] = true
	}
	sub.Stdio = req.Stdio
	return sub, nil
}

// parseSignal reads a signal's name or number; "" is SIGTERM.
func parseSignal(name string) (unix.Signal, error) {
	if name == "" {
		return unix.SIGTERM, nil
	}
	sig, err := signals.Parse(name)
	if err != nil {
		return 0, api.Errorf(http.StatusBadRequest, "body: signal: %v", err)
	}
	return sig, nil
}

// parseLabels reads the repeatable label=k=v query parameters.
func parseLabels(rawQuery string) (map[string]string, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, api.Errorf(http.StatusBadRequest, "query: %v", err)
	}
	var labels map[string]string
	for _, kv := range q["label"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, api.Errorf(http.StatusBadRequest, "label %q: want key=value", kv)
		}
		if old, dup := labels[k]; dup && old != v {
			return nil, api.Errorf(http.StatusBadRequest, "label %q given twice", k)
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	return labels, nil
}
