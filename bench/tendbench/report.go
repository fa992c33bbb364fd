//go:build linux

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"math"
	"os"
	"sort"
	"strings"
)

// runReport turns results.json into a Markdown table and an SVG chart.
func runReport(args []string) int {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "results.json", "results of tendbench run")
	md := fs.String("md", "", "write the Markdown tables here (default stdout)")
	svg := fs.String("svg", "", "write the SVG chart here")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	text := markdown(&res)
	if *md == "" {
		fmt.Print(text)
	} else if err := os.WriteFile(*md, []byte(text), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *svg != "" {
		if err := os.WriteFile(*svg, []byte(chart(&res)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// order is the column order: tend's builds and ways first, then the floor,
// then the peers, the supervision suites last.
var order = []string{"tend", "tend --socket", "tend --config", "tend-nodocs", "tend-nodocs --socket", "tend-nodocs --config",
	"tend API", "tend API group", "tend spawn", "empty Go + tend API", "refinit", "refinit-deps", "Go exec", "Python Popen", "tini", "dumb-init", "catatonit",
	"s6-svscan", "runsvdir", "direct"}

func names(f *Figure) []string {
	var out []string
	rank := func(n string) int {
		for i, o := range order {
			if o == n {
				return i
			}
		}
		return len(order)
	}
	for n := range f.Values {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if rank(out[i]) != rank(out[j]) {
			return rank(out[i]) < rank(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

// subjects are the rows of the summary: tend's entries in a figure.
func subjects(f *Figure) []string {
	var out []string
	for _, n := range names(f) {
		if n == "tend" || n == "tend --socket" || n == "tend --config" || n == "tend API" || n == "tend API group" || n == "tend spawn" {
			out = append(out, n)
		}
	}
	return out
}

func num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "-"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	}
	return fmt.Sprintf("%.3f", v)
}

func cell(f *Figure, n string) string {
	med, lo, hi, ok := f.stat(n)
	if !ok {
		return "-"
	}
	if len(f.Values[n]) == 1 || lo == hi {
		return num(med)
	}
	return fmt.Sprintf("%s (%s–%s)", num(med), num(lo), num(hi))
}

// verdict checks a subject's value against the target.
func verdict(f *Figure, subj string) string {
	v, _, _, ok := f.stat(subj)
	if !ok {
		return ""
	}
	ratio := func(peer string) float64 {
		p, _, _, ok := f.stat(peer)
		if !ok || p == 0 {
			return math.NaN()
		}
		return v / p
	}
	yes := func(b bool) string {
		if b {
			return "met"
		}
		return "**not met**"
	}
	switch f.ID {
	case "startup.wall":
		return yes(ratio("refinit-deps") <= 1.25 && ratio("refinit") <= 1.5)
	case "reap.p50":
		if subj == "tend" {
			return yes(v <= 1.5*bestOf(f, "tini", "dumb-init", "catatonit"))
		}
	case "signal.p50":
		if subj == "tend" {
			return yes(ratio("tini") <= 1.5)
		}
	case "idle.wakeups":
		return yes(v == 0)
	case "idle.rssanon":
		if strings.HasSuffix(subj, "--socket") || strings.HasSuffix(subj, "--config") {
			return yes(v <= 3) // the control socket is open in both
		}
		return yes(v <= 2)
	case "storm.drain":
		return yes(v < 20)
	case "storm.cpu":
		return yes(ratio("refinit") <= 1.5)
	case "reap.p99":
		return yes(v < 1000)
	case "jobs.rate.c1":
		switch subj {
		case "tend API", "tend API group":
			return yes(ratio("Go exec") >= 0.8 && ratio("Python Popen") >= 1.0)
		case "tend spawn": // a rate: at most 1.5x the reference's time
			return yes(ratio("empty Go + tend API") >= 1/1.5)
		}
	case "jobs.rate.c4":
		if subj == "tend API" || subj == "tend API group" {
			return yes(ratio("Go exec") >= 0.8)
		}
	case "size.binary":
		return yes(v < 10)
	}
	return ""
}

// bestOf is the least median among names (the best latency).
func bestOf(f *Figure, names ...string) float64 {
	best := math.Inf(1)
	for _, n := range names {
		if v, _, _, ok := f.stat(n); ok && v < best {
			best = v
		}
	}
	return best
}

func markdown(res *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Medians of %d rounds (per-round value: the round's median, or its p99 where the figure says p99); "+
		"in brackets the range of the round values. Ratios are tend's median over the other's.\n\n", res.Rounds)
	b.WriteString("| figure | tend | ratio to the floor and the peers | target | |\n|---|---|---|---|---|\n")
	for _, f := range res.Figures {
		for _, s := range subjects(f) {
			v, _, _, _ := f.stat(s)
			var ratios []string
			for _, n := range names(f) {
				if n == s || (strings.HasPrefix(n, "tend") && n != "tend-nodocs") {
					continue
				}
				p, _, _, ok := f.stat(n)
				if !ok {
					continue
				}
				r := num(v/p) + "x"
				switch {
				case p == 0 && v == 0:
					r = "both 0"
				case p == 0:
					r = "n/a (0)"
				case v == 0:
					r = "0 vs " + num(p)
				}
				ratios = append(ratios, fmt.Sprintf("%s %s", n, r))
			}
			title := f.Title
			if s != "tend" {
				title += ", " + s
			}
			fmt.Fprintf(&b, "| %s | %s %s | %s | %s | %s |\n", title, cell(f, s), f.Unit,
				strings.Join(ratios, ", "), f.Target, verdict(f, s))
		}
	}
	b.WriteString("\nEvery value (median of the rounds, range in brackets):\n\n")
	for _, f := range res.Figures {
		ns := names(f)
		fmt.Fprintf(&b, "**%s** (%s)\n\n| %s |\n|%s\n| %s |\n\n", f.Title, f.Unit, strings.Join(ns, " | "),
			strings.Repeat("---|", len(ns)), strings.Join(mapCells(f, ns), " | "))
	}
	fmt.Fprintf(&b, "Machine: %s, %d cores, %d MiB, %s, Linux %s. Load average (1, 5, 15 min) at the start of each scenario:\n",
		res.Machine.CPU, res.Machine.Cores, res.Machine.MemMiB, res.Machine.OS, res.Machine.Kernel)
	fmt.Fprintf(&b, "%s. Total run time %.0f s.\n", strings.Join(res.Loads, "; "), res.Duration)
	return b.String()
}

func mapCells(f *Figure, ns []string) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = cell(f, n)
	}
	return out
}

// chart draws one panel per figure, a bar per init (its median; the range
// of the rounds as a thin line), tend's builds in one colour.
func chart(res *Results) string {
	const (
		width  = 980
		cols   = 2
		panelW = width / cols
		labelW = 150
		barH   = 14
		gap    = 4
		head   = 22
	)
	type panel struct {
		f  *Figure
		ns []string
		h  int
	}
	var panels []panel
	for _, f := range res.Figures {
		ns := names(f)
		panels = append(panels, panel{f, ns, head + len(ns)*(barH+gap) + 12})
	}
	// Lay out in columns, row by row: each row as tall as its taller panel.
	var body strings.Builder
	y := 30
	for i := 0; i < len(panels); i += cols {
		rowH := 0
		for c := 0; c < cols && i+c < len(panels); c++ {
			p := panels[i+c]
			rowH = max(rowH, p.h)
			x := c * panelW
			fmt.Fprintf(&body, `<text x="%d" y="%d" class="t">%s (%s)</text>`+"\n", x+8, y+14,
				html.EscapeString(p.f.Title), html.EscapeString(p.f.Unit))
			top := 0.0
			for _, n := range p.ns {
				_, _, hi, _ := p.f.stat(n)
				top = math.Max(top, hi)
			}
			if top == 0 {
				top = 1
			}
			scale := float64(panelW-labelW-70) / top
			for k, n := range p.ns {
				med, lo, hi, _ := p.f.stat(n)
				by := y + head + k*(barH+gap)
				color := "#9aa5b1"
				switch {
				case strings.HasPrefix(n, "tend"):
					color = "#d9480f"
				case strings.HasPrefix(n, "refinit") || n == "Go exec" || n == "direct":
					color = "#495057"
				}
				fmt.Fprintf(&body, `<text x="%d" y="%d" class="l">%s</text>`+"\n", x+labelW-6, by+barH-3, html.EscapeString(n))
				fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x+labelW, by, math.Max(med*scale, 1), barH, color)
				if hi > lo {
					fmt.Fprintf(&body, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#000" stroke-width="1"/>`+"\n",
						float64(x+labelW)+lo*scale, float64(x+labelW)+hi*scale, by+barH/2, by+barH/2)
				}
				fmt.Fprintf(&body, `<text x="%.1f" y="%d" class="v">%s</text>`+"\n", float64(x+labelW)+math.Max(hi, med)*scale+4, by+barH-3, num(med))
			}
		}
		y += rowH + 10
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">
<style>.t{font-size:12px;font-weight:bold}.l{font-size:11px;text-anchor:end}.v{font-size:10px}</style>
<rect width="100%%" height="100%%" fill="#fff"/>
<text x="8" y="18" font-size="14" font-weight="bold">tend vs the reference Go init (dark) and other inits (grey); medians of %d rounds, line = range of the rounds; lower is better except jobs/s</text>
%s</svg>
`, width, y, width, y, res.Rounds, body.String())
}
