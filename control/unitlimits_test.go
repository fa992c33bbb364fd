//go:build linux

package control

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// TestParseJobUnitLimits: memory_max and pids_max take config's words
// (integers, "32M", "max"), absent or null is no limit, and a bad value is
// a 400 naming the field.
func TestParseJobUnitLimits(t *testing.T) {
	lim := LimitsOf(config.Control{PageSize: 1, MaxPageSize: 1}, config.Jobs{MaxArgv: 10, MaxArgvBytes: 100, MaxEnv: 1, MaxEnvBytes: 100,
		MaxDirBytes: 100, MaxLabels: 1, MaxLabelKeyBytes: 10, MaxLabelValueBytes: 10})
	for _, tc := range []struct {
		mem, pids string // raw JSON; "" = absent
		wantMem   int64
		wantPids  int64
		err       string
	}{
		{"", "", config.NoLimit, config.NoLimit, ""},
		{"null", "null", config.NoLimit, config.NoLimit, ""},
		{`"32M"`, "20", 32 << 20, 20, ""},
		{"33554432", `"max"`, 32 << 20, config.NoLimit, ""},
		{`"max"`, "", config.NoLimit, config.NoLimit, ""},
		{`"12Q"`, "", 0, 0, `body: memory_max: "12Q" is not a size`},
		{`"-1"`, "", 0, 0, `body: memory_max: "-1" is not a size`},
		{"-1", "", 0, 0, `body: memory_max: -1 is not a size in bytes`},
		{"0", "", 0, 0, `body: memory_max: 0 is not a size in bytes`},
		{`""`, "", 0, 0, `body: memory_max: "" is not a size`},
		{"1.5", "", 0, 0, `body: memory_max: "1.5": want an integer or a string`},
		{"true", "", 0, 0, `body: memory_max: "true": want an integer or a string`},
		{"", "0", 0, 0, "body: pids_max: 0 is not a number of tasks from 1 to 4194304"},
		{"", "-1", 0, 0, "body: pids_max: -1 is not a number of tasks"},
		{"", `""`, 0, 0, `body: pids_max: "" is not an integer from 1 to 4194304 or "max"`},
		{"", `"20"`, 0, 0, `body: pids_max: "20" is not an integer`},
		{"", "1e3", 0, 0, `body: pids_max: "1e3": want an integer or a string`},
		{`"` + strings.Repeat("9", 500) + `"`, "", 0, 0, `body: memory_max: "99999`},
	} {
		req := api.JobRequest{Argv: []string{"a"}}
		if tc.mem != "" {
			req.MemoryMax = json.RawMessage(tc.mem)
		}
		if tc.pids != "" {
			req.PidsMax = json.RawMessage(tc.pids)
		}
		sub, err := parseJob(req, nil, Caller{UID: 1000}, 1, lim)
		code, msg := statusOf(err)
		switch {
		case tc.err == "" && (err != nil || sub.MemoryMax != tc.wantMem || sub.PidsMax != tc.wantPids):
			t.Errorf("memory_max %s pids_max %s: %d %d, %v; want %d %d", tc.mem, tc.pids, sub.MemoryMax, sub.PidsMax, err, tc.wantMem, tc.wantPids)
		case tc.err != "" && (code != http.StatusBadRequest || !strings.Contains(msg, tc.err)):
			t.Errorf("memory_max %s pids_max %s: %d %q, want a 400 containing %q", tc.mem, tc.pids, code, msg, tc.err)
		case len(msg) > 200:
			t.Errorf("memory_max %s: a %d-byte message echoes the field", tc.mem, len(msg))
		}
	}
}
