//go:build linux

// Command tendbench measures tend against other inits (tini, dumb-init,
// catatonit; s6-svscan and runsvdir where they do the same job, see
// supervisors.go) and against bench/refinit, the least a Go init can be.
// bench/run builds everything and calls it; see docs/BENCHMARKS.md.
//
//	tendbench run -out results.json -rounds 3 [-quick] -init NAME=PATH...
//	tendbench report -in results.json -svg chart.svg -md table.md
//	tendbench helper storm|reaplat|sigrecv ARGS  (inside the init under test)
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tendbench run|report|helper ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "helper":
		os.Exit(runHelper(os.Args[2:]))
	case "run":
		os.Exit(runSuite(os.Args[2:]))
	case "report":
		os.Exit(runReport(os.Args[2:]))
	}
	fmt.Fprintf(os.Stderr, "tendbench: unknown command %q\n", os.Args[1])
	os.Exit(2)
}

// initList is the repeated -init NAME=PATH flag, in order.
type initList []initSpec

type initSpec struct{ Name, Path string }

func (l *initList) String() string { return fmt.Sprint(*l) }
func (l *initList) Set(s string) error {
	name, path, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want NAME=PATH, got %q", s)
	}
	*l = append(*l, initSpec{name, path})
	return nil
}

// argv is how an init runs COMMAND: every init here takes `--` then the
// command (tini's -s and the others' subreaper defaults keep them reaping
// when they are not PID 1).
func (s initSpec) argv(cmd ...string) []string {
	a := []string{s.Path}
	if s.Name == "tini" {
		a = append(a, "-s")
	}
	return append(append(a, "--"), cmd...)
}

func isTend(name string) bool { return strings.HasPrefix(name, "tend") }

func suiteFlags(args []string) (*flag.FlagSet, *config) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	c := &config{}
	fs.Var(&c.inits, "init", "NAME=PATH of an init to measure (repeatable; names starting with tend are tend builds; s6-svscan and runsvdir take a scan directory)")
	fs.StringVar(&c.out, "out", "results.json", "where to write the results")
	fs.IntVar(&c.rounds, "rounds", 4, "rounds; every scenario runs every init once per round, in a shuffled order")
	fs.BoolVar(&c.quick, "quick", false, "fewer samples per round")
	fs.StringVar(&c.only, "only", "", "comma-separated scenarios to run (default all)")
	fs.StringVar(&c.python, "python", "python3", "the Python for the subprocess.Popen baseline")
	fs.StringVar(&c.tmp, "tmp", os.TempDir(), "scratch directory")
	fs.StringVar(&c.empty, "empty", "", "an empty static Go program (bench/empty): tend spawn's reference")
	_ = fs.Parse(args)
	return fs, c
}

type config struct {
	inits  initList
	out    string
	rounds int
	quick  bool
	only   string
	python string
	tmp    string
	empty  string // bench/empty's binary, or ""
	self   string // this binary, for the helpers
}

func (c *config) want(scenario string) bool {
	if c.only == "" {
		return true
	}
	for _, s := range strings.Split(c.only, ",") {
		if s == scenario {
			return true
		}
	}
	return false
}

func (c *config) tend() initSpec {
	for _, s := range c.inits {
		if s.Name == "tend" {
			return s
		}
	}
	return c.inits[0]
}

// n picks the sample count for the mode.
func (c *config) n(full, quick int) int {
	if c.quick {
		return quick
	}
	return full
}
