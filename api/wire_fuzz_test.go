//go:build linux

package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
)

// FuzzWireTypes decodes arbitrary JSON into the request and record types:
// never a panic, and whatever decodes encodes and decodes again to the
// same bytes (the server and the client agree on every accepted value).
func FuzzWireTypes(f *testing.F) {
	f.Add([]byte(`{"argv":["ls"],"env":["A=1"],"dir":"/","labels":{"a":"b"},"timeout":"1s","bind":true,"user":"x","stdio":[0,2]}`), uint8(0))
	f.Add([]byte(`{"signal":"SIGKILL","tree":true,"kill":true}`), uint8(1))
	f.Add([]byte(`{"id":"j-1","pid":null,"state":"exited","exit_code":3,"signal":null,"started_at":"2024-01-01T00:00:00Z"}`), uint8(2))
	f.Add([]byte(`{"seq":1,"type":"job.exited","job":{"id":"j-2","exit_code":0},"code":null}`), uint8(3))
	f.Add([]byte(`{"version":"x","services":[{"name":"a","pid":5,"last_code":1}],"counters":{"reaped":9}}`), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		newV := []func() any{
			func() any { return &JobRequest{} }, func() any { return &SignalRequest{} },
			func() any { return &Job{} }, func() any { return &Event{} }, func() any { return &Status{} },
			func() any { return &Health{} },
		}
		mk := newV[int(kind)%len(newV)]
		v := mk()
		if json.Unmarshal(data, v) != nil {
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%T decoded from %q does not encode: %v", v, data, err)
		}
		again := mk()
		if err := json.Unmarshal(b, again); err != nil {
			t.Fatalf("%T: its own encoding %q does not decode: %v", v, b, err)
		}
		if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
			t.Fatalf("%T: %s then %s", v, b, b2)
		}
	})
}

// FuzzAnswer feeds the client arbitrary answers from "tend": a status code
// and a body, as a whole answer, a job list and an event stream. The client
// must never panic; a non-2xx answer is always a *StatusError with that
// code and a message; a bad body is an error, never a half-filled success.
func FuzzAnswer(f *testing.F) {
	f.Add(200, []byte(`{"id":"j-1","state":"running","pid":7}`))
	f.Add(404, []byte(`{"error":"no job j-9"}`))
	f.Add(503, []byte(`{"healthy":false,"not_ready":["gw"]}`))
	f.Add(429, []byte("queue full\n"))
	f.Add(500, []byte(``))
	f.Add(200, []byte(`[{"id":"j-1"},{"id":"j-2"}]`))
	f.Add(200, []byte(`{"jobs":[{"id":"j-1"}]}`))
	f.Add(200, []byte("{\"seq\":1,\"type\":\"job.started\"}\n\n{\"seq\":2}\n{bad"))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if http.StatusText(code) == "" {
			// Not a status tend (or net/http) ever sends; the message would
			// be empty for an empty body, a cosmetic matter.
			return
		}
		resp := &http.Response{StatusCode: code, Body: io.NopCloser(bytes.NewReader(body))}
		err := checkStatus(resp)
		if code < 200 || code >= 300 {
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code || se.Msg == "" {
				t.Fatalf("answer %d %q: checkStatus = %#v, want a *StatusError %d with a message", code, body, err, code)
			}
		} else if err != nil {
			t.Fatalf("answer %d: checkStatus = %v", code, err)
		}
		var j Job
		if err := decodeBody(bytes.NewReader(body), &j); err == nil && !json.Valid(body) && len(bytes.TrimSpace(body)) > 0 {
			// json.Decoder reads one value: trailing bytes are not its business.
			var probe json.RawMessage
			if json.NewDecoder(bytes.NewReader(body)).Decode(&probe) != nil {
				t.Fatalf("decodeBody(%q) accepted a body with no JSON value", body)
			}
		}
		if jobs, err := decodeJobList(json.RawMessage(body)); err == nil && !json.Valid(body) {
			t.Fatalf("decodeJobList(%q) = %v, nil on invalid JSON", body, jobs)
		}
		// The event stream: every call returns an event, an error for one
		// bad line, or io.EOF once the body ends, within lines+1 calls.
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
		s := &EventStream{body: io.NopCloser(bytes.NewReader(nil)), sc: sc}
		calls := bytes.Count(body, []byte("\n")) + 2
		for i := 0; ; i++ {
			if i == calls {
				t.Fatalf("event stream %q: no io.EOF after %d calls of Next", body, calls)
			}
			if _, err := s.Next(); errors.Is(err, io.EOF) {
				break
			}
		}
	})
}
