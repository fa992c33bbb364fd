//go:build linux

// Command refinit is the floor every figure of bench/ is compared with: the
// least a Go init can be (signal.Notify, os.StartProcess, a blocking wait4
// loop), with none of tend's features. It is not tend and never ships.
package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs) // every catchable signal: none may kill PID 1
	argv := os.Args[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		os.Exit(127)
	}
	p, err := os.StartProcess(path, argv, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		os.Exit(126)
	}
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGCHLD && sig != syscall.SIGURG {
				p.Signal(sig)
			}
		}
	}()
	for { // the one waiter: reaps orphans and the main process alike
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid == p.Pid {
			if ws.Signaled() {
				os.Exit(128 + int(ws.Signal()))
			}
			os.Exit(ws.ExitStatus())
		}
	}
}
