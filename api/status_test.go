//go:build linux

package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestJobStatus: a record says how its job ended as wait(2) and Python's
// subprocess would: an exit code, a signal, a core dump, nothing yet.
func TestJobStatus(t *testing.T) {
	code := func(n int) *int { return &n }
	name := func(s string) *string { return &s }
	for _, tc := range []struct {
		job  Job
		want string
	}{
		{Job{ExitCode: code(0)}, `"wait_status":0,"returncode":0`},
		{Job{ExitCode: code(3)}, `"wait_status":768,"returncode":3`},
		{Job{ExitCode: code(127)}, `"wait_status":32512,"returncode":127`},
		{Job{Signal: name("SIGKILL")}, `"wait_status":9,"returncode":-9`},
		{Job{Signal: name("SIGSEGV"), CoreDumped: true}, `"wait_status":139,"returncode":-11`},
		{Job{Signal: name("SIGRTMIN+3")}, `"wait_status":35,"returncode":-35`},
		{Job{State: StateRunning}, `"wait_status":null,"returncode":null`},
	} {
		b, err := json.Marshal(tc.job)
		if err != nil || !strings.Contains(string(b), tc.want) {
			t.Errorf("%+v: %s, %v; want %s", tc.job, b, err, tc.want)
		}
		var back Job
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%s does not decode: %v", b, err)
		}
		if b2, _ := json.Marshal(back); string(b2) != string(b) {
			t.Errorf("round trip: %s then %s", b, b2)
		}
	}
}
