//go:build linux

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"
)

// svc is a valid service table to which a test adds one bad line.
func svc(name string, lines ...string) string {
	return "[[service]]\nname = \"" + name + "\"\ncommand = [\"x\"]\n" + strings.Join(lines, "\n") + "\n"
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string // each must be in the error
	}{
		{"syntax error", "[jobs]\nmax_running = 8\nkeep = \n", []string{"bad.toml:3:8: toml: expected value"}},
		{"duplicate key", "[jobs]\nkeep = \"1h\"\nkeep = \"2h\"\n", []string{"bad.toml:3:", "'jobs.keep' has already been defined"}},
		{"unknown top key", "\nrestrt = 1\n", []string{"bad.toml:2:1: restrt: unknown key"}},
		{"unknown table", "[contrl]\nsocket = \"/x\"\n", []string{"bad.toml:1:1: contrl: unknown key"}},
		{"unknown control key", "[control]\nsockt = \"/x\"\n", []string{"bad.toml:2:1: control: sockt: unknown key"}},
		{"unknown key in inline table", "\n\ncontrol = { sockt = \"/x\" }\n", []string{"bad.toml:3:13: control: sockt: unknown key"}},
		{"unknown service key", svc("a") + svc("b", "restrt = \"always\""), []string{`bad.toml:8:1: service "b": restrt: unknown key`}},
		{"key in wrong case", svc("a", `Restart = "never"`), []string{`bad.toml:4:1: service "a": Restart: unknown key (did you mean "restart"?)`}},
		{"unknown key in inline service", "service = [{name = \"a\", command = [\"x\"]},\n  {name = \"b\", command = [\"x\"], bogus = 1}]\n", []string{`bad.toml:2:33: service "b": bogus: unknown key`}},
		{"service is a table", "[service]\nname = \"a\"\n", []string{"service: must be an array of tables ([[service]]), not a table"}},
		{"control is no table", "control = 5\n", []string{"control: must be a table, not an integer"}},
		{"bad socket path", "[control]\nsocket = \"run/tend.sock\"\n", []string{"control: socket:", "not an absolute path"}},
		{"long socket path", "[control]\nsocket = \"/" + strings.Repeat("s", 110) + "\"\n", []string{"control: socket:", "longer than 107"}},
		{"bad mode", "[control]\nmode = \"0688\"\n", []string{"control: mode:", `"0688" is not an octal file mode`}},
		{"mode bits", "[control]\nmode = \"04755\"\n", []string{"control: mode:", "outside 0777"}},
		{"integer mode", "[control]\nmode = 0o660\n", []string{"control: mode: must be a string, not an integer"}},
		{"group without access", "[control]\ngroup = \"agents\"\n", []string{"control: group:", "0600", "0660"}},
		{"zero idle timeout", "[control]\nidle_timeout = \"0\"\n", []string{"control: idle_timeout: must be more than 0"}},
		{"bad idle timeout", "[control]\nidle_timeout = \"soon\"\n", []string{"control: idle_timeout:", `"soon"`}},
		{"no connections", "[control]\nmax_connections = 0\n", []string{"control: max_connections: 0 is less than 1"}},
		{"no connections per uid", "[control]\nmax_connections_per_uid = -1\n", []string{"control: max_connections_per_uid: -1 is less than 1"}},
		{"zero read header timeout", "[control]\nread_header_timeout = \"0s\"\n", []string{"control: read_header_timeout: must be more than 0"}},
		{"negative reserve", "[control]\nreserved_connections = -1\n", []string{"control: reserved_connections: -1 is less than 0"}},
		{"tiny body limit", "[control]\nmax_body_bytes = 100\n", []string{"control: max_body_bytes: 100 is less than 1024"}},
		{"tiny URL limit", "[control]\nmax_url_bytes = 0\n", []string{"control: max_url_bytes: 0 is less than 1024"}},
		{"tiny header limit", "[control]\nmax_header_bytes = 1023\n", []string{"control: max_header_bytes: 1023 is less than 1024"}},
		{"string connections", "[control]\nmax_connections = \"9\"\n", []string{"control: max_connections: must be an integer, not a string"}},
		{"bad grace", "[shutdown]\ngrace = \"10\"\n", []string{"shutdown: grace:", "missing unit"}},
		{"zero grace", "[shutdown]\ngrace = \"0\"\n", []string{"shutdown: grace: \"0\" is not a budget", "30s"}},
		{"zero grace 0s", "[shutdown]\ngrace = \"0s\"\n", []string{"shutdown: grace: \"0\" is not a budget"}},
		{"killed_exit_code over 255", "[shutdown]\nkilled_exit_code = 256\n", []string{"bad.toml:2:1: shutdown: killed_exit_code: 256 is not an exit code: want 1-255"}},
		{"killed_exit_code negative", "[shutdown]\nkilled_exit_code = -1\n", []string{"shutdown: killed_exit_code: -1 is less than 0"}},
		{"duration as integer", "[jobs]\ntimeout = 30\n", []string{"jobs: timeout: must be a string, not an integer"}},
		{"no running jobs", "[jobs]\nmax_running = 0\n", []string{"jobs: max_running: 0 is less than 1"}},
		{"tiny record budget", "[jobs]\nmax_record_bytes = 1000\n", []string{"jobs: max_record_bytes: 1000 is less than 65536"}},
		{"record argv over request argv", "[jobs]\nmax_argv_bytes = 100\nrecord_argv_bytes = 200\n", []string{"jobs: record_argv_bytes: 200 is more than max_argv_bytes (100)"}},
		{"no argv", "[jobs]\nmax_argv = 0\n", []string{"jobs: max_argv: 0 is less than 1"}},
		{"page over max", "[control]\npage_size = 50\nmax_page_size = 10\n", []string{"control: page_size: 50 is more than max_page_size (10)"}},
		{"per-uid subscribers over all", "[control]\nmax_subscribers = 4\nmax_subscribers_per_uid = 5\n", []string{"control: max_subscribers_per_uid: 5 is more than max_subscribers (4)"}},
		{"parked fds below one request", "[control]\nmax_parked_fds_per_uid = 2\n", []string{"control: max_parked_fds_per_uid: 2 is less than 3"}},
		{"negative queue", "[jobs]\nmax_queued = -1\n", []string{"jobs: max_queued: -1 is less than 0"}},
		{"zero keep", "[jobs]\nkeep = \"0s\"\n", []string{"jobs: keep: must be more than 0"}},
		{"missing name", "[[service]]\ncommand = [\"x\"]\n", []string{"service[0]: name: missing"}},
		{"name not a string", "[[service]]\nname = 1\ncommand = [\"x\"]\n", []string{"service[0]: name: must be a string, not an integer"}},
		{"missing command", "[[service]]\nname = \"a\"\n", []string{`service "a": command: missing`}},
		{"empty command", "[[service]]\nname = \"a\"\ncommand = []\n", []string{`service "a": command: empty`}},
		{"empty program", "[[service]]\nname = \"a\"\ncommand = [\"\", \"x\"]\n", []string{`service "a": command: the program name is empty`}},
		{"command as string", "[[service]]\nname = \"a\"\ncommand = \"a b\"\n", []string{`service "a": command: must be an array of strings`}},
		{"reserved name", svc("main"), []string{`service[0]: name: "main" is reserved`}},
		{"bad name", svc("a b"), []string{`service[0]: name: "a b" is not made of letters`}},
		{"dot name", svc(".."), []string{`service[0]: name: ".." is a path element`}},
		{"duplicate name", svc("a") + svc("b") + svc("a"), []string{`service[2]: name: "a" is already the name of service[0]`}},
		{"empty dir", svc("a", `dir = ""`), []string{`service "a": dir: empty`}},
		{"env not a string", svc("a", "env = { N = 1 }"), []string{`service "a": env: N: must be a string, not an integer`}},
		{"env name with =", svc("a", `env = { "A=B" = "c" }`), []string{`service "a": env: "A=B" is not a variable name: it contains '='`}},
		{"bad user", svc("a", `user = "hermes:staff"`), []string{`service "a": user: "hermes:staff" is not a name or uid[:gid]`}},
		{"bad restart", svc("a", `restart = "sometimes"`), []string{`service "a": restart: "sometimes" is not one of always, on-failure, never`}},
		{"code out of range", svc("a", "restart_now = [256]"), []string{`service "a": restart_now: exit code 256 is not an integer in 0-255`}},
		{"negative code", svc("a", "never_restart = [-1]"), []string{`service "a": never_restart: exit code -1`}},
		{"code in both", svc("a", "restart_now = [75]", "never_restart = [75]"), []string{`service "a": never_restart: exit code 75 is also in restart_now`}},
		{"bad backoff", svc("a", `backoff = "soon"`), []string{`service "a": backoff: time: invalid duration "soon"`}},
		{"negative backoff", svc("a", `backoff = "-1s"`), []string{`service "a": backoff: negative duration "-1s"`}},
		{"zero backoff", svc("a", `backoff = "0"`), []string{`service "a": backoff: must be more than 0`}},
		{"backoff_max below backoff", svc("a", `backoff = "1m"`), []string{`service "a": backoff_max: 30s is less than backoff 1m0s`}},
		{"negative max_restarts", svc("a", "max_restarts = -1"), []string{`service "a": max_restarts: -1 is less than 0`}},
		{"zero restart_window", svc("a", `restart_window = "0"`), []string{`service "a": restart_window: must be more than 0`}},
		{"critical not a bool", svc("a", `critical = "yes"`), []string{`service "a": critical: must be true or false, not a string`}},
		{"unknown stop signal", svc("a", `stop_signal = "SIGFOO"`), []string{`service "a": stop_signal: unknown signal "SIGFOO"`}},
		{"stop signal out of range", svc("a", `stop_signal = 65`), []string{`service "a": stop_signal: signal number 65 out of range`}},
		{"negative stop_timeout", svc("a", `stop_timeout = "-5s"`), []string{`service "a": stop_timeout: negative duration`}},
		{"zero ready_timeout", svc("a", `ready_timeout = "0"`), []string{`service "a": ready_timeout: must be more than 0`}},
		{"ready unknown", svc("a", `ready = "socket"`), []string{`service "a": ready: "socket" is not "started", "notify", "fd:N", "exec:CMD", "tcp:HOST:PORT" or "http://HOST:PORT/PATH"`}},
		{"empty ready exec", svc("a", `ready = "exec:  "`), []string{`service "a": ready: exec: empty command`}},
		{"unterminated ready exec", svc("a", `ready = "exec:curl 'http://x"`), []string{`service "a": ready: exec: unterminated '`}},
		{"unknown signal key", svc("a", `signals = { SIGBOGUS = "" }`), []string{`service "a": signals: unknown signal "SIGBOGUS"`}},
		{"unforwardable signal key", svc("a", `signals = { SIGCHLD = "SIGHUP" }`), []string{`service "a": signals: SIGCHLD is never forwarded`}},
		{"unknown signal value", svc("a", `signals = { SIGHUP = "SIGNOPE" }`), []string{`service "a": signals: SIGHUP: unknown signal "SIGNOPE"`}},
		{"signal value type", svc("a", `signals = { SIGHUP = true }`), []string{`service "a": signals: SIGHUP: must be a signal name or number, not a boolean`}},
		{"same signal twice", svc("a", `signals = { HUP = "", SIGHUP = "USR1" }`), []string{`service "a": signals: HUP and SIGHUP name the same signal`}},
		{"NUL in the program", "[[service]]\nname = \"a\"\ncommand = [\"x\\u0000\"]\n", []string{`bad.toml:3:12: service "a": command[0]: contains a NUL byte`}},
		{"NUL in an argument", "[[service]]\nname = \"a\"\ncommand = [\"x\", \"-c\", \"a\\u0000b\"]\n", []string{`bad.toml:3:23: service "a": command[2]: contains a NUL byte`}},
		{"NUL in an env name", svc("a", `env = { "A\u0000" = "1" }`), []string{`bad.toml:4:9: service "a": env: variable name "A\x00" contains a NUL byte`}},
		{"NUL in an env value", svc("a", `env = { A = "1", B = "\u0000" }`), []string{`bad.toml:4:18: service "a": env: B: contains a NUL byte`}},
		{"NUL in a quoted env name's value", svc("a", `env = { "a b" = "\u0000" }`), []string{`service "a": env: "a b": contains a NUL byte`}},
		{"empty env name", svc("a", `env = { "" = "1" }`), []string{`bad.toml:4:9: service "a": env: empty variable name`}},
		{"NUL in dir", svc("a", `dir = "/x\u0000y"`), []string{`bad.toml:4:1: service "a": dir: contains a NUL byte`}},
		{"NUL in user", svc("a", `user = "hermes\u0000"`), []string{`service "a": user: contains a NUL byte`}},
		{"NUL in ready", svc("a", `ready = "exec:curl\u0000"`), []string{`service "a": ready: contains a NUL byte`}},
		{"NUL in a signal name", svc("a", `signals = { "HUP\u0000" = "" }`), []string{`bad.toml:4:13: service "a": signals: signal name "HUP\x00" contains a NUL byte`}},
		{"NUL in a signal route", svc("a", `signals = { HUP = "TERM\u0000" }`), []string{`service "a": signals: HUP: contains a NUL byte`}},
		{"NUL in stop_signal", svc("a", `stop_signal = "TERM\u0000"`), []string{`service "a": stop_signal: contains a NUL byte`}},
		{"NUL in after", svc("a", `after = ["b\u0000"]`), []string{`bad.toml:4:10: service "a": after[0]: contains a NUL byte`}},
		{"NUL in the socket path", "[control]\nsocket = \"/run/x\\u0000y\"\n", []string{"bad.toml:2:1: control: socket: contains a NUL byte"}},
		{"NUL in the group", "[control]\nmode = \"0660\"\ngroup = \"a\\u0000\"\n", []string{"bad.toml:3:1: control: group: contains a NUL byte"}},
		{"unknown after", svc("a", `after = ["db"]`), []string{`service "a": after: unknown service "db"`}},
		{"after main", svc("a", `after = ["main"]`), []string{`service "a": after: "main" (the command after --) cannot be waited for`}},
		{"after twice", svc("a") + svc("b", `after = ["a", "a"]`), []string{`service "b": after: "a" is listed twice`}},
		{"self cycle", svc("a", `after = ["a"]`), []string{`service "a": after: cycle a -> a`}},
		{"cycle", svc("a", `after = ["b"]`) + svc("b", `after = ["a"]`), []string{`after: cycle a -> b -> a`}},
		{"long cycle", svc("a", `after = ["c"]`) + svc("b", `after = ["a"]`) + svc("c", `after = ["b"]`) + svc("d", `after = ["a"]`),
			[]string{`after: cycle a -> c -> b -> a`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.toml), "bad.toml")
			if err == nil {
				t.Fatalf("Parse() = %+v, nil; want an error", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse() config = %+v, want nil with the error", cfg)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Parse() error = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

// TestParseReportsAll checks that distinct errors are all reported at once,
// one per line, and stay reachable as a *multierror.Error of *Problem.
func TestParseReportsAll(t *testing.T) {
	doc := svc("gateway", `backoff = "fast"`, `restrt = "always"`) + svc("helper", `after = ["gatewy"]`)
	_, err := Parse([]byte(doc), "three.toml")
	if err == nil {
		t.Fatal("Parse() error = nil, want three errors")
	}
	var merr *multierror.Error
	if !errors.As(err, &merr) || len(merr.Errors) != 3 {
		t.Fatalf("Parse() error is not a *multierror.Error of 3 errors: %#v", err)
	}
	want := []Problem{{"three.toml", 4, 1, nil}, {"three.toml", 5, 1, nil}, {"three.toml", 9, 10, nil}}
	for i, e := range merr.Errors {
		var p *Problem
		if !errors.As(e, &p) || p.File != want[i].File || p.Line != want[i].Line || p.Col != want[i].Col {
			t.Errorf("error %d = %#v, want a *Problem at %s:%d:%d", i, e, want[i].File, want[i].Line, want[i].Col)
		}
	}
	checkProblems(t, err, "three.toml")
}

// TestParseErrorLines pins the format of a refused file: one problem per
// line, FILE:LINE:COL and the service by name, in file order, under a count.
func TestParseErrorLines(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"one problem is one line", "[[service]]\nname = \"web\"\ncommand = [\"web\"]\n  restart = \"sometimes\"\n",
			[]string{`tend.toml:4:3: service "web": restart: "sometimes" is not one of always, on-failure, never`}},
		{"syntax error", "[[service]]\nname = \n",
			[]string{`tend.toml:2:8: toml: expected value but found '\n' instead (last key "service.name")`}},
		{"file order, whatever the order of checks",
			"[[service]]\nname = \"p\"\ncommand = [\"p\"]\nrestart = \"sometimes\"\n\n[shutdown]\ngrace = \"x\"\n\n" +
				"[[service]]\nname = \"q\"\ncommand = [\"q\"]\nafter = [\"p\", \"nobody-here\"]\n",
			[]string{
				"3 errors in tend.toml:",
				`tend.toml:4:1: service "p": restart: "sometimes" is not one of always, on-failure, never`,
				`tend.toml:7:1: shutdown: grace: time: invalid duration "x"`,
				`tend.toml:12:15: service "q": after: unknown service "nobody-here"`,
			}},
		{"keys and elements inside inline tables and arrays",
			"service = [\n  { name = \"a\", command = [\"a\", \"\\u0000\"], env = { \"A=B\" = \"1\", N = 2 }, bogus = 1 },\n" +
				"  { name = \"b\", command = [\"b\"], after = [\"b\"], never_restart = [0, 300] },\n]\n",
			[]string{
				"6 errors in tend.toml:",
				`tend.toml:2:33: service "a": command[1]: contains a NUL byte`,
				`tend.toml:2:52: service "a": env: "A=B" is not a variable name: it contains '='`,
				`tend.toml:2:65: service "a": env: N: must be a string, not an integer`,
				`tend.toml:2:74: service "a": bogus: unknown key`,
				`tend.toml:3:43: service "b": after: cycle b -> b`,
				`tend.toml:3:69: service "b": never_restart: exit code 300 is not an integer in 0-255`,
			}},
		{"problems of the service table itself, and of a second name",
			"[[service]]\nname = \"a\"\n\n[[service]]\ncommand = [\"x\"]\n\n[[service]]\n  name = \"a\"\n  command = [\"y\"]\n",
			[]string{
				"3 errors in tend.toml:",
				`tend.toml:1:1: service "a": command: missing`,
				`tend.toml:4:1: service[1]: name: missing`,
				`tend.toml:8:3: service[2]: name: "a" is already the name of service[0] (line 1)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.toml), "tend.toml")
			if err == nil {
				t.Fatalf("Parse() error = nil, want\n%s", strings.Join(tt.want, "\n"))
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("Parse() error =\n%s\nwant\n%s", err, strings.Join(tt.want, "\n"))
			}
			checkProblems(t, err, "tend.toml")
		})
	}
}

// TestParseWithCheckUser checks that users are checked by the caller's
// hook, inside the same collection as every other error, at the user key.
func TestParseWithCheckUser(t *testing.T) {
	errNoUser := errors.New("unknown user")
	var asked []string
	o := Options{CheckUser: func(spec string) error {
		asked = append(asked, spec)
		if spec == "nobody-here" {
			return fmt.Errorf("user %q: %w", spec, errNoUser)
		}
		return nil
	}}
	doc := svc("a", `user = "nobody-here"`) + svc("b", `user = "1000:1000"`, `backoff = "soon"`) +
		svc("c", `user = "a:b"`) + svc("d")
	_, err := ParseWith([]byte(doc), "users.toml", o)
	want := []string{
		"3 errors in users.toml:",
		`users.toml:4:1: service "a": user: user "nobody-here": unknown user`,
		`users.toml:9:1: service "b": backoff: time: invalid duration "soon"`,
		`users.toml:13:1: service "c": user: "a:b" is not a name or uid[:gid]`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("ParseWith() error =\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	if !errors.Is(err, errNoUser) {
		t.Errorf("ParseWith() error = %v, want it to wrap CheckUser's error", err)
	}
	if want := []string{"nobody-here", "1000:1000"}; !slices.Equal(asked, want) {
		t.Errorf("CheckUser was given %q, want %q (only well-formed users)", asked, want)
	}

	asked = nil
	if _, err := Parse([]byte(svc("a", `user = "nobody-here"`)), "users.toml"); err != nil || asked != nil {
		t.Errorf("Parse() = %v and CheckUser was given %q; want no error and no call", err, asked)
	}
	path := filepath.Join(t.TempDir(), "tend.toml")
	if err := os.WriteFile(path, []byte(svc("a", `user = "nobody-here"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith(path, o); err == nil || err.Error() != path+`:4:1: service "a": user: user "nobody-here": unknown user` {
		t.Errorf("LoadWith() error = %v, want the unknown user at %s:4:1", err, path)
	}
}
