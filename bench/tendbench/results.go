//go:build linux

package main

import (
	"encoding/json"
	"math"
	"os"
	"sort"
	"strings"
)

// Results is the file tendbench run writes and tendbench report reads.
type Results struct {
	Machine  Machine   `json:"machine"`
	Rounds   int       `json:"rounds"`
	Quick    bool      `json:"quick"`
	Inits    []string  `json:"inits"`
	Figures  []*Figure `json:"figures"`
	Loads    []string  `json:"loads"` // /proc/loadavg before each scenario of each round
	Duration float64   `json:"duration_s"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPU, Kernel, Go, OS string
	Cores               int
	MemMiB              int
}

// Figure is one measured quantity: for each init, one value per round (a
// median, or a p99, of that round's samples).
type Figure struct {
	ID      string               `json:"id"`    // e.g. "startup.wall"
	Title   string               `json:"title"` // e.g. "start-up wall (INIT -- /bin/true)"
	Unit    string               `json:"unit"`
	Higher  bool                 `json:"higher"` // higher is better
	Target  string               `json:"target,omitempty"`
	Values  map[string][]float64 `json:"values"` // init -> one value per round
	Samples map[string]int       `json:"samples,omitempty"`
}

func (r *Results) figure(id, title, unit string, higher bool, target string) *Figure {
	for _, f := range r.Figures {
		if f.ID == id {
			return f
		}
	}
	f := &Figure{ID: id, Title: title, Unit: unit, Higher: higher, Target: target,
		Values: map[string][]float64{}, Samples: map[string]int{}}
	r.Figures = append(r.Figures, f)
	return f
}

func (f *Figure) add(init string, v float64, samples int) {
	f.Values[init] = append(f.Values[init], v)
	f.Samples[init] += samples
}

// Median of the per-round values, and their range.
func (f *Figure) stat(init string) (med, lo, hi float64, ok bool) {
	v := f.Values[init]
	if len(v) == 0 {
		return 0, 0, 0, false
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return median(s), s[0], s[len(s)-1], true
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile of unsorted samples (nearest rank).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readMachine() Machine {
	m := Machine{}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				m.Cores++
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb = atoiField(v)
			}
		}
		m.MemMiB = kb / 1024
	}
	return m
}

func atoiField(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	n := 0
	for _, c := range f[0] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
