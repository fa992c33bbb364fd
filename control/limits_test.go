//go:build linux

package control

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tendinit/tend/api"
)

// small are limits a test can reach with a few bytes.
var small = Limits{MaxLabels: 2, MaxLabelKeyBytes: 4, MaxLabelValueBytes: 5, MaxArgv: 3, MaxArgvBytes: 12,
	MaxEnv: 2, MaxEnvBytes: 10, MaxDirBytes: 8, PageSize: 2, MaxPageSize: 5}

func statusOf(err error) (int, string) {
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Code, se.Msg
	}
	return 0, fmt.Sprint(err)
}

// TestJobRequestCaps: each cap of a job request refuses one byte or
// string over it with a 413 that names the field and its [jobs] setting,
// and takes what is exactly at it.
func TestJobRequestCaps(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, tc := range []struct {
		name string
		req  api.JobRequest
		want string // "" = accepted
	}{
		{"at every limit", api.JobRequest{Argv: []string{"abc", "de", "fghi"}, Env: []string{"A=1", "B=234"},
			Dir: "/1234567", Labels: map[string]string{"kkkk": "vvvvv", "k": ""}}, ""},
		{"argv count", api.JobRequest{Argv: []string{"a", "b", "c", "d"}}, "argv has 4 strings: the limit is 3 ([jobs] max_argv)"},
		{"argv bytes", api.JobRequest{Argv: []string{"abcdef", "ghijkl"}}, "argv is 14 bytes: the limit is 12 ([jobs] max_argv_bytes)"},
		{"env count", api.JobRequest{Argv: []string{"a"}, Env: []string{"A=", "B=", "C="}}, "env has 3 strings: the limit is 2 ([jobs] max_env)"},
		{"env bytes", api.JobRequest{Argv: []string{"a"}, Env: []string{"A=12345678"}}, "env is 11 bytes: the limit is 10 ([jobs] max_env_bytes)"},
		{"dir", api.JobRequest{Argv: []string{"a"}, Dir: "/12345678"}, "dir is 9 bytes: the limit is 8 ([jobs] max_dir_bytes)"},
		{"label count", api.JobRequest{Argv: []string{"a"}, Labels: map[string]string{"a": "", "b": "", "c": ""}}, "3 labels: the limit is 2 ([jobs] max_labels)"},
		{"label key", api.JobRequest{Argv: []string{"a"}, Labels: map[string]string{"kkkkk": ""}}, `label key "kkkkk" is 5 bytes: the limit is 4 ([jobs] max_label_key_bytes)`},
		{"label value", api.JobRequest{Argv: []string{"a"}, Labels: map[string]string{"k": "vvvvvv"}}, `label "k"'s value is 6 bytes: the limit is 5 ([jobs] max_label_value_bytes)`},
		{"long key is not echoed whole", api.JobRequest{Argv: []string{"a"}, Labels: map[string]string{long: ""}}, `"...`},
	} {
		_, err := parseJob(tc.req, nil, Caller{UID: 1000}, 1, small)
		code, msg := statusOf(err)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, tc.want)):
			t.Errorf("%s: %d %q, want a 413 containing %q", tc.name, code, msg, tc.want)
		case len(msg) > 200:
			t.Errorf("%s: a %d-byte message echoes the field", tc.name, len(msg))
		}
	}
}

// TestParseListEdges: limit defaults to page_size, takes 1 to
// max_page_size, refuses the rest naming the setting; after takes an id.
func TestParseListEdges(t *testing.T) {
	for _, tc := range []struct {
		query string
		limit int
		after string
		want  string // a 400 containing it; "" = accepted
	}{
		{"", 2, "", ""},
		{"limit=1", 1, "", ""},
		{"limit=5&after=j-1&label=a=b", 5, "j-1", ""},
		{"pid=4194304&limit=1", 1, "", ""},
		{"limit=0", 0, "", "from 1 to 5 ([control] max_page_size)"},
		{"limit=-3", 0, "", "from 1 to 5"},
		{"limit=x", 0, "", `limit "x"`},
		{"limit=6", 0, "", "limit 6: the most a page holds is 5 ([control] max_page_size)"},
		{"limit=99999999999999999999", 0, "", "from 1 to 5"},
		{"limit=1&limit=2", 0, "", "limit given 2 times"},
		{"after=", 0, "", "want the id of the last job"},
		{"after=" + strings.Repeat("j", 65), 0, "", "want the id of the last job"},
		{"after=a&after=b", 0, "", "after given 2 times"},
		{"label=%zz", 0, "", "query"},
		{"pid=0", 0, "", "pid \"0\": want a process id from 1 to 4194304"},
		{"pid=-1", 0, "", "want a process id"},
		{"pid=4194305", 0, "", "want a process id"},
		{"pid=x", 0, "", `pid "x"`},
		{"pid=1&pid=2", 0, "", "pid given 2 times"},
	} {
		q, err := parseList(tc.query, small)
		code, msg := statusOf(err)
		switch {
		case tc.want == "" && (err != nil || q.Limit != tc.limit || q.After != tc.after):
			t.Errorf("parseList(%q) = %+v, %v; want limit %d after %q", tc.query, q, err, tc.limit, tc.after)
		case tc.want != "" && (code != http.StatusBadRequest || !strings.Contains(msg, tc.want)):
			t.Errorf("parseList(%q) = %d %q, want a 400 containing %q", tc.query, code, msg, tc.want)
		}
	}
}

// TestListPageHeaders: a page cut by its limit names the next in
// Tend-Next-After and a Link rel="next" that keeps the query; the last
// page names none; GET /v1/status carries one page of page_size and the
// cursor.
func TestListPageHeaders(t *testing.T) {
	h := startServer(t, func(c *Config) { c.Limits = small; c.Limits.PageSize = 1 })
	resp, err := h.client(t).Get("http://tend/v1/jobs?limit=1&label=a=b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, link := resp.Header.Get(api.NextHeader), resp.Header.Get("Link"); got != "j-2" || link != `</v1/jobs?after=j-2&label=a%3Db&limit=1>; rel="next"` {
		t.Errorf("first page: next %q, Link %q", got, link)
	}
	resp, err = h.client(t).Get("http://tend/v1/jobs?limit=1&after=j-2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.NextHeader) != "" || resp.Header.Get("Link") != "" {
		t.Errorf("last page: %d, next %q, Link %q; want 200 and none", resp.StatusCode, resp.Header.Get(api.NextHeader), resp.Header.Get("Link"))
	}
	if code, body := h.do(t, "GET", "/v1/jobs?limit=9", ""); code != http.StatusBadRequest || !strings.Contains(body, "max_page_size") {
		t.Errorf("limit over max: %d %s", code, body)
	}
	if code, body := h.do(t, "GET", "/v1/status", ""); code != http.StatusOK || !strings.Contains(body, `"jobs_next":"j-2"`) || strings.Contains(body, `"j-1"`) {
		t.Errorf("status with page_size 1: %d %s, want one job and jobs_next", code, body)
	}
}
