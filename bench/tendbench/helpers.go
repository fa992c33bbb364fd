//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The helpers run as the main process of the init under test, inside a new
// PID namespace where the init is PID 1 and /proc is the namespace's own.
// They print one JSON line on stdout and exit 0.

var helpers = map[string]func(args []string) error{
	"storm":   helperStorm,
	"reaplat": helperReapLatency,
	"sigrecv": helperSigRecv,
}

func runHelper(args []string) int {
	if len(args) == 0 || helpers[args[0]] == nil {
		fmt.Fprintf(os.Stderr, "tendbench helper: want one of storm, reaplat, sigrecv\n")
		return 2
	}
	finish, err := asService()
	if err == nil {
		err = finish(helpers[args[0]](args[1:]))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tendbench helper %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// monoNow is CLOCK_MONOTONIC in ns: the same clock in every process of the
// machine, unlike time.Now's monotonic reading, which is per process.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// pid1Children counts the children of PID 1 (the init), zombies included,
// from /proc/1/task/*/children.
func pid1Children() (int, error) {
	tasks, err := os.ReadDir("/proc/1/task")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/1/task/" + t.Name() + "/children")
		if err != nil {
			continue // the thread is gone
		}
		n += len(strings.Fields(string(b)))
	}
	return n, nil
}

// taskCPU is the CPU time of every thread of pid in ns, from
// /proc/PID/task/*/schedstat (ns, unlike /proc/PID/stat's 10 ms ticks).
func taskCPU(pid string) int64 {
	tasks, _ := os.ReadDir("/proc/" + pid + "/task")
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + pid + "/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}

// stormResult is what helperStorm prints.
type stormResult struct {
	N           int     `json:"n"`
	SpreadMs    float64 `json:"spread_ms"`    // first release to last exit
	DrainMs     float64 `json:"drain_ms"`     // last exit to no zombie left
	PeakZombies int     `json:"peak_zombies"` // exited but not yet reaped, at most
	CPUMs       float64 `json:"cpu_ms"`       // PID 1's CPU from first release to drained
}

// stormGroup is how many children share one pipe: one write releases them
// all, and only they wake (one pipe for all would wake every waiter on
// every write, a thundering herd that swamps the machine).
const stormGroup = 10

// helperStorm makes N children of PID 1 that block on pipes, then releases
// them, a group at a time, evenly over SPREAD_MS. A pidfd per child, in one
// epoll set, says when each has exited; the children PID 1 still has say how
// many it has not reaped yet. It measures how long after the last exit PID 1
// has reaped them all, and the most zombies (exited, not reaped) seen.
// args: N SPREAD_MS
func helperStorm(args []string) error {
	n, _ := strconv.Atoi(args[0])
	spreadMs, _ := strconv.Atoi(args[1])
	groups := (n + stormGroup - 1) / stormGroup
	w := make([]int, groups)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	var buf byte
	for g := 0; g < groups; g++ {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		w[g] = p[1]
		for i := g * stormGroup; i < min(n, (g+1)*stormGroup); i++ {
			pid, errno := forkWaiter(p[0], &buf)
			if errno != 0 {
				return fmt.Errorf("clone %d: %w", i, errno)
			}
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				return fmt.Errorf("pidfd_open: %w", err)
			}
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				return fmt.Errorf("epoll_ctl: %w", err)
			}
		}
		unix.Close(p[0])
	}
	base, err := pid1Children() // the waiters and this helper
	if err != nil {
		return err
	}
	if base < n+1 {
		return fmt.Errorf("PID 1 has %d children, want %d", base, n+1)
	}
	time.Sleep(100 * time.Millisecond)
	res := stormResult{N: n}
	cpu0 := taskCPU("1")
	ones := make([]byte, stormGroup)
	events := make([]unix.EpollEvent, 1024)
	released, exited := 0, 0 // groups, children
	var lastExit int64
	start := monoNow()
	spread := int64(spreadMs) * 1e6
	lastPoll := int64(0)
	deadline := start + spread + 60e9
	for {
		now := monoNow()
		want := groups
		if el := now - start; el < spread {
			want = int(int64(groups) * el / spread)
		}
		for ; released < want; released++ {
			if _, err := unix.Write(w[released], ones); err != nil {
				return fmt.Errorf("release: %w", err)
			}
		}
		for {
			k, err := unix.EpollWait(ep, events, 0)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("epoll_wait: %w", err)
			}
			if k <= 0 {
				break
			}
			exited += k
			lastExit = monoNow()
		}
		// Every 2 ms while releasing (reading 10,000 children is not
		// free), at every turn once all have exited.
		if exited == n || now-lastPoll > 2e6 {
			lastPoll = now
			c, err := pid1Children()
			if err != nil {
				return err
			}
			reaped := base - c
			res.PeakZombies = max(res.PeakZombies, exited-reaped)
			if exited == n && reaped == n {
				break
			}
		}
		if now > deadline {
			return fmt.Errorf("%d of %d exited, not all reaped after 60s", exited, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
	res.SpreadMs = float64(lastExit-start) / 1e6
	res.DrainMs = float64(monoNow()-lastExit) / 1e6
	res.CPUMs = float64(taskCPU("1")-cpu0) / 1e6
	return json.NewEncoder(os.Stdout).Encode(res)
}

// latResult is what helperReapLatency prints: per sample, exit to reaped.
type latResult struct {
	ExitToReapUs []float64 `json:"exit_to_reap_us"`
	Missed       int       `json:"missed"` // reaped before its exit was seen
}

// helperReapLatency makes one child of PID 1 at a time, releases it and
// spins until it is gone: its pidfd turns readable when it has exited (a
// zombie), kill(pid, 0) fails with ESRCH once PID 1 has reaped it.
// args: N
func helperReapLatency(args []string) error {
	n, _ := strconv.Atoi(args[0])
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	var buf byte
	res := latResult{}
	for i := 0; i < n; i++ {
		pid, errno := forkWaiter(p[0], &buf)
		if errno != 0 {
			return fmt.Errorf("clone: %w", errno)
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return fmt.Errorf("pidfd_open: %w", err)
		}
		time.Sleep(2 * time.Millisecond) // PID 1 idle, the child blocked
		if _, err := unix.Write(p[1], []byte{1}); err != nil {
			return err
		}
		var exited int64
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		deadline := monoNow() + 5e9
		for {
			if exited == 0 {
				if k, _ := unix.Poll(pfd, 0); k > 0 {
					exited = monoNow()
				}
			}
			if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
				break
			}
			if monoNow() > deadline {
				return fmt.Errorf("pid %d not reaped after 5s", pid)
			}
		}
		gone := monoNow()
		unix.Close(fd)
		if exited == 0 {
			res.Missed++
			continue
		}
		res.ExitToReapUs = append(res.ExitToReapUs, float64(gone-exited)/1e3)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// helperSigRecv prints "ready", then the CLOCK_MONOTONIC time at which it
// received each SIGUSR1, one per line, until stdin closes.
func helperSigRecv([]string) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGUSR1)
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "ready")
	w.Flush()
	eof := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(eof)
	}()
	for {
		select {
		case <-ch:
			fmt.Fprintln(w, monoNow())
			w.Flush()
		case <-eof:
			return nil
		}
	}
}
