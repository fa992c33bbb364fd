//go:build linux

package config

import (
	"strings"
	"testing"
)

func TestParseMemoryMax(t *testing.T) {
	for _, c := range []struct {
		in   any
		want int64
		err  string
	}{
		{int64(33554432), 32 << 20, ""},
		{int64(1), 1, ""},
		{"4096", 4096, ""},
		{"32M", 32 << 20, ""},
		{"1K", 1 << 10, ""},
		{"2G", 2 << 30, ""},
		{"3T", 3 << 40, ""},
		{"max", NoLimit, ""},
		{"12Q", 0, `"12Q" is not a size`},
		{"-1", 0, `"-1" is not a size`},
		{"", 0, `"" is not a size`},
		{"M", 0, `"M" is not a size`},
		{"32m", 0, `"32m" is not a size`},
		{"1.5G", 0, `"1.5G" is not a size`},
		{" 32M", 0, `is not a size`},
		{"0", 0, `"0" is no memory at all`},
		{"0M", 0, `"0M" is no memory at all`},
		{"8388608T", 0, `"8388608T" is too large`},
		{"99999999999999999999", 0, "is too large"},
		{int64(0), 0, "0 is not a size in bytes"},
		{int64(-1), 0, "-1 is not a size in bytes"},
		{1.5, 0, "must be an integer or a string, not a float"},
		{true, 0, "not a boolean"},
	} {
		got, err := ParseMemoryMax(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParseMemoryMax(%#v) = %d, %v; want %d", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseMemoryMax(%#v) = %d, %v; want an error with %q", c.in, got, err, c.err)
		}
	}
}

func TestParsePidsMax(t *testing.T) {
	for _, c := range []struct {
		in   any
		want int64
		err  string
	}{
		{int64(20), 20, ""},
		{int64(1), 1, ""},
		{int64(MaxPids), MaxPids, ""},
		{"max", NoLimit, ""},
		{int64(0), 0, "0 is not a number of tasks from 1 to 4194304"},
		{int64(-1), 0, "-1 is not a number of tasks"},
		{int64(MaxPids + 1), 0, "4194305 is not a number of tasks"},
		{"20", 0, `"20" is not an integer from 1 to 4194304 or "max"`},
		{"", 0, `"" is not an integer`},
		{1.5, 0, "must be an integer or \"max\", not a float"},
	} {
		got, err := ParsePidsMax(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParsePidsMax(%#v) = %d, %v; want %d", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParsePidsMax(%#v) = %d, %v; want an error with %q", c.in, got, err, c.err)
		}
	}
}

func TestServiceLimits(t *testing.T) {
	cfg, err := Parse([]byte(svc("a", `memory_max = "32M"`, "pids_max = 20")+svc("b", `memory_max = 4096`, `pids_max = "max"`)+svc("c")), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		mem, pid int64
	}{{"a", 32 << 20, 20}, {"b", 4096, NoLimit}, {"c", DefaultMemoryMax, DefaultPidsMax}} {
		s := cfg.Service(c.name)
		if s.MemoryMax != c.mem || s.PidsMax != c.pid {
			t.Errorf("service %s: memory_max %d, pids_max %d; want %d, %d", c.name, s.MemoryMax, s.PidsMax, c.mem, c.pid)
		}
	}
	_, err = Parse([]byte(svc("a", `memory_max = "12Q"`)+svc("b", "pids_max = 0")+svc("c", `memory_max = ""`)+svc("d", `pids_max = -1`)), "bad.toml")
	for _, want := range []string{
		`bad.toml:4:1: service "a": memory_max: "12Q" is not a size`,
		`bad.toml:8:1: service "b": pids_max: 0 is not a number of tasks`,
		`bad.toml:12:1: service "c": memory_max: "" is not a size`,
		`bad.toml:16:1: service "d": pids_max: -1 is not a number of tasks`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(bad limits): %v; want %q in it", err, want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{32 << 20: "32M", 4096: "4K", 1000: "1000", 3 << 40: "3T", NoLimit: "max"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
