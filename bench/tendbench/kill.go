//go:build linux

package main

import "golang.org/x/sys/unix"

func unixKill(pid int) error { return unix.Kill(pid, unix.SIGTERM) }
