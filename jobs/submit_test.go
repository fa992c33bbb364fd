//go:build linux

package jobs

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/spawn"
)

// TestSubmitRefusals: every bad request is refused with its status, no
// record is made, and the passed fds are closed.
func TestSubmitRefusals(t *testing.T) {
	m, _ := newManager(t, Config{})
	user := Caller{UID: 1000, GID: 1000}
	for _, tc := range []struct {
		name   string
		req    api.JobRequest
		caller Caller
		files  int
		code   int
	}{
		{"no argv", api.JobRequest{}, root, 0, http.StatusBadRequest},
		{"empty argv0", api.JobRequest{Argv: []string{""}}, root, 0, http.StatusBadRequest},
		{"bad timeout", api.JobRequest{Argv: []string{"true"}, Timeout: "soon"}, root, 0, http.StatusBadRequest},
		{"negative timeout", api.JobRequest{Argv: []string{"true"}, Timeout: "-1s"}, root, 0, http.StatusBadRequest},
		{"empty label key", api.JobRequest{Argv: []string{"true"}, Labels: map[string]string{"": "x"}}, root, 0, http.StatusBadRequest},
		{"relative dir", api.JobRequest{Argv: []string{"true"}, Dir: "tmp"}, root, 0, http.StatusBadRequest},
		{"stdio 3", api.JobRequest{Argv: []string{"true"}, Stdio: []int{3}}, root, 1, http.StatusBadRequest},
		{"stdio twice", api.JobRequest{Argv: []string{"true"}, Stdio: []int{1, 1}}, root, 2, http.StatusBadRequest},
		{"stdio count", api.JobRequest{Argv: []string{"true"}, Stdio: []int{1, 2}}, root, 1, http.StatusBadRequest},
		{"four fds", api.JobRequest{Argv: []string{"true"}}, root, 4, http.StatusBadRequest},
		{"user by non-root", api.JobRequest{Argv: []string{"true"}, User: "nobody"}, user, 0, http.StatusForbidden},
		{"unknown user", api.JobRequest{Argv: []string{"true"}, User: "no-such-user-tend"}, root, 0, http.StatusBadRequest},
		{"not found", api.JobRequest{Argv: []string{"/nonexistent/prog"}}, root, 1, http.StatusUnprocessableEntity},
		{"not executable", api.JobRequest{Argv: []string{"/etc/passwd"}}, root, 0, http.StatusUnprocessableEntity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var readers []*os.File
			var files []*os.File
			for range tc.files {
				r, w := pipe(t)
				readers, files = append(readers, r), append(files, w)
			}
			_, err := m.Submit(SubmitRequest{JobRequest: tc.req, Caller: tc.caller, Files: files})
			if statusCode(err) != tc.code {
				t.Fatalf("Submit = %v, want %d", err, tc.code)
			}
			for i, r := range readers {
				if n, err := r.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("reader %d: %d, %v; want EOF (tend closed its copy)", i, n, err)
				}
			}
		})
	}
	if jobs := m.List(root, nil); len(jobs) != 0 {
		t.Errorf("refused requests left %d records", len(jobs))
	}
	if started, _, _ := m.Counters(); started != 0 {
		t.Errorf("started = %d, want 0", started)
	}
}

func TestExecFailureNamesPathAndErrno(t *testing.T) {
	m, rec := newManager(t, Config{})
	_, err := m.Submit(SubmitRequest{JobRequest: api.JobRequest{Argv: []string{"no-such-prog-tend"}}})
	if statusCode(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "ENOENT") ||
		!strings.Contains(err.Error(), "no-such-prog-tend") {
		t.Errorf("Submit = %v, want 422 naming the program and ENOENT", err)
	}
	if len(rec.events) != 0 {
		t.Errorf("events published for a job never made: %v", rec.events)
	}
}

func TestForkEAGAIN(t *testing.T) {
	m, _ := newManager(t, Config{})
	m.spawn = func(s spawn.Spec) (int, error) {
		return 0, fmt.Errorf("fork %s: %w", s.Argv[0], unix.EAGAIN)
	}
	_, err := m.Submit(SubmitRequest{JobRequest: sh("true")})
	if statusCode(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "EAGAIN") {
		t.Errorf("Submit = %v, want 503 naming EAGAIN", err)
	}
}

// TestVisibility: a non-root caller sees and signals only its own jobs;
// another uid's job is a 404, as if it did not exist.
func TestVisibility(t *testing.T) {
	m, _ := newManager(t, Config{})
	alice, bob := Caller{UID: 1000, GID: 1000}, Caller{UID: 1001, GID: 1001}
	mine := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30"), Caller: alice})
	roots := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30")})
	if mine.UID != 1000 {
		t.Errorf("record uid %d, want 1000", mine.UID)
	}
	for _, id := range []string{mine.ID, roots.ID} {
		if _, err := m.Get(bob, id); statusCode(err) != http.StatusNotFound {
			t.Errorf("Get(bob, %s) = %v, want 404", id, err)
		}
		if err := m.Signal(bob, id, api.SignalRequest{Signal: "KILL"}); statusCode(err) != http.StatusNotFound {
			t.Errorf("Signal(bob, %s) = %v, want 404", id, err)
		}
		if _, err := m.Wait(t.Context(), bob, id, 0); statusCode(err) != http.StatusNotFound {
			t.Errorf("Wait(bob, %s) = %v, want 404", id, err)
		}
	}
	if l := m.List(bob, nil); len(l) != 0 {
		t.Errorf("List(bob) = %d jobs, want none", len(l))
	}
	if l := m.List(alice, nil); len(l) != 1 || l[0].ID != mine.ID {
		t.Errorf("List(alice) = %v, want only %s", ids(l), mine.ID)
	}
	if l := m.List(root, nil); !slices.Equal(ids(l), []string{roots.ID, mine.ID}) {
		t.Errorf("List(root) = %v, want %v (newest first)", ids(l), []string{roots.ID, mine.ID})
	}
	if _, err := m.Get(root, mine.ID); err != nil {
		t.Errorf("Get(root, alice's job) = %v", err)
	}
	if err := m.Signal(alice, mine.ID, api.SignalRequest{Signal: "KILL"}); err != nil {
		t.Errorf("Signal(alice, own job) = %v", err)
	}
	// A job root runs as nobody belongs to nobody, as the record's uid says.
	req := sh("exec sleep 30")
	req.User = "nobody"
	asNobody := submit(t, m, SubmitRequest{JobRequest: req})
	if got, err := m.Get(Caller{UID: 65534, GID: 65534}, asNobody.ID); err != nil || got.UID != 65534 {
		t.Errorf("Get(nobody, job run as nobody) = uid %d, %v", got.UID, err)
	}
	if _, err := m.Get(alice, asNobody.ID); statusCode(err) != http.StatusNotFound {
		t.Errorf("Get(alice, nobody's job) = %v, want 404", err)
	}
}

func ids(jobs []api.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestListLabels(t *testing.T) {
	m, _ := newManager(t, Config{})
	a := sh("true")
	a.Labels = map[string]string{"team": "x", "kind": "build"}
	b := sh("true")
	b.Labels = map[string]string{"team": "x"}
	ja, jb := submit(t, m, SubmitRequest{JobRequest: a}), submit(t, m, SubmitRequest{JobRequest: b})
	for _, tc := range []struct {
		sel  map[string]string
		want []string
	}{
		{nil, []string{jb.ID, ja.ID}},
		{map[string]string{"team": "x"}, []string{jb.ID, ja.ID}},
		{map[string]string{"team": "x", "kind": "build"}, []string{ja.ID}},
		{map[string]string{"kind": "test"}, nil},
	} {
		if got := ids(m.List(root, tc.sel)); !slices.Equal(got, tc.want) {
			t.Errorf("List(%v) = %v, want %v", tc.sel, got, tc.want)
		}
	}
}

// TestPrune: exited records beyond MaxRecords or older than Keep go.
func TestPrune(t *testing.T) {
	m, _ := newManager(t, Config{MaxRecords: 3, Keep: time.Hour})
	var all []string
	for range 6 {
		j := submit(t, m, SubmitRequest{JobRequest: sh("true")})
		waitJob(t, m, root, j.ID)
		all = append(all, j.ID)
	}
	live := submit(t, m, SubmitRequest{JobRequest: sh("exec sleep 30")})
	want := []string{live.ID, all[5], all[4], all[3]}
	if got := ids(m.List(root, nil)); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if _, err := m.Get(root, all[0]); statusCode(err) != http.StatusNotFound {
		t.Errorf("Get(pruned) = %v, want 404", err)
	}
	m.mu.Lock()
	m.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	m.mu.Unlock()
	if got := ids(m.List(root, nil)); !slices.Equal(got, []string{live.ID}) {
		t.Errorf("List two hours later = %v, want only the running %s", got, live.ID)
	}
}
