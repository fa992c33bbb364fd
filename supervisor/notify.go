//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/notify"
	"github.com/tendinit/tend/reaper"
	"github.com/tendinit/tend/spawn"
	"github.com/tendinit/tend/unit/cgroup"
)

// notifier is the NOTIFY_SOCKET of one service with ready = "notify", for
// its whole life, and the goroutine that reads it. The reader checks each
// sender against the current run (member, set by the loop) and gathers
// what was said into news, which the loop takes in one post at a time: a
// service that floods its socket costs the loop one callback per batch.
type notifier struct {
	sock   *notify.Socket
	member atomic.Pointer[member] // nil: no run, nobody may speak

	mu     sync.Mutex
	news   notifyNews
	posted bool // a post of news is on its way to the loop
}

// member says which processes are a run's: the unit's process group
// (group), the unit helper's descendants (subreaper), or its cgroup.
type member struct {
	u      *unit
	track  config.Track
	leader int // group: the command, leader of the unit's process group
	helper int // subreaper: the unit helper
	cg     *cgroup.Group
}

// notifyNews is what a run's processes said since the loop last looked.
type notifyNews struct {
	u                         *unit
	ready, stopping, watchdog bool
	trigger                   bool
	status                    string
	hasStatus                 bool
	mainPID                   int
	refused                   int
	why                       string // of the last refusal
	lastPid                   int    // of the last refused sender
}

// notifyDir makes the directory of the NOTIFY_SOCKETs, under /run when it
// is writable (else the temp dir): 0700 until every socket is made.
func notifyDir() (string, error) {
	base := "/run"
	if unix.Access(base, unix.W_OK|unix.X_OK) != nil {
		base = os.TempDir()
	}
	return os.MkdirTemp(base, "tend-notify-")
}

// makeNotifier gives s, if its ready is "notify", its socket, owned by the
// service's uid (sendto(2) needs write permission on the socket file:
// nobody else's process can send), and its environment NOTIFY_SOCKET (and
// WATCHDOG_USEC). The directory is 0711: it can be crossed to the
// sockets, not listed.
func (l *loop) makeNotifier(s *service) error {
	if !s.cfg.Ready.Notify {
		return nil
	}
	if l.notifyDir == "" {
		dir, err := notifyDir()
		if err == nil {
			err = os.Chmod(dir, 0o711)
		}
		if err != nil {
			return fmt.Errorf("the NOTIFY_SOCKET directory: %w", err)
		}
		l.notifyDir = dir
	}
	uid, gid := 0, 0
	if c := s.spec.Cred; c != nil {
		uid, gid = int(c.Uid), int(c.Gid)
	}
	l.notifySeq++
	sock, err := notify.Listen(filepath.Join(l.notifyDir, strconv.Itoa(l.notifySeq)), uid, gid)
	if err != nil {
		return fmt.Errorf("service %q: %w", s.cfg.Name, err)
	}
	s.notifier = &notifier{sock: sock}
	s.spec.Env = spawn.SetEnv(s.spec.Env, "NOTIFY_SOCKET", sock.Path)
	if s.cfg.Watchdog > 0 {
		s.spec.Env = spawn.SetEnv(s.spec.Env, "WATCHDOG_USEC", strconv.FormatInt(s.cfg.Watchdog.Microseconds(), 10))
	}
	go l.readNotify(s, s.notifier)
	return nil
}

// closeNotifiers closes the sockets and removes their directory.
func (l *loop) closeNotifiers() {
	for _, s := range l.svcs {
		s.closeNotifier()
	}
	if l.notifyDir != "" {
		os.RemoveAll(l.notifyDir)
	}
}

// closeNotifier closes s's socket, if it has one (its reader ends).
func (s *service) closeNotifier() {
	if s.notifier != nil {
		s.notifier.sock.Close()
		s.notifier = nil
	}
}

// setMember tells s's reader whose datagrams count: u's processes, or
// nobody's (u nil).
func (s *service) setMember(u *unit) {
	if s.notifier == nil {
		return
	}
	if u == nil {
		s.notifier.member.Store(nil)
		return
	}
	s.notifier.member.Store(memberOf(u))
}

// memberOf is how to tell the processes of running unit u.
func memberOf(u *unit) *member {
	m := &member{u: u, track: u.track, cg: u.cg}
	if u.track == config.TrackSubreaper {
		m.helper = u.proc.Pid()
	} else {
		m.leader = u.proc.Pid() // the command (the trampoline becomes it)
	}
	return m
}

// readNotify reads s's socket until it is closed.
func (l *loop) readNotify(s *service, n *notifier) {
	buf := make([]byte, notify.MaxDatagram+1)
	for {
		d, err := n.sock.Recv(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // ENOMEM and the like: try again, never spin
			continue
		}
		m := n.member.Load()
		why := ""
		switch {
		case m == nil:
			why = "no run of the service is running"
		case d.Truncated:
			why = fmt.Sprintf("longer than %d bytes", notify.MaxDatagram)
		case !m.holds(d.Pid):
			why = "not a process of the service's run"
		case d.PidFD >= 0 && unix.PidfdSendSignal(d.PidFD, 0, nil, 0) != nil:
			// The pid was looked up after the sender had gone: it may
			// have been someone else's by then.
			why = "the sender exited before its datagram was read"
		}
		if d.PidFD >= 0 {
			unix.Close(d.PidFD)
		}
		n.mu.Lock()
		if m != nil && n.news.u != m.u {
			n.news = notifyNews{u: m.u} // a new run: what an old one said is void
		}
		nw := &n.news
		if why != "" {
			nw.refused++
			nw.why, nw.lastPid = why, d.Pid
		} else {
			msg := d.Msg
			nw.ready = nw.ready || msg.Ready
			nw.stopping = nw.stopping || msg.Stopping
			nw.watchdog = nw.watchdog || msg.Watchdog
			nw.trigger = nw.trigger || msg.WatchdogTrigger
			if msg.HasStatus {
				nw.status, nw.hasStatus = msg.Status, true
			}
			if msg.MainPID > 0 {
				nw.mainPID = msg.MainPID
			}
		}
		post := !n.posted && nw.u != nil
		n.posted = n.posted || post
		n.mu.Unlock()
		if post {
			l.post(func() { l.takeNotify(s, n) }, nil)
		}
	}
}

// holds reports whether pid is a process of m's run.
func (m *member) holds(pid int) bool {
	if pid <= 0 {
		return false
	}
	switch m.track {
	case config.TrackCgroup:
		return m.cg != nil && m.cg.Holds(pid)
	case config.TrackSubreaper:
		// A descendant of the helper: walk up, boundedly (a chain this
		// deep is not a service's).
		for p, i := pid, 0; p > 1 && i < 256; i++ {
			if p == m.helper {
				return true
			}
			p = reaper.ParentOf(p) // -1 once gone: not the unit's
		}
		return false
	default:
		return pid == m.leader || pgidOf(pid) == m.leader // pgidOf: 0 once gone
	}
}

// takeNotify applies, on the loop, what s's current run said.
func (l *loop) takeNotify(s *service, n *notifier) {
	n.mu.Lock()
	nw := n.news
	n.news = notifyNews{u: nw.u}
	n.posted = false
	n.mu.Unlock()
	u := nw.u
	if u == nil || s.unit != u {
		return
	}
	if nw.refused > 0 {
		level := l.log.Warn
		if s.notifyWarned {
			level = l.log.Debug
		}
		s.notifyWarned = true
		level("notify datagrams refused", "service", s.cfg.Name, "count", nw.refused, "reason", nw.why, "sender_pid", nw.lastPid)
	}
	if nw.hasStatus && nw.status != s.statusText {
		s.statusText = nw.status
		l.log.Debug("service status", "service", s.cfg.Name, "status", nw.status)
	}
	if nw.mainPID > 0 && nw.mainPID != u.main && !s.mainPIDWarned {
		s.mainPIDWarned = true
		l.log.Warn("MAINPID= refused: tend follows the process it started (run the daemon in the foreground)",
			"service", s.cfg.Name, "mainpid", nw.mainPID, "pid", u.main)
	}
	if nw.watchdog {
		s.watchdogAt = time.Now().Add(s.cfg.Watchdog)
	}
	if nw.stopping && !s.notifyStopping {
		s.notifyStopping = true
		l.log.Info("service says it is stopping (STOPPING=1)", "service", s.cfg.Name)
	}
	if nw.ready && !s.notifyStopping {
		l.saidReady(s)
	}
	if nw.trigger {
		l.failRun(s, "watchdog: WATCHDOG=trigger", false)
	}
}

// armWatchdog starts the watchdog of s's run once it is ready (before,
// ready_timeout watches it, as systemd's start timeout does): one timer,
// pushed on by each WATCHDOG=1 (watchdogAt), not re-armed per ping.
func (l *loop) armWatchdog(s *service) {
	wd := s.cfg.Watchdog
	if wd <= 0 {
		return
	}
	s.watchdogAt = time.Now().Add(wd)
	u := s.unit
	var check func()
	check = func() {
		if s.unit != u || l.sd.active || (s.state != stateStarting && s.state != stateRunning) {
			return
		}
		if left := time.Until(s.watchdogAt); left > 0 {
			l.tm.after(left, check)
			return
		}
		l.failRun(s, fmt.Sprintf("watchdog: no WATCHDOG=1 for %v", wd), false)
	}
	l.tm.after(wd, check)
}
