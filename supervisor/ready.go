//go:build linux

package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/tendinit/tend/spawn"
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
		err := netProbe(ctx, ready.Probe)
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

// probeClient is the http probes' client: no proxy (a proxy from the
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

// notifyFD gives a run of s with ready = "fd:N" its notification pipe: the
// write end goes to the child as fd N (files grows to hold it, the gap
// closed), the read end is read off the loop until a newline, which makes
// the run ready (s6's and dinit's notification fd). EOF first means the
// service closed it without saying ready: ready_timeout decides. A fd that
// tend inherited at N would be replaced by it: refused.
func (l *loop) notifyFD(s *service, files []uintptr) ([]uintptr, *os.File, error) {
	n := s.cfg.Ready.FD
	if spawn.IsInherited(n) {
		return nil, nil, fmt.Errorf("ready = \"fd:%d\": tend inherited fd %d, which it passes on at that number: choose another", n, n)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	for len(files) <= n {
		files = append(files, ^uintptr(0)) // closed in the child
	}
	files[n] = w.Fd()
	gen := s.gen
	s.notified = false
	go func() {
		defer r.Close()
		buf := make([]byte, 256)
		for {
			k, err := r.Read(buf)
			if bytes.IndexByte(buf[:k], '\n') >= 0 {
				l.post(func() { l.notifyReady(s, gen) }, nil)
				return
			}
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					l.post(func() {
						if s.gen == gen {
							l.log.Warn("the notification fd was closed without a newline: not ready", "service", s.cfg.Name, "fd", n)
						}
					}, nil)
				}
				return
			}
		}
	}()
	s.notifyR = r
	return files, w, nil
}

// notifyReady is the newline on s's notification fd of run gen.
func (l *loop) notifyReady(s *service, gen int) {
	if s.gen == gen {
		l.saidReady(s)
	}
}

// saidReady is the current run of s saying it is ready (a newline on its
// notification fd, READY=1).
func (l *loop) saidReady(s *service) {
	if l.sd.active || s.state != stateStarting {
		return
	}
	if s.unit == nil || !s.unit.started {
		s.notified = true // before its helper said it runs: afterStart decides
		return
	}
	l.ready(s)
}

// closeNotify stops reading s's notification fd (its run ended).
func (l *loop) closeNotify(s *service) {
	if s.notifyR != nil {
		s.notifyR.Close()
		s.notifyR = nil
	}
}
