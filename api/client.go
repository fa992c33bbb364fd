//go:build linux

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultSocket is where clients look for tend when neither an explicit
// path nor $TEND_SOCKET names one.
const DefaultSocket = "/run/tend.sock"

// maxErrorBody bounds how much of an error answer the client reads: a
// message for a person, never a stream.
const maxErrorBody = 64 << 10

// baseURL is the URL prefix of every request. The host is a placeholder:
// the transport always dials the Unix socket, whatever the URL names.
const baseURL = "http://tend"

// Client talks to tend's control API over its Unix socket. It keeps idle
// connections open between calls (HTTP/1.1 keep-alive), so one Client is
// cheap to reuse for thousands of requests a second; it is safe for
// concurrent use. Requests that carry file descriptors, and bound jobs, use
// a connection of their own (see Spawn and SpawnBound).
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the tend listening on socket: "" means
// $TEND_SOCKET, or DefaultSocket when that is unset or empty.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = os.Getenv("TEND_SOCKET")
	}
	if socket == "" {
		socket = DefaultSocket
	}
	c := &Client{socket: socket}
	c.http = &http.Client{Transport: &http.Transport{
		// No Proxy: HTTP_PROXY in the environment must never send a
		// control request anywhere but the socket.
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	// No Client.Timeout: long polls and the event stream last as long as
	// their context allows.
	return c
}

// Socket returns the path of the socket the client dials.
func (c *Client) Socket() string { return c.socket }

// CloseIdle closes the connections kept open for reuse.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// dial opens a new connection to the socket.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // "connect: no such file or directory": the socket is named below
		}
		return nil, &UnreachableError{Socket: c.socket, Err: err}
	}
	return conn, nil
}

// UnreachableError is a failure to connect to tend's socket: no server
// there, or no permission to connect.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach tend at %s: %v", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// do sends one request on a pooled connection. A non-nil in is sent as the
// JSON body; a 2xx answer is decoded into out (when out is not nil), any
// other answer is returned as a *StatusError.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return err
	}
	return decodeBody(resp.Body, out)
}

// send sends one request on a pooled connection and returns the answer,
// whatever its status; the caller closes its body.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	req, err := newRequest(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var re *UnreachableError
		if errors.As(err, &re) {
			return nil, re // says all: the request never left
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop `Post "http://tend/..."`: the fake host says nothing
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// newRequest builds a request with a JSON body when in is not nil.
func newRequest(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// checkStatus turns a non-2xx answer into a *StatusError carrying the
// server's message: the "error" field of its JSON body, else the body's
// text, else the status text.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e Error
	msg := ""
	if json.Unmarshal(b, &e) == nil {
		msg = e.Error
	}
	if msg == "" {
		msg = strings.TrimSpace(string(b))
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &StatusError{Code: resp.StatusCode, Msg: msg}
}

// decodeBody reads a JSON answer into out, or discards the body when out is
// nil (so that the connection can be reused).
func decodeBody(body io.Reader, out any) error {
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("bad answer from tend: %w", err)
	}
	return nil
}
