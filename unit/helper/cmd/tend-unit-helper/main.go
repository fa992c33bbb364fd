//go:build linux

// Command tend-unit-helper is tend's unit helper as a program of its own,
// installed beside tend. tend starts it for every unit it tracks with a
// helper; without it tend starts its own binary in helper mode, which
// works the same but starts slower (a binary of 11 MB instead of 1.4 MB:
// docs/BENCHMARKS.md, Units). All of its work happens in the init of
// package boot; main is reached only when it was not started by tend.
package main

import "github.com/tendinit/tend/unit/helper/internal/boot"

func main() { boot.Refuse() }
