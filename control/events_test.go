//go:build linux

package control

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/events"
)

// waitFor fails the test unless ch yields within 5 s.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestEventsStream(t *testing.T) {
	h := startServer(t, nil)
	resp, err := h.client(t).Get("http://tend/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/x-ndjson" {
		t.Fatalf("GET /v1/events = %d %s", resp.StatusCode, ct)
	}
	waitFor(t, h.hub.subscribed, "Subscribe")
	lines := bufio.NewScanner(resp.Body)
	job := running("j-1", 1000)
	for i, e := range []api.Event{
		{Seq: 1, Type: api.EventJobStarted, Job: &job},
		{Seq: 2, Type: api.EventServicePrefix + "running", Service: &api.Service{Name: "gateway"}},
		{Seq: 3, Type: api.EventOrphanReaped, PID: 99},
	} {
		h.hub.Publish(e) // each line must arrive before the next is sent: flushed per event
		if !lines.Scan() {
			t.Fatalf("event %d: stream ended: %v", i, lines.Err())
		}
		var got api.Event
		if err := json.Unmarshal(lines.Bytes(), &got); err != nil || got.Seq != e.Seq || got.Type != e.Type {
			t.Errorf("event %d = %s (%v), want seq %d %s", i, lines.Bytes(), err, e.Seq, e.Type)
		}
	}
	resp.Body.Close()
	waitFor(t, h.hub.canceled, "cancel after the client left")
}

func TestEventsVisible(t *testing.T) {
	mine, theirs := running("j-1", 1000), running("j-2", 1001)
	for _, tc := range []struct {
		caller Caller
		e      api.Event
		want   bool
	}{
		{Caller{UID: 1000}, api.Event{Type: api.EventJobExited, Job: &mine}, true},
		{Caller{UID: 1000}, api.Event{Type: api.EventJobExited, Job: &theirs}, false},
		{Caller{UID: 0}, api.Event{Type: api.EventJobExited, Job: &theirs}, true},
		{Caller{UID: 1000}, api.Event{Type: "service.stopped", Service: &api.Service{}}, true},
		{Caller{UID: 1000}, api.Event{Type: api.EventOrphanReaped, PID: 5}, true},
	} {
		if got := visible(tc.caller, tc.e); got != tc.want {
			t.Errorf("visible(uid %d, %s of uid %v) = %v, want %v", tc.caller.UID, tc.e.Type, tc.e.Job, got, tc.want)
		}
	}
}

// A subscriber that overflows is dropped by the source: its stream ends.
func TestEventsOverflowEndsStream(t *testing.T) {
	h := startServer(t, nil)
	resp, err := h.client(t).Get("http://tend/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitFor(t, h.hub.subscribed, "Subscribe")
	for i := range 10 * eventBuffer {
		h.hub.Publish(api.Event{Seq: uint64(i), Type: api.EventOrphanReaped})
	}
	lines := bufio.NewScanner(resp.Body)
	n := 0
	for lines.Scan() {
		n++
	}
	if lines.Err() != nil || n >= 10*eventBuffer {
		t.Errorf("overflowed stream: %d lines, %v; want fewer than %d and EOF", n, lines.Err(), 10*eventBuffer)
	}
}

// A reader that stops reading is cut off by the write deadline, even when
// the source keeps up: tend never waits for it.
func TestEventsSlowReaderCut(t *testing.T) {
	h := startServer(t, func(c *Config) { c.IOTimeout = 100 * time.Millisecond })
	c := h.dial(t)
	c.Write([]byte("GET /v1/events HTTP/1.1\r\nHost: tend\r\n\r\n"))
	waitFor(t, h.hub.subscribed, "Subscribe")
	job := running("j-1", 0)
	job.Labels = map[string]string{"pad": strings.Repeat("x", 64<<10)}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the source keeps publishing, slower than a buffer's worth
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond): // a buffer of events takes seconds
				h.hub.Publish(api.Event{Type: api.EventJobStarted, Job: &job})
			}
		}
	}()
	waitFor(t, h.hub.canceled, "the slow reader to be cut off")
}

// TestEventsDrainedOnClose: what a subscriber was sent before Close (a
// shutdown's last events) reaches it, then the stream ends cleanly;
// without EndEvents, Close cut the connection under a full buffer.
func TestEventsDrainedOnClose(t *testing.T) {
	hub := events.NewHub(events.Limits{})
	path := filepath.Join(t.TempDir(), "tend.sock")
	srv, err := Serve(Config{Path: path, Version: "test", Jobs: newFakeJobs(), Services: &fakeServices{healthy: true},
		Events: hub.Attach, EndEvents: hub.End,
		Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /v1/events HTTP/1.1\r\nHost: tend\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events: %v %v", resp, err)
	}
	const n = 1000 // under the 1024 a stream may fall behind
	for i := range n {
		hub.Publish(api.Event{Type: api.EventOrphanReaped, PID: i + 1})
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(time.Now().Add(5 * time.Second)) }()
	lines := bufio.NewScanner(resp.Body)
	got := 0
	for lines.Scan() {
		got++
	}
	if got != n || lines.Err() != nil {
		t.Errorf("%d events then %v, want all %d then the end of the stream", got, lines.Err(), n)
	}
	if err := waitFor(t, closed, "Close"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := hub.Subscribe(0, 1); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Subscribe after Close = %v, want a refusal naming the stop", err)
	}
}
