//go:build linux

package boot

import "syscall"

// Reading the process tree from /proc. The raw reads are snapshots: a pid
// read here may have exited, and its number been given to another process,
// by the time it is used. tree.go decides which pids may be signalled.

// procFile reads a small /proc file whole.
func procFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var out []byte
	buf := make([]byte, 1024)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

// children lists the child processes of every thread of pid, from
// /proc/PID/task/TID/children (proc(5), needs CONFIG_PROC_CHILDREN). A
// process that is gone has none.
func children(pid int) []int {
	dir := "/proc/" + itoa(int64(pid)) + "/task"
	var out []int
	for _, tid := range listDir(dir) {
		b, err := procFile(dir + "/" + tid + "/children")
		if err != nil {
			continue // the thread is gone
		}
		for _, f := range fields(string(b)) {
			if n, err := atoi(f); err == nil && n > 0 {
				out = append(out, int(n))
			}
		}
	}
	return out
}

// ppid reads the parent pid from /proc/PID/stat: the fourth field, counted
// after the last ')' since the command name may hold spaces and parentheses.
func ppid(pid int) (int, bool) {
	b, err := procFile("/proc/" + itoa(int64(pid)) + "/stat")
	if err != nil {
		return 0, false
	}
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	f := fields(string(b[i+1:])) // state ppid pgrp ...
	if i < 0 || len(f) < 2 {
		return 0, false
	}
	n, err := atoi(f[1])
	return int(n), err == nil
}

// listDir returns the names in dir, without . and ..; nil if it cannot be
// read.
func listDir(dir string) []string {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	var names []string
	buf := make([]byte, 4096)
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return names
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
}
