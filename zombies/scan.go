//go:build linux

// Package zombies names the zombies that PID 1 cannot reap: a zombie whose
// parent is alive belongs to that parent, which never waited for it (the
// agent gateway's bug). tend can only point at the parent; this package
// finds them in /proc and remembers since when each zombie has been seen.
// It knows nothing of services or jobs: the caller resolves owners.
package zombies

import (
	"bytes"
	"cmp"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// MaxPIDs is how many of a parent's zombie pids a Parent lists.
const MaxPIDs = 32

// Parent is a live process holding zombies.
type Parent struct {
	PID       int
	UID       int    // its real uid
	Command   string // its comm
	Zombies   int
	PIDs      []int     // the first MaxPIDs of them, lowest first
	FirstSeen time.Time // when the oldest of them was first seen by a scan
}

// zkey is a zombie: its pid and its start time, so that a recycled pid is
// a new zombie.
type zkey struct {
	pid   int
	start uint64
}

// Scanner scans /proc, at most once per maxAge however many ask at once,
// and keeps the first sighting of each zombie between scans. Safe for
// concurrent use.
type Scanner struct {
	proc   string // "/proc"; tests point it elsewhere
	mu     sync.Mutex
	seen   map[zkey]time.Time
	last   []Parent
	lastAt time.Time
}

// New returns a Scanner of /proc.
func New() *Scanner { return &Scanner{proc: "/proc", seen: map[zkey]time.Time{}} }

// Scan returns every live process other than skip (tend itself, which
// reaps its own) holding zombies, most zombies first, then the oldest. A
// scan younger than maxAge is returned again: a caller asking in a loop
// costs one walk of /proc per maxAge.
func (s *Scanner) Scan(skip int, maxAge time.Duration) []Parent {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.lastAt.IsZero() && now.Sub(s.lastAt) < maxAge {
		return s.last
	}
	d, err := os.Open(s.proc)
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	byParent := map[int][]zkey{}
	seen := make(map[zkey]time.Time, len(s.seen))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, ok := s.stat(pid)
		if !ok || st.state != 'Z' || st.ppid == skip || st.ppid <= 0 {
			continue
		}
		k := zkey{pid, st.start}
		if t, ok := s.seen[k]; ok {
			seen[k] = t
		} else {
			seen[k] = now
		}
		byParent[st.ppid] = append(byParent[st.ppid], k)
	}
	s.seen = seen // zombies gone since are forgotten
	out := make([]Parent, 0, len(byParent))
	for ppid, zs := range byParent {
		p := Parent{PID: ppid, UID: -1, Zombies: len(zs), FirstSeen: now}
		for _, z := range zs {
			if t := seen[z]; t.Before(p.FirstSeen) {
				p.FirstSeen = t
			}
			p.PIDs = append(p.PIDs, z.pid)
		}
		slices.Sort(p.PIDs)
		p.PIDs = p.PIDs[:min(len(p.PIDs), MaxPIDs)]
		p.Command, p.UID = s.identity(ppid)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Parent) int {
		if c := cmp.Compare(b.Zombies, a.Zombies); c != 0 {
			return c
		}
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return cmp.Compare(a.PID, b.PID)
	})
	s.last, s.lastAt = out, now
	return out
}

type stat struct {
	state byte
	ppid  int
	start uint64
}

// stat reads the state, parent and start time of pid.
func (s *Scanner) stat(pid int) (stat, bool) {
	b, err := os.ReadFile(s.proc + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	i := bytes.LastIndexByte(b, ')') // comm may hold anything
	if i < 0 {
		return stat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice num_threads
	// itrealvalue starttime: starttime is the 20th field after comm.
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	start, err2 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil {
		return stat{}, false
	}
	return stat{state: f[0][0], ppid: ppid, start: start}, true
}

// identity reads the comm and real uid of pid.
func (s *Scanner) identity(pid int) (string, int) {
	comm, _ := os.ReadFile(s.proc + "/" + strconv.Itoa(pid) + "/comm")
	uid := -1
	if b, err := os.ReadFile(s.proc + "/" + strconv.Itoa(pid) + "/status"); err == nil {
		if i := bytes.Index(b, []byte("\nUid:")); i >= 0 {
			if f := bytes.Fields(b[i+5:]); len(f) > 0 {
				uid, _ = strconv.Atoi(string(f[0]))
			}
		}
	}
	return string(bytes.TrimSpace(comm)), uid
}
