//go:build linux

package config

import (
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"curl -fsS http://x/health", []string{"curl", "-fsS", "http://x/health"}, false},
		{"  a \t b\n c  ", []string{"a", "b", "c"}, false},
		{`sh -c 'test -S "$SOCK"'`, []string{"sh", "-c", `test -S "$SOCK"`}, false},
		{`echo "a b" "c\"d" "e\f" "$x"`, []string{"echo", "a b", `c"d`, `e\f`, "$x"}, false},
		{`a\ b c\\d \'`, []string{"a b", `c\d`, "'"}, false},
		{`x"y z"'w'`, []string{"xy zw"}, false},
		{`a '' ""`, []string{"a", "", ""}, false},
		{"a\\\nb", []string{"ab"}, false},
		{"", nil, true},
		{"   ", nil, true},
		{`a 'b`, nil, true},
		{`a "b`, nil, true},
		{`a "b\"`, nil, true},
		{`a\`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestScanPositions(t *testing.T) {
	tests := []struct {
		name, toml string
		want       map[string]pos
	}{
		{"tables and arrays of tables",
			"a = 1\n[control]\n# c\n  socket = \"/x\" # y\n\n[[service]]\nname = \"a\"\n[service.env]\nA = \"1\"\n[[service]]\nname = \"b\"\n",
			map[string]pos{"a": {1, 1}, "control": {2, 1}, "control.socket": {4, 3}, "service": {6, 1}, "service[0]": {6, 1}, "service[0].name": {7, 1},
				"service[0].env": {8, 1}, "service[0].env.A": {9, 1}, "service[1]": {10, 1}, "service[1].name": {11, 1}}},
		{"multi-line values hide look-alikes",
			"s = \"\"\"\n[[service]]\nx = 1\"\"\"\"\nl = '''\nk = 2\n'''\narr = [\n  \"[x]\", # y = 1\n  { z = 3 },\n]\nt = {\n  w = 4,\n}\nlast = 'a#b'\n",
			map[string]pos{"s": {1, 1}, "l": {4, 1}, "arr": {7, 1}, "arr[0]": {8, 3}, "arr[1]": {9, 3}, "arr[1].z": {9, 5},
				"t": {11, 1}, "t.w": {12, 3}, "last": {14, 1}}},
		{"quoted and dotted keys",
			"[ \"we ird\" . 'x' ]\n\"a.b\" = 1\nc . d = 2\n\"esc\\u0041\" = 3\n",
			map[string]pos{`"we ird"`: {1, 1}, `"we ird".x`: {1, 1}, `"we ird".x."a.b"`: {2, 1}, `"we ird".x.c`: {3, 1},
				`"we ird".x.c.d`: {3, 5}, `"we ird".x.escA`: {4, 1}}},
		{"inline array of tables", "service = [\n {name = \"a\", command = [\"x\", \"y\"]},\n\t{ env = { A = \"1\" } } ]\n",
			map[string]pos{"service": {1, 1}, "service[0]": {2, 2}, "service[0].name": {2, 3}, "service[0].command": {2, 15},
				"service[0].command[0]": {2, 26}, "service[0].command[1]": {2, 31}, "service[1]": {3, 2}, "service[1].env": {3, 4},
				"service[1].env.A": {3, 12}}},
		{"scalars and nested arrays", "d = 1979-05-27 07:32:00Z\nn = [[1, 2], [3]] # c\nb = true\n",
			map[string]pos{"d": {1, 1}, "n": {2, 1}, "n[0]": {2, 6}, "n[0][0]": {2, 7}, "n[0][1]": {2, 10}, "n[1]": {2, 14},
				"n[1][0]": {2, 15}, "b": {3, 1}}},
		{"escaped quotes", "a = \"x\\\"y # z\"\nb = \"\"\"\\\"\"\"\"\nc = 1\n", map[string]pos{"a": {1, 1}, "b": {2, 1}, "c": {3, 1}}},
		{"byte order mark and CRLF", "\ufeffa = 1\r\nb = [ 2 ]\r\n", map[string]pos{"a": {1, 1}, "b": {2, 1}, "b[0]": {2, 7}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := toml.Decode(tt.toml, new(map[string]any)); err != nil {
				t.Fatalf("the decoder refuses the test's file: %v", err)
			}
			if got := scanPositions([]byte(tt.toml)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("scanPositions() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestInlineServices checks that services written as an inline array are
// read like [[service]] tables.
func TestInlineServices(t *testing.T) {
	cfg, err := Parse([]byte("service = [\n  { name = \"a\", command = [\"x\"] },\n  { name = \"b\", command = [\"y\"], after = [\"a\"] },\n]\n"), "inline.toml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if got, want := cfg.StartLevels(), [][]string{{"a"}, {"b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("StartLevels() = %v, want %v", got, want)
	}
	if _, err := Parse([]byte("service = [1]\n"), "inline.toml"); err == nil {
		t.Errorf("Parse(service = [1]) error = nil, want one")
	}
	if cfg, err := Parse([]byte("service = []\n"), "inline.toml"); err != nil || len(cfg.Services) != 0 {
		t.Errorf("Parse(service = []) = %v, %v; want no services, no error", cfg, err)
	}
}

// FuzzParse checks that no input makes Parse panic: the line scanner runs
// on whatever the decoder accepts.
func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte("s = \"\"\"\n[[x]]\"\"\"\"\n[a.\"b\".'c']\nd = [\n{e = 1},\n]\n"))
	f.Add([]byte("service = [{name = \"a\", command = [\"x\"], ready = \"exec:a 'b' \\\"c\\\"\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.toml")
		if (cfg == nil) == (err == nil) {
			t.Errorf("Parse() = %v, %v; want exactly one of them", cfg, err)
		}
	})
}
