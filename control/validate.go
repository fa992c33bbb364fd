//go:build linux

package control

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
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
func parseJob(req api.JobRequest, files []int, c Caller, conn uint64, lim Limits) (Submit, error) {
	bad := func(format string, args ...any) (Submit, error) {
		return Submit{}, api.Errorf(http.StatusBadRequest, "body: "+format, args...)
	}
	if len(req.Argv) == 0 {
		return bad("argv is empty: want the command and its arguments")
	}
	if req.Argv[0] == "" {
		return bad("argv[0] is empty")
	}
	if err := checkSizes(req, lim); err != nil {
		return Submit{}, err
	}
	if req.Dir != "" && !filepath.IsAbs(req.Dir) {
		// tend's cwd means nothing to the caller.
		return bad("dir %s is not an absolute path", quoteCut(req.Dir))
	}
	sub := Submit{Caller: c, Conn: conn, Argv: req.Argv, Env: req.Env, Dir: req.Dir,
		Labels: req.Labels, Bind: req.Bind, PidFD: req.PidFD, User: req.User, Files: files}
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
	var err error
	if sub.MemoryMax, err = parseLimit(req.MemoryMax, config.ParseMemoryMax); err != nil {
		return bad("memory_max: %v", err)
	}
	if sub.PidsMax, err = parseLimit(req.PidsMax, config.ParsePidsMax); err != nil {
		return bad("pids_max: %v", err)
	}
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

// parseLimit reads a limit of a job request with config's own parser
// (the same words as in the file): absent or null is config.NoLimit, a JSON
// string is given as a string, a JSON integer as an int64 (read from its
// text, so no float rounds it).
func parseLimit(raw json.RawMessage, parse func(any) (int64, error)) (int64, error) {
	text := strings.TrimSpace(string(raw))
	switch {
	case text == "" || text == "null":
		return config.NoLimit, nil
	case text[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		if len(s) > quoteShown {
			return 0, fmt.Errorf("%s is not a limit", quoteCut(s))
		}
		return parse(s)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: want an integer or a string", quoteCut(text))
	}
	return parse(n)
}

// checkSizes refuses, with a 413 naming the field and the [jobs] setting,
// a request carrying more than a record or a start may hold: the body cap
// alone would let one request keep a megabyte in tend for [jobs] keep.
func checkSizes(req api.JobRequest, lim Limits) error {
	tooBig := func(format string, args ...any) error {
		return api.Errorf(http.StatusRequestEntityTooLarge, "body: "+format, args...)
	}
	if n := len(req.Argv); n > lim.MaxArgv {
		return tooBig("argv has %d strings: the limit is %d ([jobs] max_argv)", n, lim.MaxArgv)
	}
	if n := execBytes(req.Argv); n > lim.MaxArgvBytes {
		return tooBig("argv is %d bytes: the limit is %d ([jobs] max_argv_bytes)", n, lim.MaxArgvBytes)
	}
	if n := len(req.Env); n > lim.MaxEnv {
		return tooBig("env has %d strings: the limit is %d ([jobs] max_env)", n, lim.MaxEnv)
	}
	if n := execBytes(req.Env); n > lim.MaxEnvBytes {
		return tooBig("env is %d bytes: the limit is %d ([jobs] max_env_bytes)", n, lim.MaxEnvBytes)
	}
	if n := len(req.Dir); n > lim.MaxDirBytes {
		return tooBig("dir is %d bytes: the limit is %d ([jobs] max_dir_bytes)", n, lim.MaxDirBytes)
	}
	if n := len(req.Labels); n > lim.MaxLabels {
		return tooBig("%d labels: the limit is %d ([jobs] max_labels)", n, lim.MaxLabels)
	}
	for k, v := range req.Labels {
		if len(k) > lim.MaxLabelKeyBytes {
			return tooBig("label key %s is %d bytes: the limit is %d ([jobs] max_label_key_bytes)", quoteCut(k), len(k), lim.MaxLabelKeyBytes)
		}
		if len(v) > lim.MaxLabelValueBytes {
			return tooBig("label %s's value is %d bytes: the limit is %d ([jobs] max_label_value_bytes)", quoteCut(k), len(v), lim.MaxLabelValueBytes)
		}
	}
	return nil
}

// execBytes is the size of strs as execve(2) counts it: each string with
// its terminating NUL.
func execBytes(strs []string) int {
	n := 0
	for _, s := range strs {
		n += len(s) + 1
	}
	return n
}

// quoteShown is the most of a caller's string an error message repeats.
const quoteShown = 64

// quoteCut quotes s for a message, cut to quoteShown bytes: an answer
// never echoes a whole oversized field.
func quoteCut(s string) string {
	if len(s) <= quoteShown {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:quoteShown]) + "..."
}

// maxCursor is the longest after= a listing takes: far longer than any id.
const maxCursor = 64

// parseList reads GET /v1/jobs's query: label=k=v (repeatable, all must
// match), limit=N (1 to [control] max_page_size; default page_size) and
// after=ID (the last id of the previous page). Other parameters are ignored.
func parseList(rawQuery string, lim Limits) (ListQuery, error) {
	labels, err := parseLabels(rawQuery)
	if err != nil {
		return ListQuery{}, err
	}
	q, _ := url.ParseQuery(rawQuery) // parseLabels refused what does not parse
	lq := ListQuery{Labels: labels, Limit: lim.PageSize}
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		switch {
		case len(v) > 1:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "limit given %d times", len(v))
		case err != nil || n < 1:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "limit %s: want a number of jobs from 1 to %d ([control] max_page_size)", quoteCut(v[0]), lim.MaxPageSize)
		case n > lim.MaxPageSize:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "limit %d: the most a page holds is %d ([control] max_page_size)", n, lim.MaxPageSize)
		}
		lq.Limit = n
	}
	if v, ok := q["pid"]; ok {
		n, err := strconv.Atoi(v[0])
		switch {
		case len(v) > 1:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "pid given %d times", len(v))
		case err != nil || n < 1 || n > 1<<22:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "pid %s: want a process id from 1 to 4194304", quoteCut(v[0]))
		}
		lq.PID = n
	}
	if v, ok := q["after"]; ok {
		switch {
		case len(v) > 1:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "after given %d times", len(v))
		case v[0] == "" || len(v[0]) > maxCursor:
			return ListQuery{}, api.Errorf(http.StatusBadRequest, "after %s: want the id of the last job of the previous page", quoteCut(v[0]))
		}
		lq.After = v[0]
	}
	return lq, nil
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
			return nil, api.Errorf(http.StatusBadRequest, "label %s: want key=value", quoteCut(kv))
		}
		if old, dup := labels[k]; dup && old != v {
			return nil, api.Errorf(http.StatusBadRequest, "label %s given twice", quoteCut(k))
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	return labels, nil
}
