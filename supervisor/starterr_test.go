//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/spawn"
)

// TestStartErrorBlamesTendForFDs: EMFILE and ENFILE anywhere in a start
// (an ExecError from the child's execve or tend's pipe, a wrapped errno)
// are a 503 naming tend's fd limit; a missing command stays a 422.
func TestStartErrorBlamesTendForFDs(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		want string
	}{
		{"exec EMFILE", &spawn.ExecError{Path: "/usr/bin/true", Err: unix.EMFILE}, http.StatusServiceUnavailable, "RLIMIT_NOFILE"},
		{"dir EMFILE", &spawn.ExecError{Path: "true", Err: fmt.Errorf("working directory /: %w", unix.EMFILE)}, http.StatusServiceUnavailable, "tend is out of file descriptors"},
		{"helper ENFILE", fmt.Errorf("unit helper: %w", unix.ENFILE), http.StatusServiceUnavailable, "fs.file-max"},
		{"not found", &spawn.ExecError{Path: "nope", Err: unix.ENOENT}, http.StatusUnprocessableEntity, "exec nope"},
	} {
		var se *api.StatusError
		if err := startError(tc.err); !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(se.Msg, tc.want) {
			t.Errorf("%s: startError(%v) = %v, want a %d naming %q", tc.name, tc.err, err, tc.code, tc.want)
		}
	}
}
