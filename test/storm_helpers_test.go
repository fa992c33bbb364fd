//go:build linux

package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// makeScript makes children with dash, which forks in microseconds where
// re-executing this (race-instrumented) binary takes tens of milliseconds.
// Child i exits with i%256. Every EVERY-th child is the shell's own,
// waited for by it and its status checked; the others are orphans made by
// a double fork: `( (exit c) & )` forks a subshell that forks the
// grandchild in the background and exits at once, so the grandchild is
// reparented to tend. With GOING > 0 it prints "going" after that many.
// It ends with "made=ORPHANS own=OWN bad=MISMATCHES".
const makeScript = `n=$1 every=$2 going=$3 i=0 made=0 own=0 bad=0
while [ $i -lt $n ]; do
	c=$((i % 256))
	if [ $every -gt 0 ] && [ $((i % every)) -eq 0 ]; then
		(exit $c); r=$?; own=$((own+1))
		[ $r -eq $c ] || bad=$((bad+1))
	else
		( (exit $c) & ) && made=$((made+1))
	fi
	i=$((i+1))
	[ $i -eq $going ] && echo going
done
echo "made=$made own=$own bad=$bad"
`

func makeCmd(n, every, going int) *exec.Cmd {
	return exec.Command("/bin/sh", "-c", makeScript, "sh", strconv.Itoa(n), strconv.Itoa(every), strconv.Itoa(going))
}

// helperOrphans makes N children (see makeScript), waits until every orphan
// is gone (no child of its parent, tend, but itself), then prints
// "made=M own=O bad=B zombies=Z others=X allz=A" and exits with CODE.
// zombies and others count tend's children but itself at the end (both 0
// unless the 90s deadline passed); allz counts every zombie in /proc.
// args: N EVERY CODE
func helperOrphans(args []string) int {
	n, every, code := atoi(args[0]), atoi(args[1]), atoi(args[2])
	out, err := makeCmd(n, every, 0).Output()
	if err != nil {
		return fail("make children: %v", err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var zombies, others, allz int
	for {
		zombies, others, allz = scanChildren(os.Getppid(), os.Getpid())
		if others == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling /proc: nothing to wait on
	}
	fmt.Printf("%s zombies=%d others=%d allz=%d\n", strings.TrimSpace(string(out)), zombies, others, allz)
	return code
}

// scanChildren counts the children of parent but skip in /proc, those of
// them that are zombies, and every zombie in /proc.
func scanChildren(parent, skip int) (zombies, others, allz int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == skip {
			continue
		}
		state, ppid, err := procStat(pid)
		if err != nil {
			continue
		}
		if state == 'Z' {
			allz++
		}
		if ppid == parent {
			others++
			if state == 'Z' {
				zombies++
			}
		}
	}
	return zombies, others, allz
}

// helperStormExit starts an endless orphan storm, and once it is going
// prints "exiting" and ends in the middle of it: "code:N" exits N,
// "sig:N" dies of signal N (by becoming a shell that kills itself: the
// same pid, and no Go runtime to catch the signal).
// args: HOW
func helperStormExit(args []string) int {
	storm := makeCmd(1000000, 0, 200)
	out, err := storm.StdoutPipe()
	if err != nil {
		return fail("%v", err)
	}
	if err := storm.Start(); err != nil {
		return fail("%v", err)
	}
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "going\n" {
		return fail("storm said %q", l)
	}
	fmt.Println("exiting")
	how, n, _ := strings.Cut(args[0], ":")
	if how == "code" {
		return atoi(n)
	}
	err = syscall.Exec("/bin/sh", []string{"sh", "-c", "kill -" + n + " $$; exit 99"}, os.Environ())
	return fail("exec sh: %v", err)
}
