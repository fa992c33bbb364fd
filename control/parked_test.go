//go:build linux

package control

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// pipeFDs returns n fresh fds (pipe ends) for passing.
func pipeFDs(t *testing.T, n int) []int {
	t.Helper()
	var fds []int
	for len(fds) < n {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, p[:]...)
	}
	for _, fd := range fds[n:] {
		unix.Close(fd)
	}
	return fds[:n]
}

// TestParkedFDsBounded: fds pending on connections count per uid and in
// all; beyond either limit the batch is closed and the connection's next
// request refused, 429 for the uid's share and 503 for tend's, naming the
// setting; claiming or closing gives the count back.
func TestParkedFDsBounded(t *testing.T) {
	p := newParked(Limits{MaxParkedFDs: 9, MaxParkedFDsPerUID: 6})
	conns := func(uid int) *conn { return &conn{closeFDs: closeNow, caller: Caller{UID: uid}, parked: p} }
	a1, a2, a3 := conns(1000), conns(1000), conns(1000)
	a1.collect(unix.UnixRights(pipeFDs(t, 3)...), 0)
	a2.collect(unix.UnixRights(pipeFDs(t, 3)...), 0)
	if total, mine := p.held(1000); total != 6 || mine != 6 || a1.badReason() != "" || a2.badReason() != "" {
		t.Fatalf("two batches of 3: held %d/%d, bad %q %q", total, mine, a1.badReason(), a2.badReason())
	}
	a3.collect(unix.UnixRights(pipeFDs(t, 1)...), 0)
	if why := a3.badReason(); a3.badStatus() != http.StatusTooManyRequests || !strings.Contains(why, "[control] max_parked_fds_per_uid is 6") {
		t.Errorf("uid over its share: %d %q, want a 429 naming max_parked_fds_per_uid", a3.badStatus(), why)
	}
	b1, b2 := conns(1001), conns(1001)
	b1.collect(unix.UnixRights(pipeFDs(t, 3)...), 0)
	b2.collect(unix.UnixRights(pipeFDs(t, 1)...), 0)
	if why := b2.badReason(); b1.badReason() != "" || b2.badStatus() != http.StatusServiceUnavailable || !strings.Contains(why, "[control] max_parked_fds is 9") {
		t.Errorf("tend full: %q, then %d %q; want the first taken, a 503 naming max_parked_fds", b1.badReason(), b2.badStatus(), why)
	}
	if files := a1.take(); len(files) != 3 {
		t.Fatalf("take = %v", files)
	} else {
		closeNow(files...)
	}
	a2.release()
	if total, mine := p.held(1000); total != 3 || mine != 0 {
		t.Errorf("after a claim and a close: held %d in all, %d of uid 1000; want 3 and 0", total, mine)
	}
	b1.release()
	if total, _ := p.held(0); total != 0 {
		t.Errorf("every connection gone: %d fds still counted", total)
	}
}
