//go:build linux

package config

import (
	"reflect"
	"testing"
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

func TestScanLines(t *testing.T) {
	tests := []struct {
		name, toml string
		want       map[string]int
	}{
		{"tables and arrays of tables",
			"a = 1\n[control]\n# c\nsocket = \"/x\" # y\n\n[[service]]\nname = \"a\"\n[service.env]\nA = \"1\"\n[[service]]\nname = \"b\"\n",
			map[string]int{"a": 1, "control": 2, "control.socket": 4, "service[0]": 6, "service[0].name": 7,
				"service[0].env": 8, "service[0].env.A": 9, "service[1]": 10, "service[1].name": 11}},
		{"multi-line values hide look-alikes",
			"s = \"\"\"\n[[service]]\nx = 1\"\"\"\"\nl = '''\nk = 2\n'''\narr = [\n  \"[x]\", # y = 1\n  { z = 3 },\n]\nt = {\n  w = 4,\n}\nlast = 'a#b'\n",
			map[string]int{"s": 1, "l": 4, "arr": 7, "t": 11, "last": 14}},
		{"quoted and dotted keys",
			"[ \"we ird\" . 'x' ]\n\"a.b\" = 1\nc . d = 2\n\"esc\\u0041\" = 3\n",
			map[string]int{`"we ird"`: 1, `"we ird".x`: 1, `"we ird".x."a.b"`: 2, `"we ird".x.c`: 3, `"we ird".x.c.d`: 3, `"we ird".x.escA`: 4}},
		{"inline array of tables", "service = [\n {name = \"a\"},\n]\n", map[string]int{"service": 1}},
		{"escaped quotes", "a = \"x\\\"y # z\"\nb = \"\"\"\\\"\"\"\"\nc = 1\n", map[string]int{"a": 1, "b": 2, "c": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanLines([]byte(tt.toml)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("scanLines() = %v, want %v", got, tt.want)
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
