//go:build linux

package test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// svWho prints what a service observes about itself as key=value lines.
const svWho = `echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "groups=$(id -G)"; ` +
	`echo "home=$HOME"; echo "user=$USER"; echo "logname=$LOGNAME"; echo "pwd=$(pwd)"; ` +
	`echo "foo=$FOO"; echo "stdin=$(readlink /proc/self/fd/0)"; ` +
	`echo "tend_env=$(env | grep '^TEND_' | grep -v '^TEND_TEST_' | sort | tr '\n' ' ')"; echo "keep=$KEEP_ME"`

// svObserve runs tend until its services end and returns what the prefixed
// lines of service name said, as a map.
func svObserve(t *testing.T, r *tendRun, name string) map[string]string {
	t.Helper()
	r.expectExit(0)
	got := map[string]string{}
	for _, l := range r.rest() {
		if rest, ok := strings.CutPrefix(l, name+" | "); ok {
			k, v, _ := strings.Cut(rest, "=")
			got[k] = v
		}
	}
	return got
}

// svOpenDir makes a directory every user can enter, for `dir`.
func svOpenDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	return work
}

// svEtc writes a passwd and a group file: the system's, plus a user
// tenduser (4242, primary group 4343) that is a member of two more groups.
func svEtc(t *testing.T, dir string) []string {
	t.Helper()
	add := map[string]string{
		"passwd": "tenduser:x:4242:4343:Tend User:/home/tenduser:/bin/sh\n",
		"group":  "tendgrp:x:4343:\ntendone:x:5001:tenduser\ntendtwo:x:5002:someone,tenduser\ntendnot:x:5003:someone\n",
	}
	var settings []string
	for _, name := range []string{"passwd", "group"} {
		sys, err := os.ReadFile("/etc/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if len(sys) > 0 && sys[len(sys)-1] != '\n' {
			sys = append(sys, '\n')
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, append(sys, add[name]...), 0o644); err != nil {
			t.Fatal(err)
		}
		settings = append(settings, name+"="+path)
	}
	return settings
}

// sortedFields sorts the words of s, for group lists.
func sortedFields(s string) string {
	f := strings.Fields(s)
	sort.Strings(f)
	return strings.Join(f, " ")
}

// TestSupervisorUser: `user` sets uid, gid and the supplementary groups of
// /etc/group (never tend's own), and HOME/USER/LOGNAME when it has a passwd
// entry; `env` is added on top (and wins); `dir` is the working directory;
// stdin is /dev/null.
func TestSupervisorUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		user string
		etc  bool   // with the tenduser passwd and group files
		env  string // extra env entries of the service, TOML inline
		want map[string]string
	}{
		{"nobody", "nobody", false, "", map[string]string{"uid": "65534", "gid": "65534", "groups": "65534",
			"home": "/nonexistent", "user": "nobody", "logname": "nobody"}},
		{"uid:gid of nobody", "65534:65534", false, "", map[string]string{"uid": "65534", "gid": "65534", "groups": "65534"}},
		{"uid:gid without passwd entry", "4321:4322", false, "", map[string]string{"uid": "4321", "gid": "4322", "groups": "4322",
			"home": "/tend-test-home", "user": "tend-test-user"}},
		{"uid without passwd entry", "4321", false, "", map[string]string{"uid": "4321", "gid": "4321", "groups": "4321"}},
		{"name with groups", "tenduser", true, "", map[string]string{"uid": "4242", "gid": "4343", "groups": "4343 5001 5002",
			"home": "/home/tenduser", "user": "tenduser", "logname": "tenduser"}},
		{"uid with groups", "4242", true, "", map[string]string{"uid": "4242", "gid": "4343", "groups": "4343 5001 5002"}},
		{"env wins over the user's HOME", "nobody", false, `, HOME = "/custom"`, map[string]string{"uid": "65534", "home": "/custom",
			"user": "nobody"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			work := svOpenDir(t)
			o := opts{pid1: true, env: []string{"HOME=/tend-test-home", "USER=tend-test-user"}}
			if tc.etc {
				o.argv0 = svSetup(svEtc(t, dir)...)
			}
			cfg := "\n[[service]]\nname = \"who\"\ncommand = [\"sh\", \"-c\", " + svQuote(svWho) + "]\n" +
				"user = " + svQuote(tc.user) + "\ndir = " + svQuote(work) + "\nenv = { FOO = \"bar\"" + tc.env + " }\n" +
				"restart = \"never\"\nlog_prefix = true\n"
			got := svObserve(t, svStart(t, o, dir, cfg), "who")
			want := map[string]string{"pwd": work, "foo": "bar", "stdin": "/dev/null"}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				g := got[k]
				if k == "groups" {
					g, v = sortedFields(g), sortedFields(v)
				}
				if g != v {
					t.Errorf("user %q: %s = %q, want %q (all: %q)", tc.user, k, g, v, got)
				}
			}
		})
	}
}

// TestSupervisorEnv: services get tend's environment without tend's own
// settings (TEND_CONFIG and the flags' twins), plus their env; the main
// service gets tend's stdin, the others /dev/null.
func TestSupervisorEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := svConfig(t, dir, "\n[[service]]\nname = \"who\"\ncommand = [\"sh\", \"-c\", "+svQuote(svWho+`; : > "$D/who.done"`)+"]\n"+
		"env = { FOO = \"bar\" }\nlog_prefix = true\n")
	env := []string{"TEND_CONFIG=" + path, "TEND_GRACE=5s", "TEND_CLEANUP_GRACE=1s", "TEND_VERBOSE=1",
		"TEND_PROCESS_GROUP=false", "TEND_LOG_FORMAT=text", "KEEP_ME=yes", "FOO=tend's", "D=" + dir}
	r := startTend(t, opts{pid1: true, env: env, stdin: true}, "--", "sh", "-c",
		`until [ -f "$D/who.done" ]; do sleep 0.01; done; echo "main-stdin=$(readlink /proc/self/fd/0)"; echo "main-foo=$FOO"; echo "main-tend=$(env | grep '^TEND_' | grep -v '^TEND_TEST_')"`)
	r.expectExit(0)
	got := map[string]string{}
	for _, l := range r.rest() {
		l = strings.TrimPrefix(l, "who | ")
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	for k, want := range map[string]string{
		"foo": "bar", "keep": "yes", "tend_env": "", "stdin": "/dev/null",
		"main-foo": "tend's", "main-tend": "",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q (all: %q)", k, got[k], want, got)
		}
	}
	if !strings.HasPrefix(got["main-stdin"], "pipe:") {
		t.Errorf("main's stdin = %q, want tend's (a pipe)", got["main-stdin"])
	}
}
