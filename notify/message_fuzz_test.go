//go:build linux

package notify

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParse: any datagram parses without panicking into a message whose
// status is printable, valid UTF-8 and bounded, whose MAINPID is a pid or
// flagged bad, and whose flags each come from their assignment.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"READY=1", "READY=1\nSTATUS=Listening on 8080\n", "WATCHDOG=1", "WATCHDOG=trigger",
		"STOPPING=1\nSTATUS=bye", "MAINPID=42", "MAINPID=-1", "MAINPID=99999999999999999999",
		"STATUS=\x1b[31mred\x00\xff", "=1", "ready=1", "READY", "\n\n\n", "FDSTORE=1\nFDNAME=x",
		"STATUS=" + strings.Repeat("é", 300), "READY=0\nREADY=1\nREADY=0",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Parse(b)
		if len(m.Status) > MaxStatus || !utf8.ValidString(m.Status) {
			t.Fatalf("status %q: longer than %d or not UTF-8", m.Status, MaxStatus)
		}
		for _, r := range m.Status {
			if unicode.IsControl(r) {
				t.Fatalf("status %q holds control character %U", m.Status, r)
			}
		}
		if m.MainPID < 0 || m.MainPID > 1<<22 || (m.MainPID > 0 && m.BadMainPID) {
			t.Fatalf("MAINPID %d bad=%v", m.MainPID, m.BadMainPID)
		}
		s := string(b)
		for _, c := range []struct {
			set  bool
			line string
		}{{m.Ready, "READY=1"}, {m.Stopping, "STOPPING=1"}, {m.Watchdog, "WATCHDOG=1"}, {m.WatchdogTrigger, "WATCHDOG=trigger"}, {m.Reloading, "RELOADING=1"}} {
			if c.set != hasLine(s, c.line) {
				t.Fatalf("%q: %s is %v", s, c.line, c.set)
			}
		}
		if m.HasStatus != hasPrefixLine(s, "STATUS=") {
			t.Fatalf("%q: HasStatus %v", s, m.HasStatus)
		}
	})
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func hasPrefixLine(s, prefix string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// TestParse: the messages services send, and what is made of the worst.
func TestParse(t *testing.T) {
	m := Parse([]byte("READY=1\nSTATUS=Accepting connections\nMAINPID=77\nFDSTORE=1\nbogus\n"))
	if !m.Ready || m.Status != "Accepting connections" || !m.HasStatus || m.MainPID != 77 || m.Ignored != 2 {
		t.Errorf("got %+v", m)
	}
	m = Parse([]byte("STATUS=a\x1b[2Jb\nc"))
	if m.Status != "a\uFFFD[2Jb" || m.Ignored != 1 {
		t.Errorf("escape: %+v", m)
	}
	m = Parse([]byte("STATUS=" + strings.Repeat("x", 1000)))
	if len(m.Status) != MaxStatus {
		t.Errorf("long status kept %d bytes", len(m.Status))
	}
	if m := Parse([]byte("READY=0\nWATCHDOG=2\nMAINPID=0")); m.Ready || m.Watchdog || !m.BadMainPID || m.MainPID != 0 {
		t.Errorf("bad values: %+v", m)
	}
}
