//go:build linux

package restart

import (
	"math"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// step is one run of a service: it runs for run, then exits with code (or
// signal code when sig), and Exited must return want. reset calls Reset
// before the run, as a manual start from the API does.
type step struct {
	reset bool
	run   time.Duration
	code  int
	sig   bool
	want  Decision
}

var (
	backoff = func(d time.Duration) Decision { return Decision{Restart: true, Delay: d, Reason: "backoff"} }
	now75   = Decision{Restart: true, Reason: "exit code 75 in restart_now"}
	stop78  = Decision{Reason: "exit code 78 in never_restart"}
)

func gaveUp(reason string) Decision { return Decision{GaveUp: true, Reason: reason} }

// repeat returns n copies of s.
func repeat(n int, s step) []step {
	steps := make([]step, n)
	for i := range steps {
		steps[i] = s
	}
	return steps
}

// delays returns one failing step of length run per delay, each expecting a
// backoff restart of that delay.
func delays(run time.Duration, ds ...time.Duration) []step {
	var steps []step
	for _, d := range ds {
		steps = append(steps, step{run: run, code: 1, want: backoff(d)})
	}
	return steps
}

func join(parts ...[]step) []step {
	var steps []step
	for _, p := range parts {
		steps = append(steps, p...)
	}
	return steps
}

// simulate plays steps on a fake clock: each run lasts its length, and each
// restart waits its delay before the next run starts, as the supervisor does.
func simulate(t *testing.T, p Policy, steps []step) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		tr := New(p)
		for i, s := range steps {
			if s.reset {
				tr.Reset()
			}
			started := time.Now()
			time.Sleep(s.run)
			got := tr.Exited(started, time.Now(), s.code, s.sig)
			if got != s.want {
				t.Fatalf("run %d (%v, code %d, signaled %v): Exited() = %+v, want %+v", i+1, s.run, s.code, s.sig, got, s.want)
			}
			if got.Restart {
				time.Sleep(got.Delay)
			}
		}
	})
}

func TestExited(t *testing.T) {
	const s, m = time.Second, time.Minute
	std := Policy{Mode: ModeOnFailure, Backoff: s, BackoffMax: 30 * s, MaxRestarts: 10, Window: 10 * m}
	with := func(f func(*Policy)) Policy { p := std; f(&p); return p }
	unlimited := with(func(p *Policy) { p.MaxRestarts = -1 })

	tests := []struct {
		name  string
		p     Policy
		steps []step
	}{
		{"delays double up to the cap", unlimited,
			delays(100*time.Millisecond, s, 2*s, 4*s, 8*s, 16*s, 30*s, 30*s, 30*s)},
		{"a run longer than backoff_max resets the backoff", unlimited, join(
			delays(s, s, 2*s, 4*s),
			delays(30*s+1, s, s), // 30s+1ns > backoff_max: back to 1s
			delays(s, 2*s, 4*s),
			delays(30*s, 8*s, 16*s), // exactly backoff_max is not longer
		)},
		{"constant delay when backoff_max is below backoff",
			with(func(p *Policy) { p.Backoff, p.BackoffMax, p.MaxRestarts = 5*s, s, -1 }),
			delays(s, 5*s, 5*s, 5*s)},
		{"zero backoff restarts at once", with(func(p *Policy) { p.Backoff, p.BackoffMax = 0, 0 }),
			delays(s, 0, 0, 0)},
		{"gives up after exactly max_restarts within the window",
			with(func(p *Policy) { p.MaxRestarts = 3 }), join(
				delays(s, s, 2*s, 4*s), // runs 1-3, restarts 1-3
				[]step{{run: s, code: 1, want: gaveUp("max_restarts 3 within 10m0s reached")}}, // run 4
			)},
		{"default limits give up on the 11th run", std, join(
			delays(s, s, 2*s, 4*s, 8*s, 16*s, 30*s, 30*s, 30*s, 30*s, 30*s),
			[]step{{run: s, code: 1, want: gaveUp("max_restarts 10 within 10m0s reached")}},
		)},
		{"restarts spread beyond the window never give up",
			with(func(p *Policy) { p.MaxRestarts, p.Window = 2, m }),
			// Each run resets the backoff, so restarts are 32s apart:
			// never more than 2 within a minute.
			delays(31*s, repeatDelay(20, s)...)},
		{"a restart exactly window ago no longer counts",
			with(func(p *Policy) { p.MaxRestarts, p.Window, p.Backoff, p.BackoffMax = 2, 10*s, 0, 0 }),
			delays(5*s, repeatDelay(10, 0)...)},
		{"a restart just inside the window still counts",
			with(func(p *Policy) { p.MaxRestarts, p.Window, p.Backoff, p.BackoffMax = 2, 10*s, 0, 0 }),
			join(delays(5*s-1, 0, 0), []step{{run: 5*s - 1, code: 1, want: gaveUp("max_restarts 2 within 10s reached")}})},
		{"zero window never forgets",
			with(func(p *Policy) { p.MaxRestarts, p.Window = 2, 0 }),
			join(delays(time.Hour, s, s), []step{{run: time.Hour, code: 1, want: gaveUp("max_restarts 2 reached")}})},
		{"max_restarts 0 gives up at once", with(func(p *Policy) { p.MaxRestarts = 0 }),
			[]step{{run: s, code: 1, want: gaveUp("max_restarts 0 within 10m0s reached")}}},
		{"max_restarts 0 gives up even on restart_now",
			with(func(p *Policy) { p.MaxRestarts, p.RestartNow = 0, []int{75} }),
			[]step{{run: s, code: 75, want: gaveUp("max_restarts 0 within 10m0s reached")}}},
		{"negative max_restarts never gives up", unlimited,
			join(delays(s, s, 2*s, 4*s, 8*s, 16*s), delays(s, repeatDelay(995, 30*s)...))},
		{"restart_now 75 under never restarts at once and counts",
			with(func(p *Policy) { p.Mode, p.RestartNow, p.MaxRestarts = ModeNever, []int{75}, 5 }),
			join(repeat(5, step{run: s, code: 75, want: now75}),
				[]step{{run: s, code: 75, want: gaveUp("max_restarts 5 within 10m0s reached")}})},
		{"restart_now leaves the backoff where it was",
			with(func(p *Policy) { p.RestartNow = []int{75} }), []step{
				{run: s, code: 1, want: backoff(s)},
				{run: s, code: 75, want: now75},
				{run: s, code: 1, want: backoff(2 * s)},
			}},
		{"never_restart 78 under always stops without giving up",
			with(func(p *Policy) { p.Mode, p.NeverRestart = ModeAlways, []int{78} }),
			[]step{{run: s, code: 78, want: stop78}}},
		{"never_restart wins over restart_now",
			with(func(p *Policy) { p.Mode, p.NeverRestart, p.RestartNow = ModeAlways, []int{78}, []int{78} }),
			[]step{{run: s, code: 78, want: stop78}}},
		{"never_restart stops even when the budget is spent",
			with(func(p *Policy) { p.MaxRestarts, p.NeverRestart = 0, []int{78} }),
			[]step{{run: s, code: 78, want: stop78}}},
		{"a signal matches no code list",
			with(func(p *Policy) { p.Mode, p.NeverRestart, p.RestartNow = ModeNever, []int{9}, []int{15} }),
			[]step{{run: s, code: 15, sig: true, want: Decision{Reason: "policy never"}}}},
		{"a signal under always is not in never_restart",
			with(func(p *Policy) { p.Mode, p.NeverRestart = ModeAlways, []int{9} }),
			[]step{{run: s, code: 9, sig: true, want: backoff(s)}}},
		{"on-failure restarts after a signal", std, []step{
			{run: s, code: 15, sig: true, want: backoff(s)},
			{run: s, code: 9, sig: true, want: backoff(2 * s)},
			{run: s, code: 0, sig: true, want: backoff(4 * s)}, // not an exit code 0
		}},
		{"on-failure stops on exit 0", std, []step{
			{run: s, code: 1, want: backoff(s)},
			{run: s, code: 0, want: Decision{Reason: "policy on-failure, exit code 0"}},
		}},
		{"empty mode is on-failure", with(func(p *Policy) { p.Mode = "" }),
			[]step{{run: s, code: 0, want: Decision{Reason: "policy on-failure, exit code 0"}}}},
		{"always restarts on exit 0", with(func(p *Policy) { p.Mode = ModeAlways }),
			repeat(3, step{run: 40 * s, code: 0, want: backoff(s)})},
		{"never stops on failure and signal", with(func(p *Policy) { p.Mode = ModeNever }), []step{
			{run: s, code: 1, want: Decision{Reason: "policy never"}},
			{run: s, code: 9, sig: true, want: Decision{Reason: "policy never"}},
		}},
		{"reset gives the budget and the backoff back", with(func(p *Policy) { p.MaxRestarts = 2 }), []step{
			{run: s, code: 1, want: backoff(s)},
			{run: s, code: 1, want: backoff(2 * s)},
			{run: s, code: 1, want: gaveUp("max_restarts 2 within 10m0s reached")},
			{reset: true, run: s, code: 1, want: backoff(s)},
			{run: s, code: 1, want: backoff(2 * s)},
			{run: s, code: 1, want: gaveUp("max_restarts 2 within 10m0s reached")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { simulate(t, tt.p, tt.steps) })
	}
}

// repeatDelay returns n copies of d.
func repeatDelay(n int, d time.Duration) []time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = d
	}
	return ds
}

func TestDoublingDoesNotOverflow(t *testing.T) {
	// Called with explicit times: sleeping these delays would overflow the
	// fake clock itself.
	tr := New(Policy{Mode: ModeAlways, Backoff: math.MaxInt64 / 3, BackoffMax: math.MaxInt64, MaxRestarts: -1})
	now := time.Now()
	for i, want := range []time.Duration{math.MaxInt64 / 3, math.MaxInt64 / 3 * 2, math.MaxInt64, math.MaxInt64} {
		if d := tr.Exited(now, now.Add(time.Second), 1, false); d != backoff(want) {
			t.Fatalf("restart %d: Exited() = %+v, want %+v", i+1, d, backoff(want))
		}
	}
}

func TestHistoryStaysBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(Policy{Mode: ModeAlways, MaxRestarts: 5, Window: time.Minute})
		wantCap := cap(tr.history)
		for i := range 10000 {
			started := time.Now()
			time.Sleep(13 * time.Second) // 4-5 restarts per minute: never gives up
			if d := tr.Exited(started, time.Now(), 1, false); !d.Restart {
				t.Fatalf("run %d: Exited() = %+v, want a restart", i+1, d)
			}
			if len(tr.history) > 5 || cap(tr.history) != wantCap {
				t.Fatalf("run %d: history len %d cap %d, want len <= 5 and cap %d", i+1, len(tr.history), cap(tr.history), wantCap)
			}
		}
		if got := tr.Restarts(); got != 10000 {
			t.Errorf("Restarts() = %d, want 10000", got)
		}
		tr.Reset()
		if got := tr.Restarts(); got != 0 {
			t.Errorf("Restarts() after Reset = %d, want 0", got)
		}
	})
}

func TestNewCopiesCodeLists(t *testing.T) {
	codes := []int{78}
	tr := New(Policy{Mode: ModeAlways, NeverRestart: codes, MaxRestarts: -1})
	codes[0] = 1
	now := time.Now()
	if d := tr.Exited(now, now, 78, false); d != stop78 {
		t.Errorf("Exited(78) after the caller edited its list = %+v, want %+v", d, stop78)
	}
}

func TestValidate(t *testing.T) {
	good := Policy{Mode: ModeOnFailure, RestartNow: []int{75}, NeverRestart: []int{78}, Backoff: time.Second,
		BackoffMax: 30 * time.Second, MaxRestarts: 10, Window: 10 * time.Minute}
	tests := []struct {
		name string
		edit func(*Policy)
		want string // "" for valid
	}{
		{"default", func(*Policy) {}, ""},
		{"empty mode", func(p *Policy) { p.Mode = "" }, ""},
		{"zero window and no limit", func(p *Policy) { p.Window, p.MaxRestarts = 0, -1 }, ""},
		{"unknown mode", func(p *Policy) { p.Mode = "sometimes" }, `restart "sometimes": want always, on-failure or never`},
		{"negative backoff", func(p *Policy) { p.Backoff = -1 }, "backoff -1ns: negative"},
		{"cap below backoff", func(p *Policy) { p.BackoffMax = time.Millisecond }, "backoff_max 1ms: below backoff 1s"},
		{"negative window", func(p *Policy) { p.Window = -time.Second }, "restart_window -1s: negative"},
		{"code out of range", func(p *Policy) { p.RestartNow = []int{256} }, "restart_now: code 256 outside 0-255"},
		{"code in both", func(p *Policy) { p.RestartNow = []int{78} }, "code 78 is in both restart_now and never_restart"},
		{"all on one line", func(p *Policy) { p.Mode, p.NeverRestart = "x", []int{-1} },
			`restart "x": want always, on-failure or never; never_restart: code -1 outside 0-255`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.edit(&p)
			err := p.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("Validate() = %q, want one line", err)
			}
		})
	}
}

// TestFailed: a run ended by tend for failing (watchdog, check) restarts
// whatever the policy, backs off and spends the budget like any failure.
func TestFailed(t *testing.T) {
	tr := New(Policy{Mode: ModeNever, Backoff: time.Second, BackoffMax: 4 * time.Second, MaxRestarts: 3, Window: time.Hour})
	t0 := time.Now()
	var delays []time.Duration
	for i := 0; i < 3; i++ {
		d := tr.Failed(t0, t0.Add(time.Duration(i)*time.Millisecond), "watchdog")
		if !d.Restart || d.GaveUp || d.Reason != "watchdog" {
			t.Fatalf("failure %d: %+v", i, d)
		}
		delays = append(delays, d.Delay)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	if d := tr.Failed(t0, t0.Add(time.Second), "watchdog"); d.Restart || !d.GaveUp {
		t.Errorf("the fourth failure within the window: %+v, want gave up", d)
	}
	// A long healthy run resets the doubling.
	tr = New(Policy{Mode: ModeOnFailure, Backoff: time.Second, BackoffMax: 4 * time.Second, MaxRestarts: -1})
	tr.Failed(t0, t0, "x")
	tr.Failed(t0, t0, "x")
	if d := tr.Failed(t0, t0.Add(time.Minute), "x"); d.Delay != time.Second {
		t.Errorf("after a long run: delay %v, want the first backoff", d.Delay)
	}
}
