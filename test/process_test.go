//go:build linux

package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// hardNofile is this process's (and so tend's) hard RLIMIT_NOFILE.
func hardNofile(t *testing.T) string {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(l.Max, 10)
}

// hasCapResource reports whether this test (and so tend, its child) has
// CAP_SYS_RESOURCE, which lets a hard limit be raised.
func hasCapResource(t *testing.T) bool {
	for _, l := range strings.Split(readFile(t, "/proc/self/status"), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			eff, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return eff&(1<<24) != 0
		}
	}
	return false
}

// procReport writes what a run got: umask, nice, limits, no_new_privs, env.
const procReport = `out="$W/$1.out"; { umask; awk '{print "nice", $19}' /proc/self/stat; ` +
	`grep -E '^(Max open files|Max core file size|Max processes)' /proc/self/limits | tr -s ' '; ` +
	`grep NoNewPrivs /proc/self/status; echo "A=$A B=$B C=$C"; } > "$out.tmp"; mv "$out.tmp" "$out"; exec sleep 1000`

// TestSupervisorProcessSettings: umask, nice, rlimits, no_new_privs and
// env_file reach each run of a service, set before its exec, with group
// and subreaper tracking (and the TEND_TRACK pass): as root and, through
// the trampoline, for a uid 1000 service whose nice is lowered and hard
// limit raised (root's right, applied before the drop). A missing env_file
// and a limit the subreaper helper could not set as the user are refused at
// start, exit 2, naming them; env_file_optional lets the file be absent.
func TestSupervisorProcessSettings(t *testing.T) {
	t.Parallel()
	for _, track := range []string{"group", "subreaper"} {
		t.Run(track, func(t *testing.T) {
			t.Parallel()
			dir := hDir(t)
			w := filepath.Join(dir, "w")
			os.Mkdir(w, 0o777)
			os.Chmod(w, 0o777)
			envFile := filepath.Join(dir, "app.env")
			os.WriteFile(envFile, []byte("# settings\nA=1\n\nexport C='three'\nB=\"from file\"\n"), 0o644)
			if err := os.WriteFile(filepath.Join(dir, "report.sh"), []byte(procReport), 0o755); err != nil {
				t.Fatal(err)
			}
			svc := func(name string, extra ...string) string {
				return "\n[[service]]\nname = " + svQuote(name) + "\ncommand = [\"sh\", " + svQuote(filepath.Join(dir, "report.sh")) + ", " + svQuote(name) + "]\n" +
					"env = { W = " + svQuote(w) + ", B = \"from table\" }\ntrack = " + svQuote(track) + "\n" + strings.Join(extra, "\n") + "\n"
			}
			body := svc("root", `umask = "0027"`, "nice = 5", "no_new_privs = true", "env_file = "+svQuote(envFile),
				`rlimits = { nofile = 1234, core = 0, nproc = "100:200" }`) +
				svc("plain", `env_file = "/nonexistent/app.env"`, "env_file_optional = true")
			if track == "group" {
				// Lowering nice needs CAP_SYS_NICE, which root has here
				// (not CAP_SYS_RESOURCE: the hard limit stays tend's).
				body += svc("user", `user = "1000:1000"`, "nice = -5", `rlimits = { nofile = "2048:`+hardNofile(t)+`" }`)
			}
			r := svStart(t, opts{pid1: true}, dir, body)
			names := []string{"root", "plain"}
			if track == "group" {
				names = append(names, "user")
			}
			got := map[string]string{}
			for _, n := range names {
				svPoll(t, r, svWait, n+" reported", func() bool { return svExists(filepath.Join(w, n+".out")) })
				got[n] = readFile(t, filepath.Join(w, n+".out"))
			}
			for _, want := range []string{"0027\n", "nice 5\n", "Max open files 1234 1234 files", "Max core file size 0 0 bytes",
				"Max processes 100 200 processes", "NoNewPrivs:\t1", "A=1 B=from table C=three"} {
				if !strings.Contains(got["root"], want) {
					t.Errorf("root's run lacks %q:\n%s", want, got["root"])
				}
			}
			if !strings.Contains(got["plain"], "NoNewPrivs:\t0") || !strings.Contains(got["plain"], "A= B=from table C=") {
				t.Errorf("plain (nothing set, optional env_file absent):\n%s", got["plain"])
			}
			if track == "group" {
				for _, want := range []string{"nice -5\n", "Max open files 2048 " + hardNofile(t) + " files"} {
					if !strings.Contains(got["user"], want) {
						t.Errorf("uid 1000's run lacks %q:\n%s", want, got["user"])
					}
				}
			}
			svTermAndExit(t, r)
		})
	}
	for _, tc := range []struct{ body, want string }{
		{"env_file = \"/nonexistent/app.env\"", `service "s": env_file: open /nonexistent/app.env: no such file or directory`},
		{"user = \"1000:1000\"\ntrack = \"subreaper\"\nnice = -5", `service "s": nice: -5 is below tend's own 0, which only CAP_SYS_NICE may lower: the subreaper helper runs as the service's user`},
		{"user = \"1000:1000\"\ntrack = \"subreaper\"\nrlimits = { nofile = \"10:99999999\" }", `rlimits: nofile: hard limit 99999999 is above tend's own`},
		{"rlimits = { nofile = \"10:unlimited\" }", "rlimits: nofile: hard limit unlimited is above tend's own"},
		{`umask = "0999"`, `umask: "0999" is not an octal mask`},
		{"nice = 30", "nice: 30 is not a nice value from -20 to 19"},
		{"rlimits = { files = 3 }", `rlimits: "files" is not a resource: want one of as, core,`},
		{`rlimits = { nofile = "9:3" }`, "rlimits: nofile: soft 9 is above hard 3"},
		{"env_file_optional = true", "env_file_optional: without env_file"},
	} {
		if strings.Contains(tc.body, "10:unlimited") && hasCapResource(t) {
			t.Logf("%s: not refused here, where tend would have CAP_SYS_RESOURCE", tc.body)
			continue
		}
		dir := hDir(t)
		r := svStart(t, opts{pid1: true}, dir, svShell("s", dir, "exec sleep 1000", tc.body))
		if code := r.wait(); code != 2 || !strings.Contains(r.stderrNow(), tc.want) {
			t.Errorf("%s: exit %d, want 2 with %q; stderr:\n%s", tc.body, code, tc.want, r.stderrNow())
		}
	}
}
