//go:build linux

package test

import (
	"os"
	"strings"
	"testing"
)

// TestSupervisorBadConfig: a config with anything wrong is refused with
// exit 2, "config refused:" and the problem named on stderr, and nothing is
// started: neither its valid services nor the main command.
func TestSupervisorBadConfig(t *testing.T) {
	t.Parallel()
	// bad is the service the case breaks; it and the others would leave a
	// file in $D if they ran.
	bad := func(keys ...string) func(dir string) string {
		return func(dir string) string {
			return svShell("ok", dir, `: > "$D/ok.ran"; exec sleep 1000`) +
				svShell("bad", dir, `: > "$D/bad.ran"; exec sleep 1000`, keys...)
		}
	}
	raw := func(body string) func(dir string) string {
		return func(dir string) string {
			return svShell("ok", dir, `: > "$D/ok.ran"; exec sleep 1000`) +
				strings.ReplaceAll(body, "DIR", dir)
		}
	}
	touch := `command = ["sh", "-c", ": > DIR/other.ran"]`
	for _, tc := range []struct {
		name string
		cfg  func(dir string) string
		want []string // each must appear on stderr
	}{
		{"unknown key", bad(`restrat = "always"`), []string{`tend.toml:11:1: service "bad": restrat: unknown key`}},
		{"unknown top-level key", raw("[shutdwon]\ngrace = \"1s\"\n"), []string{"shutdwon", "unknown key"}},
		{"bad duration", bad(`backoff = "fast"`), []string{`service "bad": backoff`, `invalid duration "fast"`}},
		{"bad grace", raw("[shutdown]\ngrace = \"-1s\"\n"), []string{"shutdown: grace", `"-1s"`}},
		{"unknown stop_signal", bad(`stop_signal = "SIGFOO"`), []string{`service "bad": stop_signal`, `"SIGFOO"`}},
		{"unknown signal in signals", bad(`signals = { SIGFOO = "" }`), []string{`service "bad": signals`, `"SIGFOO"`}},
		{"unknown signal as a route", bad(`signals = { SIGHUP = "SIGNOPE" }`), []string{`service "bad": signals`, `SIGNOPE`}},
		{"bad restart", bad(`restart = "sometimes"`), []string{`service "bad": restart`, `"sometimes"`}},
		{"missing name", raw("[[service]]\n" + touch + "\n"), []string{"service[1]: name: missing"}},
		{"missing command", raw("[[service]]\nname = \"other\"\n"), []string{`service "other": command: missing`}},
		{"empty command", raw("[[service]]\nname = \"other\"\ncommand = []\n"), []string{`service "other": command: empty`}},
		{"reserved name main", raw("[[service]]\nname = \"main\"\n" + touch + "\n"), []string{`"main" is reserved`}},
		{"duplicate name", raw("[[service]]\nname = \"ok\"\n" + touch + "\n"), []string{`"ok" is already the name of service[0]`}},
		{"cycle in after", raw("[[service]]\nname = \"x\"\nafter = [\"y\"]\n" + touch + "\n[[service]]\nname = \"y\"\nafter = [\"x\"]\n" + touch + "\n"),
			[]string{"cycle x -> y -> x"}},
		{"unknown after", bad(`after = ["zz"]`), []string{`service "bad": after: unknown service "zz"`}},
		{"user that does not exist", bad(`user = "tend-no-such-user"`), []string{`service "bad": user: "tend-no-such-user": no such user`}},
		{"unknown user with another error", bad("user = \"tend-no-such-user\"\nrestart = \"sometimes\""),
			[]string{"2 errors", `service "bad": user: "tend-no-such-user": no such user`, `service "bad": restart: "sometimes"`}},
		{"bad user form", bad(`user = "a:b"`), []string{`service "bad": user`, `"a:b"`}},
		{"NUL bytes in command, env and dir", raw("[[service]]\nname = \"nul\"\ncommand = [\"sh\", \"-c\", \"x\\u0000y\"]\n" +
			"env = { A = \"1\\u0000\" }\ndir = \"/tmp\\u0000\"\nuser = \"tend-no-such-user\"\n"),
			[]string{"4 errors", `tend.toml:8:24: service "nul": command[2]: contains a NUL byte`, `tend.toml:9:9: service "nul": env: A: contains a NUL byte`,
				`tend.toml:10:1: service "nul": dir: contains a NUL byte`, `tend.toml:11:1: service "nul": user: "tend-no-such-user": no such user`}},
		{"bad ready", bad(`ready = "tcp:1"`), []string{`service "bad": ready`, `"tcp:1"`}},
		{"TOML syntax", raw("[[service]]\nname = \n"), []string{"tend.toml:7:8: toml: expected value"}},
		{"three errors", raw("[shutdown]\ngrace = \"x\"\n[[service]]\nname = \"p\"\n" + touch + "\nrestart = \"sometimes\"\n" +
			"[[service]]\nname = \"q\"\n" + touch + "\nafter = [\"nobody-here\"]\n"),
			[]string{"config refused: 3 errors in ", "/tend.toml:\n", `tend.toml:7:1: shutdown: grace: time: invalid duration "x"` + "\n",
				`tend.toml:11:1: service "p": restart: "sometimes"`, `tend.toml:15:10: service "q": after: unknown service "nobody-here"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := svStart(t, opts{pid1: true, env: []string{"D=" + dir}}, dir, tc.cfg(dir), "--", "sh", "-c", `: > "$D/main.ran"`)
			r.expectExit(2)
			stderr := r.stderrAll()
			for _, w := range append([]string{"config refused:"}, tc.want...) {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, stderr)
				}
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".ran") {
					t.Errorf("%s exists: something was started from a refused config", e.Name())
				}
			}
			if out := r.rest(); len(out) != 0 {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if strings.Contains(stderr, "service starting") {
				t.Errorf("a service was started:\n%s", stderr)
			}
		})
	}
}
