//go:build linux

package control

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/tendinit/tend/api"
)

// eventBuffer is how many events a subscriber may fall behind before the
// source drops it: a pointer each, 8 KiB a subscriber.
const eventBuffer = 1024

// events answers GET /v1/events: NDJSON, one api.Event a line, flushed as
// each comes. It ends when the client leaves, when the subscriber fell
// behind (a slow reader: the source closed its channel) or when a write
// does not complete within IOTimeout: tend never waits for a reader. The
// streams open at once are capped in all and per uid (the source refuses
// beyond, naming the setting).
func (s *Server) events(w http.ResponseWriter, r *http.Request, c *conn) {
	s.streamStart()
	defer s.streamEnd()
	ch, overflowed, cancel, err := s.cfg.Events(c.caller.UID, eventBuffer)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer cancel()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.IOTimeout))
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-ch:
			if !ok {
				s.cfg.Log.Debug("event stream ended", "pid", c.caller.PID, "overflowed", overflowed())
				return
			}
			if visible(c.caller, *e) {
				_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.IOTimeout))
				if enc.Encode(e) != nil || rc.Flush() != nil {
					s.cfg.Log.Debug("event stream cut: slow or gone reader", "pid", c.caller.PID)
					return
				}
			}
			if overflowed() { // a source that keeps the channel open
				s.cfg.Log.Debug("event stream ended: reader fell behind", "pid", c.caller.PID)
				return
			}
		}
	}
}

// visible says whether c may see e: root sees everything, anyone else the
// events of its own jobs and every service and orphan event.
func visible(c Caller, e api.Event) bool {
	return e.Job == nil || c.Root() || e.Job.UID == c.UID
}
