//go:build linux

package control

import (
	"net/http"
	"testing"
	"time"
)

// 500 connections that never send anything, and 500 more left idle after a
// request, do not stop anyone else from being served; Close ends them all.
// (All are root's: the limits are raised above them.)
func TestManyIdleConnections(t *testing.T) {
	h := startServer(t, func(c *Config) { c.MaxConnections, c.MaxConnectionsPerUID = 1100, 1100 })
	for range 500 {
		h.dial(t) // silent: waiting for its first header
	}
	idle := h.client(t)
	idle.Transport.(*http.Transport).MaxIdleConnsPerHost = 500
	done := make(chan error, 500)
	for range 500 {
		go func() {
			resp, err := idle.Get("http://tend/v1/health")
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
	}
	for range 500 {
		if err := <-done; err != nil {
			t.Fatalf("one of 500 concurrent requests: %v", err)
		}
	}
	start := time.Now()
	for range 20 {
		if code, body := h.do(t, "GET", "/v1/status", ""); code != http.StatusOK {
			t.Fatalf("with 1000 idle connections: GET /v1/status = %d %s", code, body)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 requests took %v with 1000 idle connections", d)
	}
}
