//go:build linux

package cgroup

import (
	"strings"
	"testing"
	"time"
)

func TestWatcher(t *testing.T) {
	h := testHierarchy(t)
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, b := newGroup(t, h, "a"), newGroup(t, h, "b")
	for _, g := range []*Group{a, b} {
		if _, err := w.Watch(g, g.Path()); err != nil {
			t.Fatalf("Watch(%s): %v", g.Path(), err)
		}
	}
	if _, err := w.Watch(a, "again"); err == nil || !strings.Contains(err.Error(), "already watched") {
		t.Errorf("second Watch(a): %v, want already watched", err)
	}
	cmd := startIn(t, b, nil, "/bin/sleep", "1000")
	if ev := waitEvent(t, w); ev != (Event{Cookie: b.Path(), Populated: true}) {
		t.Errorf("event %+v, want b populated", ev)
	}
	// Kill b: one change, reported once however many notifications it made.
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = waitCmd(t, cmd)
	if ev := waitEvent(t, w); ev != (Event{Cookie: b.Path(), Populated: false}) {
		t.Errorf("event %+v, want b empty", ev)
	}
	// Unwatched, a change goes unreported; a, still watched, still reports.
	w.Unwatch(b)
	w.Unwatch(b) // a no-op
	startIn(t, b, nil, "/bin/sleep", "1000")
	startIn(t, a, nil, "/bin/sleep", "1000")
	if ev := waitEvent(t, w); ev != (Event{Cookie: a.Path(), Populated: true}) {
		t.Errorf("event %+v, want a populated (b is unwatched)", ev)
	}
	select {
	case ev := <-w.Events():
		t.Errorf("unexpected event %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
	// A watched cgroup removed: no IN_IGNORED comes (the watch pins the
	// inode), the watch stays until Unwatch, which still works.
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, w) // a empty
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	w.Unwatch(a)
	w.mu.Lock()
	n := len(w.byWD) + len(w.byGroup)
	w.mu.Unlock()
	if n != 0 {
		t.Errorf("%d entries left in the watch table after Unwatch", n)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close(): %v", err)
	}
	if _, ok := <-w.Events(); ok {
		t.Errorf("Events not closed by Close")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close(): %v", err)
	}
	if _, err := w.Watch(b, "late"); err == nil {
		t.Errorf("Watch after Close: no error")
	}
}
