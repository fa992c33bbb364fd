//go:build linux

package events

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// go.uber.org/goleak is not in go.mod, so this is its VerifyTestMain in
// small: after the tests, every goroutine that did not exist before them
// must end within a few seconds, except the standard library's signal
// goroutines.

func TestMain(m *testing.M) {
	before := goroutineIDs()
	code := m.Run()
	if code == 0 {
		if leaks := leaked(before, 5*time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// stacks returns every goroutine's stack but the caller's.
func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	all := strings.Split(string(bytes.TrimSpace(buf)), "\n\n")
	return all[1:] // the first is the current goroutine
}

func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for _, s := range stacks() {
		ids[strings.SplitN(s, " [", 2)[0]] = true
	}
	return ids
}

// leaked waits up to d for the goroutines not in before to end and returns
// the stacks of those that did not.
func leaked(before map[string]bool, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		var out []string
		for _, s := range stacks() {
			if before[strings.SplitN(s, " [", 2)[0]] || strings.Contains(s, "os/signal.") ||
				strings.Contains(s, "runtime.ensureSigM") {
				continue
			}
			out = append(out, s)
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return strings.Join(out, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
