//go:build linux

package control

import (
	"fmt"
	"net/http"
	"sync"
)

// parked counts the passed fds that connections hold for requests not
// handled yet (conn.pending), in all and per uid: without it, a caller
// opening many connections that each carry fds it never claims (on a wait
// or an unread request) fills tend's fd table, and root's next job fails to
// start. An fd stops counting once POST /v1/jobs claims it (the job queue
// bounds what is held after) or it is closed.
type parked struct {
	max, perUID int // [control] max_parked_fds, max_parked_fds_per_uid

	mu    sync.Mutex
	total int         // guarded by mu
	byUID map[int]int // guarded by mu; > 0 entries only
}

func newParked(lim Limits) *parked {
	return &parked{max: lim.MaxParkedFDs, perUID: lim.MaxParkedFDsPerUID, byUID: make(map[int]int)}
}

// hold counts n more fds of uid, or refuses them with the status and the
// message that name the limit: a 503 when tend holds max_parked_fds (its
// resource), a 429 when uid holds its share. A nil p has no limits.
func (p *parked) hold(uid, n int) (code int, why string) {
	if p == nil || n == 0 {
		return 0, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total+n > p.max {
		return http.StatusServiceUnavailable, fmt.Sprintf(
			"tend holds %d passed fds for requests not handled yet, the limit ([control] max_parked_fds is %d): try again later", p.total, p.max)
	}
	if mine := p.byUID[uid]; mine+n > p.perUID {
		return http.StatusTooManyRequests, fmt.Sprintf(
			"uid %d has %d passed fds waiting for their requests, the limit ([control] max_parked_fds_per_uid is %d): only POST /v1/jobs claims them", uid, mine, p.perUID)
	}
	p.total += n
	p.byUID[uid] += n
	return 0, ""
}

// release stops counting n fds of uid.
func (p *parked) release(uid, n int) {
	if p == nil || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total -= n
	if p.byUID[uid] -= n; p.byUID[uid] <= 0 {
		delete(p.byUID, uid)
	}
}

// held is how many fds are counted, in all and for uid.
func (p *parked) held(uid int) (total, mine int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.byUID[uid]
}
