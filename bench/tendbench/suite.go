//go:build linux

package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runSuite runs every scenario, round after round, every init once per
// scenario and round in a shuffled order, and writes the results.
func runSuite(args []string) int {
	_, c := suiteFlags(args)
	if len(c.inits) == 0 {
		fmt.Fprintln(os.Stderr, "tendbench run: no -init given")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.self = self
	res := &Results{Machine: readMachine(), Rounds: c.rounds, Quick: c.quick}
	for _, s := range c.inits {
		res.Inits = append(res.Inits, s.Name)
	}
	start := time.Now()
	sizes(c, res)
	scenarios := []struct {
		name string
		run  func(*config, *Results) error
	}{
		{"startup", startup}, {"idle", idle}, {"storm", storm}, {"reap", reapLatency},
		{"signal", signalLatency}, {"jobs", jobsThroughput}, {"shutdown", shutdown},
	}
	for round := 1; round <= c.rounds; round++ {
		for _, sc := range scenarios {
			if !c.want(sc.name) {
				continue
			}
			load := loadavg()
			res.Loads = append(res.Loads, fmt.Sprintf("round %d %s: %s", round, sc.name, load))
			logf("round %d/%d: %s (load %s)", round, c.rounds, sc.name, load)
			t := time.Now()
			if err := sc.run(c, res); err != nil {
				fmt.Fprintf(os.Stderr, "tendbench: %s: %v\n", sc.name, err)
				return 1
			}
			logf("  %s took %.1fs", sc.name, time.Since(t).Seconds())
		}
		res.Duration = time.Since(start).Seconds()
		if err := writeJSON(c.out, res); err != nil { // partial results survive a failure later
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	logf("done in %.0fs: %s", time.Since(start).Seconds(), c.out)
	return 0
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// shuffled returns the inits in a random order.
func shuffled(in []initSpec) []initSpec {
	out := append([]initSpec(nil), in...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// sizes records each init's binary size (one value: it does not vary).
func sizes(c *config, res *Results) {
	f := res.figure("size.binary", "binary size", "MiB", false, "< 10 MiB")
	for _, s := range c.inits {
		p, err := filepath.EvalSymlinks(s.Path)
		if err != nil {
			continue
		}
		if st, err := os.Stat(p); err == nil {
			f.add(s.Name, float64(st.Size())/(1<<20), 1)
		}
	}
}

// startup runs INIT -- /bin/true, interleaved, and records the median wall
// and CPU (the init's and /bin/true's, from wait4's rusage) of the round.
func startup(c *config, res *Results) error {
	n := c.n(150, 30)
	all := append([]initSpec{{Name: "direct", Path: "/bin/true"}}, c.execInits()...)
	wall := map[string][]float64{}
	cpu := map[string][]float64{}
	for i := 0; i < n; i++ {
		for _, s := range shuffled(all) {
			argv := s.argv("/bin/true")
			if s.Name == "direct" {
				argv = []string{"/bin/true"}
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			t := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %v", s.Name, err)
			}
			wall[s.Name] = append(wall[s.Name], float64(time.Since(t).Microseconds())/1e3)
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu[s.Name] = append(cpu[s.Name], float64(ru.Utime.Nano()+ru.Stime.Nano())/1e6)
		}
	}
	fw := res.figure("startup.wall", "start-up wall, INIT -- /bin/true", "ms", false, "<= 1.25x refinit-deps, <= 1.5x refinit")
	fc := res.figure("startup.cpu", "start-up CPU (user+sys, INIT and /bin/true)", "ms", false, "")
	for _, s := range all {
		fw.add(s.Name, percentile(wall[s.Name], 50), n)
		fc.add(s.Name, percentile(cpu[s.Name], 50), n)
	}
	return nil
}

// nsCommand runs argv as PID 1 of a new PID namespace with its own /proc.
// --kill-child: if unshare dies, the init (and so the namespace) dies too.
// Pdeathsig: if tendbench dies, so does unshare, and with it the namespace.
func nsCommand(argv []string) *exec.Cmd {
	cmd := exec.Command("unshare", append([]string{"--pid", "--fork", "--mount-proc", "--kill-child"}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// childOf waits for unshare's forked child, the init, and returns its pid
// as the machine sees it.
func childOf(pid int) (int, error) {
	deadline := time.Now().Add(5 * time.Second)
	p := strconv.Itoa(pid)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
		if f := strings.Fields(string(b)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("no child of %d after 5s", pid)
}

// childCount counts the children of pid, zombies included.
func childCount(pid int) int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	n := 0
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/children")
		n += len(strings.Fields(string(b)))
	}
	return n
}

// wakeups is voluntary plus involuntary context switches summed over every
// thread of pid (DESIGN.md §7).
func wakeups(pid int) int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	n := 0
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/status")
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				n += atoiField(v)
			} else if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
				n += atoiField(v)
			}
		}
	}
	return n
}

// memory is RssAnon (/proc/PID/status) and Pss (smaps_rollup) in KiB.
func memory(pid int) (rssAnon, pss int) {
	p := "/proc/" + strconv.Itoa(pid)
	if b, err := os.ReadFile(p + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
				rssAnon = atoiField(v)
			}
		}
	}
	if b, err := os.ReadFile(p + "/smaps_rollup"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Pss:"); ok {
				pss = atoiField(v)
			}
		}
	}
	return rssAnon, pss
}

// readLine reads one line from r with a deadline.
func readLine(r *bufio.Reader, d time.Duration) (string, error) {
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- line{strings.TrimSpace(s), err}
	}()
	select {
	case l := <-ch:
		return l.s, l.err
	case <-time.After(d):
		return "", fmt.Errorf("no line after %v", d)
	}
}
