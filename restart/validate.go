//go:build linux

package restart

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// maxExitCode is the largest exit code a process can report (wait(2) keeps
// 8 bits).
const maxExitCode = 255

// Validate reports every value of p that New would silently normalise or that
// is probably a mistake: an unknown Mode, a negative duration, a BackoffMax
// below Backoff, a code outside 0-255, or a code in both lists. The config
// package calls it so a bad file is refused before anything starts.
func (p Policy) Validate() error {
	var errs *multierror.Error
	switch p.Mode {
	case "", ModeAlways, ModeOnFailure, ModeNever:
	default:
		errs = multierror.Append(errs, fmt.Errorf("restart %q: want %s, %s or %s", p.Mode, ModeAlways, ModeOnFailure, ModeNever))
	}
	if p.Backoff < 0 {
		errs = multierror.Append(errs, fmt.Errorf("backoff %v: negative", p.Backoff))
	}
	if p.BackoffMax < p.Backoff {
		errs = multierror.Append(errs, fmt.Errorf("backoff_max %v: below backoff %v", p.BackoffMax, p.Backoff))
	}
	if p.Window < 0 {
		errs = multierror.Append(errs, fmt.Errorf("restart_window %v: negative", p.Window))
	}
	for _, list := range []struct {
		key   string
		codes []int
	}{{"restart_now", p.RestartNow}, {"never_restart", p.NeverRestart}} {
		for _, code := range list.codes {
			if code < 0 || code > maxExitCode {
				errs = multierror.Append(errs, fmt.Errorf("%s: code %d outside 0-%d", list.key, code, maxExitCode))
			}
		}
	}
	for _, code := range p.NeverRestart {
		for _, now := range p.RestartNow {
			if code == now {
				errs = multierror.Append(errs, fmt.Errorf("code %d is in both restart_now and never_restart", code))
			}
		}
	}
	if errs != nil {
		errs.ErrorFormat = oneLine
	}
	return errs.ErrorOrNil()
}

// oneLine formats a multierror on one line, so it fits one slog record.
func oneLine(errs []error) string {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}
