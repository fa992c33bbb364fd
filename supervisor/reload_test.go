//go:build linux

package supervisor

import (
	"slices"
	"testing"

	"github.com/tendinit/tend/config"
)

// A reload that changes [control] names each changed key as the file spells
// it, acronyms included (max_url_bytes, not max_urlbytes).
func TestFieldDiffNamesKeys(t *testing.T) {
	a := config.Control{MaxURLBytes: 8192, MaxParkedFDsPerUID: 192, ReadHeaderTimeout: 1}
	b := config.Control{MaxURLBytes: 4096, MaxParkedFDsPerUID: 100, ReadHeaderTimeout: 2}
	var keys []string
	for _, d := range fieldDiff(a, b) {
		keys = append(keys, d.key)
	}
	want := []string{"read_header_timeout", "max_url_bytes", "max_parked_fds_per_uid"}
	if !slices.Equal(keys, want) {
		t.Errorf("fieldDiff keys = %q, want %q", keys, want)
	}
}
