//go:build linux

// Package notify is tend's side of systemd's sd_notify protocol
// (sd_notify(3)): a datagram socket per service, whose path the service
// gets as $NOTIFY_SOCKET, and the parser of what it sends. It knows nothing
// of services: whose datagram it is, and what it changes, is the
// supervisor's to decide from the sender's credentials it reports.
package notify

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDatagram is the largest datagram read whole; a longer one is
// truncated by the kernel and ignored (systemd's own messages are a few
// dozen bytes).
const MaxDatagram = 4096

// MaxStatus is how many bytes of STATUS= are kept: enough for a line in
// `tend status`, little enough that a chatty service costs nothing.
const MaxStatus = 256

// Message is what one datagram said. Unknown and malformed assignments are
// ignored, as systemd does; the last of a repeated key wins.
type Message struct {
	Ready     bool // READY=1
	Reloading bool // RELOADING=1
	Stopping  bool // STOPPING=1
	Watchdog  bool // WATCHDOG=1: a ping
	// WatchdogTrigger is WATCHDOG=trigger: the service asks to be treated
	// as if its watchdog had expired.
	WatchdogTrigger bool
	// Status is STATUS= made printable (HasStatus: the key was sent, even
	// empty, which clears it): control characters and invalid UTF-8 become
	// U+FFFD, at most MaxStatus bytes.
	Status    string
	HasStatus bool
	// MainPID is MAINPID= when it is a pid (> 0); BadMainPID: it was sent
	// and is not one.
	MainPID    int
	BadMainPID bool
	// Ignored counts the assignments that were not understood.
	Ignored int
}

// Parse reads a datagram: newline-separated KEY=VALUE assignments. It never
// fails: what it cannot read it counts in Ignored.
func Parse(b []byte) Message {
	var m Message
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		if len(line) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte{'='})
		if !ok || !validKey(k) {
			m.Ignored++
			continue
		}
		switch string(k) {
		case "READY":
			m.Ready = m.Ready || string(v) == "1"
		case "RELOADING":
			m.Reloading = m.Reloading || string(v) == "1"
		case "STOPPING":
			m.Stopping = m.Stopping || string(v) == "1"
		case "WATCHDOG":
			switch string(v) {
			case "1":
				m.Watchdog = true
			case "trigger":
				m.WatchdogTrigger = true
			default:
				m.Ignored++
			}
		case "STATUS":
			m.Status, m.HasStatus = printable(v), true
		case "MAINPID":
			n, err := strconv.Atoi(string(v))
			if err != nil || n <= 0 || n > 1<<22 {
				m.BadMainPID, m.MainPID = true, 0
			} else {
				m.MainPID, m.BadMainPID = n, false
			}
		default:
			m.Ignored++ // ERRNO=, FDSTORE=, EXTEND_TIMEOUT_USEC=, ...: not for tend
		}
	}
	return m
}

// validKey: sd_notify keys are upper-case ASCII letters, digits and '_'.
func validKey(k []byte) bool {
	if len(k) == 0 || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// printable makes a status text safe to print on one line and bounded: it
// comes from the service, and ends up in logs and terminals.
func printable(v []byte) string {
	var sb strings.Builder
	for len(v) > 0 {
		r, size := utf8.DecodeRune(v)
		v = v[size:]
		if r == utf8.RuneError || unicode.IsControl(r) {
			r = utf8.RuneError
		}
		if sb.Len()+utf8.RuneLen(r) > MaxStatus {
			break
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
