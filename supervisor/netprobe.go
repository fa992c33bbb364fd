//go:build linux

package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// netProbeTimeout bounds one tcp or http ready probe: a listener that
// accepts and never answers costs one attempt, not the readiness.
const netProbeTimeout = time.Second

// runNetProbe runs s's tcp or http ready probe once, off the loop, and
// posts its result: ready, or the next attempt after the backoff. One
// goroutine at most per run (netProbing), ended by its own timeout.
func (l *loop) runNetProbe(s *service) {
	gen, ready := s.gen, s.cfg.Ready
	s.netProbing = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), netProbeTimeout)
		defer cancel()
		var err error
		if ready.TCP != "" {
			err = probeTCP(ctx, ready.TCP)
		} else {
			err = probeHTTP(ctx, ready.HTTP)
		}
		l.post(func() {
			if s.gen != gen {
				return
			}
			s.netProbing = false
			if l.sd.active || s.state != stateStarting {
				return
			}
			if err == nil {
				l.ready(s)
				return
			}
			l.log.Debug("ready probe failed", "service", s.cfg.Name, "err", err)
			l.probeAgain(s)
		}, nil)
	}()
}

// probeTCP succeeds when addr accepts a connection.
func probeTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// probeTransport is the http probes' client: no proxy (a proxy from the
// environment would answer for the service), no keep-alive (a probe is one
// request), no redirects followed (a 3xx is an answer, as for Kubernetes).
var probeClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, MaxResponseHeaderBytes: 64 << 10},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// probeHTTP succeeds when a GET of url answers 200-399.
func probeHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "tend-probe")
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
