//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendinit/tend/api"
)

// No existence oracle (issue 13): a non-root caller's PATH lookup and `dir`
// are resolved with the caller's rights, so the answer for a name inside a
// root-only 0700 directory is the same whether the name exists, is missing,
// or is a file where a directory is wanted. Root, who may look, gets the
// three different answers: that is what shows the comparison can fail.

func init() { helpers["oracle"] = helperOracle }

// oracleCases are the requests of the test, each naming a thing inside
// secret; the answers of each group must be alike for uid 1000 once the
// thing's name is replaced.
func oracleCases(secret string) [][]api.JobRequest {
	return [][]api.JobRequest{
		{ // a command by its path
			{Argv: []string{filepath.Join(secret, "exists")}},
			{Argv: []string{filepath.Join(secret, "missing")}},
			{Argv: []string{filepath.Join(secret, "sub")}},
		},
		{ // a command found through PATH
			{Argv: []string{"exists"}, Env: []string{"PATH=" + secret}},
			{Argv: []string{"missing"}, Env: []string{"PATH=" + secret}},
		},
		{ // the working directory
			{Argv: []string{"/bin/true"}, Dir: filepath.Join(secret, "sub")},
			{Argv: []string{"/bin/true"}, Dir: filepath.Join(secret, "missing")},
			{Argv: []string{"/bin/true"}, Dir: filepath.Join(secret, "exists")},
		},
	}
}

func TestNoExistenceOracle(t *testing.T) {
	_, sock := rServe(t, opts{}, "", "")
	secret := filepath.Join(filepath.Dir(sock), "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secret, "exists"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(secret, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	asCaller := oracleAsk(t, testBin, "oracle", strconv.Itoa(rUID), strconv.Itoa(rUID), fmt.Sprintf("%d,%d", rUID, hGroup), sock, secret)
	asRoot := oracleAsk(t, testBin, "oracle", "0", "0", "0", sock, secret)
	t.Logf("uid %d: %q", rUID, asCaller)
	t.Logf("root: %q", asRoot)

	names := []string{"exists", "missing", "sub"}
	neutral := func(s string) string {
		for _, n := range names {
			s = strings.ReplaceAll(s, n, "NAME")
		}
		return s
	}
	i := 0
	for g, group := range oracleCases(secret) {
		first := ""
		rootSeen := map[string]bool{}
		for k := range group {
			if i >= len(asCaller) || i >= len(asRoot) {
				t.Fatalf("%d answers as uid %d and %d as root, want %d", len(asCaller), rUID, len(asRoot), i+1)
			}
			a := neutral(asCaller[i])
			if !strings.Contains(asCaller[i], "422") && !strings.Contains(asCaller[i], "exit 12") {
				t.Errorf("group %d case %d as uid %d: %q, want a refusal (422) or an exec failure (126/127)", g, k, rUID, asCaller[i])
			}
			if k == 0 {
				first = a
			} else if a != first {
				t.Errorf("group %d: uid %d tells case %d from case 0: %q vs %q (an existence oracle)", g, rUID, k, a, first)
			}
			rootSeen[neutral(asRoot[i])] = true
			i++
		}
		// Root may look inside: its answers differ, so alike answers above
		// are the caller's rights at work, not a uniform message.
		if len(rootSeen) < 2 {
			t.Errorf("group %d: root's answers are all alike (%v): the test cannot tell an oracle", g, rootSeen)
		}
	}
}

// oracleAsk runs the oracle helper and returns its answers, one per case.
func oracleAsk(t *testing.T, bin string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(nil)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oracle helper %v: %v", args[:3], err)
	}
	var answers []string
	if err := json.Unmarshal(out, &answers); err != nil {
		t.Fatalf("oracle helper: %q: %v", out, err)
	}
	return answers
}

// helperOracle: UID GID GROUPS SOCK SECRET; becomes UID (unless 0), sends
// every case and prints the answers as a JSON list: the error, or the
// job's exit and error.
func helperOracle(args []string) int {
	if args[0] != "0" {
		var groups []int
		for _, g := range strings.Split(args[2], ",") {
			groups = append(groups, atoi(g))
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fail("setgroups: %v", err)
		}
		if err := syscall.Setgid(atoi(args[1])); err != nil {
			return fail("setgid: %v", err)
		}
		if err := syscall.Setuid(atoi(args[0])); err != nil {
			return fail("setuid: %v", err)
		}
	}
	c := api.NewClient(args[3])
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var answers []string
	for _, group := range oracleCases(args[4]) {
		for _, req := range group {
			j, err := c.Spawn(ctx, req, nil)
			if err != nil {
				answers = append(answers, err.Error())
				continue
			}
			j, err = c.Wait(ctx, j.ID, 20*time.Second)
			if err != nil {
				answers = append(answers, "wait: "+err.Error())
				continue
			}
			code := -1
			if j.ExitCode != nil {
				code = *j.ExitCode
			}
			answers = append(answers, fmt.Sprintf("exit %d: %s", code, j.Error))
		}
	}
	b, _ := json.Marshal(answers)
	os.Stdout.Write(b)
	return 0
}
