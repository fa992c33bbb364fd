//go:build linux

package config

import (
	"net"
	"strings"
	"testing"
)

// TestParseReady: every dialect read, every bad one refused naming what
// is wrong; a network probe only of the container itself.
func TestParseReady(t *testing.T) {
	ownAddrs = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)}}, nil
	}
	t.Cleanup(func() { ownAddrs = net.InterfaceAddrs })
	for _, tc := range []struct {
		in   string
		want Ready
		err  string // "" = accepted
	}{
		{"started", Ready{}, ""},
		{"exec:true", Ready{Exec: []string{"true"}}, ""},
		{"tcp:127.0.0.1:5432", Ready{TCP: "127.0.0.1:5432"}, ""},
		{"tcp:localhost:80", Ready{TCP: "localhost:80"}, ""},
		{"tcp:[::1]:80", Ready{TCP: "[::1]:80"}, ""},
		{"tcp:10.1.2.3:8080", Ready{TCP: "10.1.2.3:8080"}, ""},
		{"http://127.0.0.1:8080/healthz", Ready{HTTP: "http://127.0.0.1:8080/healthz"}, ""},
		{"http://localhost/", Ready{HTTP: "http://localhost/"}, ""},
		{"http://10.1.2.3:81/a?b=c", Ready{HTTP: "http://10.1.2.3:81/a?b=c"}, ""},
		{"tcp:8.8.8.8:53", Ready{}, "not loopback nor an address of this container"},
		{"tcp:example.com:80", Ready{}, "an IP address or localhost"},
		{"tcp:127.0.0.1", Ready{}, "is not HOST:PORT"},
		{"tcp:127.0.0.1:0", Ready{}, `port "0" is not 1-65535`},
		{"tcp:127.0.0.1:70000", Ready{}, "is not 1-65535"},
		{"tcp:127.0.0.1:http", Ready{}, "is not 1-65535"},
		{"http://10.9.9.9/", Ready{}, "not loopback nor an address"},
		{"http://u:p@127.0.0.1/", Ready{}, "no user info"},
		{"http://127.0.0.1:99999/", Ready{}, "1-65535"},
		{"https://127.0.0.1/", Ready{}, `is not "started", "exec:CMD", "fd:N", "tcp:HOST:PORT" or "http://HOST:PORT/PATH"`},
		{"ready", Ready{}, "is not \"started\""},
		{"fd:3", Ready{FD: 3}, ""},
		{"fd:255", Ready{FD: 255}, ""},
		{"fd:2", Ready{}, `"2" is not a number 3-255`},
		{"fd:256", Ready{}, "3-255"},
		{"fd:x", Ready{}, "3-255"},
	} {
		got, err := parseReady(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseReady(%q) = %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseReady(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (got.TCP != tc.want.TCP || got.HTTP != tc.want.HTTP || got.FD != tc.want.FD || len(got.Exec) != len(tc.want.Exec)):
			t.Errorf("parseReady(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if tc.err == "" && got.Polled() != (tc.in != "started") {
			t.Errorf("parseReady(%q).Polled() = %v", tc.in, got.Polled())
		}
	}
}
