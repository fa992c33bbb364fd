//go:build linux

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// eventBuffer is the capacity of Events: enough that the supervisor loop,
// busy for a moment, does not hold up the reader.
const eventBuffer = 64

// Event says that a watched unit's "populated" changed.
type Event struct {
	Cookie    any  // what Watch was given
	Populated bool // false: the unit is empty (every process exited)
}

// Watcher reports changes of units' cgroup.events through inotify
// (cgroup-v2.rst: a change of cgroup.events is an IN_MODIFY on it), so the
// supervisor learns that a unit is empty without polling (DESIGN.md §1.8).
//
// One goroutine, started by NewWatcher, owns the inotify fd's reading and
// the Events channel; it parks in the netpoller (the fd is non-blocking)
// and so holds no OS thread while idle. Watch and Unwatch add and remove
// watches on the same fd, which the kernel serialises, and share the
// watch table with the reader under mu. On each event the reader re-reads
// the file and sends only a change from the last state it reported or
// Watch returned, so spurious or merged notifications cost nothing; on a
// queue overflow it re-reads every watched unit.
type Watcher struct {
	f      *os.File   // the inotify fd; read only by run
	events chan Event // sent on only by run, closed when it returns
	done   chan struct{}
	exited chan struct{}
	once   sync.Once

	mu      sync.Mutex
	byWD    map[int]*watch // guarded by mu
	byGroup map[*Group]int // wd by group; guarded by mu
	closed  bool           // guarded by mu
}

type watch struct {
	g         *Group
	cookie    any
	populated bool // the last state reported; guarded by Watcher.mu
}

// NewWatcher starts a watcher; Close stops it.
func NewWatcher() (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cgroup: inotify_init1: %w", err)
	}
	w := &Watcher{
		f:       os.NewFile(uintptr(fd), "inotify"), // non-blocking: reads use the netpoller
		events:  make(chan Event, eventBuffer),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
		byWD:    map[int]*watch{},
		byGroup: map[*Group]int{},
	}
	go w.run()
	return w, nil
}

// Events delivers the changes; it is closed by Close.
func (w *Watcher) Events() <-chan Event { return w.events }

// Watch starts watching g and returns its state read after the watch was
// in place: a unit that emptied before Watch shows here as false, and every
// change after it comes as an Event carrying cookie.
func (w *Watcher) Watch(g *Group, cookie any) (populated bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false, errors.New("cgroup: watch: watcher closed")
	}
	if _, ok := w.byGroup[g]; ok {
		return false, fmt.Errorf("cgroup: watch %s: already watched", g.dir)
	}
	name := filepath.Join(g.dir, "cgroup.events")
	wd := -1
	err = w.control(func(fd int) error {
		var err error
		wd, err = unix.InotifyAddWatch(fd, name, unix.IN_MODIFY)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("cgroup: watch %s: %w", name, err)
	}
	populated, err = g.Populated()
	if err != nil {
		_ = w.control(func(fd int) error { _, err := unix.InotifyRmWatch(fd, uint32(wd)); return err })
		return false, err
	}
	w.byWD[wd] = &watch{g: g, cookie: cookie, populated: populated}
	w.byGroup[g] = wd
	return populated, nil
}

// Unwatch stops watching g (a no-op if it is not watched). Call it when the
// unit is done, before or after Remove: removing a cgroup sends no
// IN_IGNORED (the watch pins the file's inode; seen on Linux 6.18), so the
// watch would stay. An event the reader had already taken may still arrive
// after Unwatch: its cookie tells.
func (w *Watcher) Unwatch(g *Group) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.byGroup[g]
	if !ok {
		return
	}
	delete(w.byGroup, g)
	delete(w.byWD, wd)
	// EINVAL when the watch is already gone (the directory was removed):
	// nothing to undo.
	_ = w.control(func(fd int) error { _, err := unix.InotifyRmWatch(fd, uint32(wd)); return err })
}

// Close stops the reader, closes the fd and then Events. It is safe to call
// more than once.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.done)
		err = w.f.Close() // wakes the reader's Read with os.ErrClosed
		<-w.exited
	})
	return err
}

// control runs fn on the fd while os.File keeps it open, so that a
// concurrent Close cannot make fn use a closed (or reused) fd number.
func (w *Watcher) control(fn func(fd int) error) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// run is the reader: the only goroutine that reads the fd or sends on
// events.
func (w *Watcher) run() {
	defer close(w.exited)
	defer close(w.events)
	buf := make([]byte, 4096) // many events per read; each is 16 bytes here
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // os.ErrClosed after Close; nothing else is expected
		}
		for _, ev := range w.changes(buf[:n]) {
			select {
			case w.events <- ev:
			case <-w.done:
				return
			}
		}
	}
}

// changes turns one read's inotify events into the state changes to report.
func (w *Watcher) changes(buf []byte) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Event
	check := func(x *watch) {
		p, err := readPopulated(x.g.dir)
		if err != nil || p == x.populated {
			return // removed, or unchanged: nothing to report
		}
		x.populated = p
		out = append(out, Event{Cookie: x.cookie, Populated: p})
	}
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		off += unix.SizeofInotifyEvent + int(ev.Len)
		wd := int(ev.Wd)
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			for _, x := range w.byWD {
				check(x)
			}
		case ev.Mask&unix.IN_IGNORED != 0:
			// The watch went without Unwatch (not seen for a removed
			// cgroup, see Unwatch, but inotify(7) allows it).
			if x, ok := w.byWD[wd]; ok {
				delete(w.byWD, wd)
				delete(w.byGroup, x.g)
			}
		default:
			if x, ok := w.byWD[wd]; ok {
				check(x)
			}
		}
	}
	return out
}
