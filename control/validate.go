//go:build linux

package control

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/signals"
)

// checkJob refuses what is wrong with a job request on its face; the jobs
// manager checks the rest (user, dir, env) against the caller.
func checkJob(req api.JobRequest, nfiles int) error {
	if len(req.Argv) == 0 {
		return api.Errorf(http.StatusBadRequest, "body: argv is empty: want the command and its arguments")
	}
	if req.Argv[0] == "" {
		return api.Errorf(http.StatusBadRequest, "body: argv[0] is empty")
	}
	if req.Timeout != "" {
		if d, err := time.ParseDuration(req.Timeout); err != nil || d < 0 {
			return api.Errorf(http.StatusBadRequest, "body: timeout %q: want a duration such as 30m", req.Timeout)
		}
	}
	if len(req.Stdio) == 0 {
		return nil
	}
	if len(req.Stdio) != nfiles {
		return api.Errorf(http.StatusBadRequest, "body: stdio names %d fds but %d were passed with the request", len(req.Stdio), nfiles)
	}
	var seen [maxFDs]bool
	for _, fd := range req.Stdio {
		if fd < 0 || fd >= maxFDs || seen[fd] {
			return api.Errorf(http.StatusBadRequest, "body: stdio %v: want distinct fds among 0, 1 and 2", req.Stdio)
		}
		seen[fd] = true
	}
	return nil
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
