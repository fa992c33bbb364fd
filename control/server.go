//go:build linux

// Package control is tend's control API: HTTP/1.1 and JSON on a Unix socket
// (DESIGN.md §5). It owns the socket, the peer credentials and passed fds of
// each connection, authorization and the wire format; the jobs manager and
// the supervisor own all state. It must never block tend: every write has a
// deadline, and a panic in a handler is answered with a 500, never a crash.
package control

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// DefaultIOTimeout is the one Config field's default that is no setting
// (the settings' defaults are config's).
const (
	DefaultIOTimeout = 10 * time.Second
)

// Jobs is the jobs side of the backend: the supervisor's loop, which owns
// every record. Errors that are an *api.StatusError are answered with their
// code; others with 500.
type Jobs interface {
	// Submit starts or queues a job; it owns req.Files from the call on.
	Submit(ctx context.Context, req Submit) (api.Job, error)
	Get(c Caller, id string) (api.Job, error)
	// List returns a page of the jobs c may see, newest first, and the
	// id to list after for the next page ("" when this is the last).
	List(c Caller, q ListQuery) (page []api.Job, next string, err error)
	// Wait returns the record once the job exited, or ctx's error.
	Wait(ctx context.Context, c Caller, id string, conn uint64) (api.Job, error)
	Signal(c Caller, id string, req JobSignal) error
	// PidFD opens a new pidfd of running job id's process, the caller's
	// to keep, where tend can name that process safely (its own child,
	// unreaped); an error otherwise.
	PidFD(c Caller, id string) (int, error)
	// ConnClosed says connection conn is gone: jobs bound to it die.
	ConnClosed(conn uint64)
	// Counters fills the jobs' counters (JobsStarted and the rest).
	Counters() api.Counters
}

// ListQuery is one GET /v1/jobs, validated: the labels a job must carry,
// the id to list after ("" = from the newest), at most Limit jobs (>= 1).
type ListQuery struct {
	Labels map[string]string
	PID    int // > 0: only records of jobs that ran as this pid
	After  string
	Limit  int
}

// Metrics is what GET /v1/metrics reports of the supervisor, taken at
// once (tend's own process figures are read by the handler).
type Metrics struct {
	Reaped, Orphans uint64
	// ZombieParents and Zombies are what the last scan found (a scan is
	// made for the metrics when none is a second old).
	ZombieParents, Zombies int
	// ZombieTop are the parents holding the most, at most MaxZombieSeries.
	ZombieTop []api.ZombieParent
	Jobs      api.Counters
	JobsEnded map[string]uint64 // by reason
	Services  []api.Service
	Stopping  bool
}

// MaxZombieSeries bounds the per-parent series of GET /v1/metrics: a
// container full of such parents must not make the answer unbounded.
const MaxZombieSeries = 20

// Services is the supervisor as the API uses it.
type Services interface {
	Services() []api.Service
	// ServiceOp runs op ("signal", "restart", "stop" or "start"; sig only
	// for "signal") on the service name.
	ServiceOp(name, op string, sig unix.Signal) error
	Health(level string) api.Health // level: api.HealthAlive or api.HealthReady
	// Reload re-reads the config file and applies what changed; an error
	// (a bad file, a refused change) changes nothing.
	Reload() (api.Reload, error)
	// Metrics is one consistent snapshot for GET /v1/metrics.
	Metrics() Metrics
	// Zombies scans for live processes holding zombies (at most once a
	// second, however many ask), those c may see: its own uid's, all for
	// root.
	Zombies(c Caller) []api.ZombieParent
	Stopping() bool
	Reaped() (total, orphans uint64)
	// PidsReserve is the units' shared pids cgroup, fixed at start; nil
	// where tend keeps no reserve.
	PidsReserve() *api.PidsReserve
}

// Subscribe subscribes uid to tend's events with room for buffer of them,
// or refuses with an *api.StatusError naming the limit (subscribers in all,
// or uid's). The channel is closed when the subscriber fell behind
// (overflowed then reports true) or the source stopped; cancel unsubscribes
// and is idempotent. For an events.Hub: s, err := hub.Subscribe(uid, n);
// then s.C, s.Overflowed, s.Close.
type Subscribe func(uid, buffer int) (events <-chan *api.Event, overflowed func() bool, cancel func(), err error)

// Config configures Serve.
type Config struct {
	Path    string      // the socket's path
	Mode    os.FileMode // its permission bits; 0 = 0600
	Group   string      // its group, a name or gid; "" = tend's, no chown
	Version string      // shown by GET /v1/status

	Jobs     Jobs
	Services Services
	Events   Subscribe
	// EndEvents, when set, ends every event subscription (their channels
	// close) and refuses new ones; Close calls it first and lets the
	// streams write what they hold before it closes the connections.
	EndEvents func()
	Log       *slog.Logger
	// CloseFDs closes passed fds nobody claimed, without blocking the
	// caller (blocking.Closer.Close); nil closes them at once.
	CloseFDs func(fds ...int)

	// Limits bound what callers may send and hold; the zero Limits is
	// DefaultLimits.
	Limits Limits

	ReadHeaderTimeout time.Duration // a request head not read this long closes its connection; 0 = config's default
	IdleTimeout       time.Duration // between requests; 0 = config.DefaultIdleTimeout
	IOTimeout         time.Duration // for each request body, response and event line; 0 = 10s

	// MaxConnections and MaxConnectionsPerUID bound the connections open
	// at once, overall and per peer uid (root and tend's uid may go
	// Limits.ReservedConnections beyond MaxConnections); 0 = config's
	// defaults.
	MaxConnections       int
	MaxConnectionsPerUID int
}

// Server is a running control API.
type Server struct {
	cfg    Config
	ln     *Listener
	http   *http.Server
	uid    int           // tend's own uid: may control services
	served chan struct{} // closed when http.Server.Serve returned
	parked *parked       // passed fds pending on every connection
	// conns counts connections between StateNew and StateClosed; handlers
	// run on their connection's goroutine, so it counts them too.
	conns sync.WaitGroup

	smu      sync.Mutex
	nstreams int           // guarded by smu; event streams subscribed or about to be
	sidle    chan struct{} // guarded by smu; closed when nstreams drops to 0
}

type connKey struct{}

// Serve listens on cfg.Path (see Listen) and serves the API in a goroutine
// until Close.
func Serve(cfg Config) (*Server, error) {
	if cfg.Jobs == nil || cfg.Services == nil || cfg.Events == nil || cfg.Log == nil {
		return nil, errors.New("control: Config needs Jobs, Services, Events and Log")
	}
	cfg = withDefaults(cfg)
	ln, err := Listen(cfg.Path, cfg.Mode, cfg.Group)
	if err != nil {
		return nil, err
	}
	ln.closeFDs = cfg.CloseFDs
	ln.log = cfg.Log
	ln.uid = os.Getuid()
	ln.admit = newAdmission(cfg.MaxConnections, cfg.MaxConnectionsPerUID, cfg.Limits.ReservedConnections)
	ln.answers = newHeadAnswers(cfg.Limits.MaxHeaderBytes, cfg.ReadHeaderTimeout)
	if ln.ViaPath() {
		cfg.Log.Warn("no /proc: the control socket was bound by its path inside tend's private directory, not through its fd", "socket", cfg.Path)
	}
	s := &Server{cfg: cfg, ln: ln, uid: os.Getuid(), served: make(chan struct{}), parked: newParked(cfg.Limits)}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		// No ReadTimeout or WriteTimeout: they would cut long polls, event
		// streams and bound connections. Handlers set their own deadlines.
		MaxHeaderBytes: cfg.Limits.MaxHeaderBytes, // beyond, net/http's 431 (conn.Write puts tend's in its place)
		// Recovered panics and the like: tolerated failures. Accept's
		// EMFILE never gets here: Listener.Accept retries it itself.
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: s.connState,
	}
	go func() {
		defer close(s.served)
		defer s.recoverLog("serve")
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("control socket stopped", "err", err)
		}
	}()
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Mode == 0 {
		cfg.Mode = config.DefaultMode
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	cfg.Limits = cfg.Limits.withRequestDefaults()
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = config.DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = config.DefaultIdleTimeout
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = config.DefaultMaxConnections
	}
	if cfg.MaxConnectionsPerUID <= 0 {
		cfg.MaxConnectionsPerUID = config.DefaultMaxConnectionsPerUID
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = DefaultIOTimeout
	}
	return cfg
}

// connState tracks connections and, when one ends, tells the jobs manager
// (bound jobs die) and closes the fds nobody claimed. It runs on net/http's
// goroutines, which do not recover panics in hooks.
func (s *Server) connState(nc net.Conn, state http.ConnState) {
	defer s.recoverLog("conn state")
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	switch state {
	case http.StateNew:
		s.conns.Add(1)
		// Before the connection's first read: net/http runs this hook
		// on the accepting goroutine, then starts the connection's.
		c.parked = s.parked
	case http.StateClosed, http.StateHijacked:
		defer s.conns.Done()
		c.release()
		s.cfg.Jobs.ConnClosed(c.id)
	}
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.ln.Path() }

// Close stops listening, removes the socket, closes every connection (which
// cancels the requests on them) and waits for the handlers until deadline.
//
// With Config.EndEvents, the event streams are ended first and given half
// the time to the deadline to write what they hold: the last events of a
// shutdown (shutdown.forced, the final job.exited) reach a subscriber
// instead of dying in a buffer when the connection is cut.
func (s *Server) Close(deadline time.Time) error {
	if s.cfg.EndEvents != nil {
		s.cfg.EndEvents()
		t := time.NewTimer(time.Until(deadline) / 2)
		select {
		case <-s.streamsIdle():
			// Their handlers have returned; net/http writes the end of
			// each chunked stream after that: let it, briefly, before
			// cutting the connections (CI saw an unexpected EOF).
			ctx, cancel := context.WithTimeout(context.Background(), min(time.Until(deadline)/4, streamFinish))
			_ = s.http.Shutdown(ctx)
			cancel()
		case <-t.C:
		}
		t.Stop()
	}
	err := s.http.Close()
	// Also close it ourselves: a Close that comes before Serve has started
	// makes Serve return without closing the listener.
	if lerr := s.ln.Close(); err == nil && !errors.Is(lerr, net.ErrClosed) {
		err = lerr
	}
	<-s.served // Serve returns promptly once the listener is closed
	// No StateNew can come now, so Wait cannot race with Add.
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		err = errors.Join(err, errors.New("control: handlers still running at the deadline"))
	}
	return err
}

// streamFinish bounds the wait for net/http to end the drained event
// streams' responses (and any other request in flight) at Close.
const streamFinish = 100 * time.Millisecond

// streamStart counts an event stream before it subscribes, so that one
// subscribed before EndEvents is always waited for.
func (s *Server) streamStart() {
	s.smu.Lock()
	s.nstreams++
	s.smu.Unlock()
}

// streamEnd uncounts an event stream.
func (s *Server) streamEnd() {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.nstreams--; s.nstreams == 0 && s.sidle != nil {
		close(s.sidle)
		s.sidle = nil
	}
}

// streamsIdle is closed once no event stream is left.
func (s *Server) streamsIdle() <-chan struct{} {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.nstreams == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if s.sidle == nil {
		s.sidle = make(chan struct{})
	}
	return s.sidle
}

// recoverLog logs a panic instead of letting it end tend.
func (s *Server) recoverLog(where string) {
	if v := recover(); v != nil {
		s.cfg.Log.Error("panic in control server", "where", where, "panic", v)
	}
}
