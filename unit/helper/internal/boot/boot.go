//go:build linux

// Package boot is the unit helper itself. When tend's binary is started as a
// unit helper (see Marker and Name), this package's init runs the helper and
// exits the process, so no other package's init ever runs: not urfave/cli's,
// not net/http's, not tend's own. The helper costs a Go runtime start and
// nothing more.
//
// Why its init runs first: since Go 1.21 the spec initialises packages one at
// a time, each time taking "the first uninitialized package [sorted by import
// path] whose imports are all initialized". boot imports nothing but syscall,
// packages syscall itself imports and internal/sigrelay, which imports no
// more and has no init work (TestBootImports checks it), so boot is ready as
// soon as syscall is. Every package that does any I/O imports time
// or os; both sort after this import path and both need syscall, so the
// moment either is ready boot is ready too and is taken first. What can run
// before boot is only what cannot wait for time: the runtime and a few pure
// packages (math, errors, sync, encoding/base64 ...), microseconds in all.
//
// Rules that keep this true: boot's files (and sigrelay's) import only such
// packages (no os, time, strconv, fmt, x/sys/unix); its tests are in package
// boot_test, whose imports are not boot's; and no package-level variable
// here calls into another package.
//
// Signals: os/signal cannot be imported (it needs os), so boot calls the
// runtime's hooks that os/signal itself is linked to (see relay.go).
package boot

import "syscall"

// The helper is recognised by both the environment marker and argv[0]; a
// stray marker alone (a user's environment) never turns tend into a helper.
//
// MarkerValue is the protocol's version: a standalone helper binary
// (cmd/tend-unit-helper) from another build refuses to run for a tend
// that asks for another version (see Refuse), instead of misreading it.
const (
	Marker      = "TEND_UNIT_HELPER" // environment variable, removed before the command runs
	MarkerValue = "3"
	Name        = "tend-unit-helper" // argv[0]
)

// seen is the marker's value when it was not MarkerValue, for Refuse.
var seen string

// The modes, argv[1].
const (
	ModeSubreaper = "subreaper"
	ModeExec      = "exec"
)

// Exit codes of the helper itself.
const (
	ExitUsage         = 2
	ExitNotExecutable = 126
	ExitNotFound      = 127
)

func init() {
	v, ok := syscall.Getenv(Marker)
	if !ok {
		return
	}
	if v != MarkerValue {
		seen = v
		syscall.Unsetenv(Marker)
		return
	}
	args, err := cmdline()
	if err != nil || len(args) < 2 || args[0] != Name {
		// Not started by tend as a helper: tend starts as usual, and the
		// marker must not reach its children.
		syscall.Unsetenv(Marker)
		return
	}
	syscall.Unsetenv(Marker) // the command's environment is the rest
	syscall.Exit(run(args[1], args[2:]))
}

// run runs the helper in mode with its options and returns its exit code.
func run(mode string, args []string) int {
	o, err := parseOptions(args)
	if err == nil && o.ctlFD != 0 {
		ctlFD = o.ctlFD
	}
	if err != nil {
		say("tend-unit-helper: " + err.Error())
		report(ctlFD, failed(syscall.EINVAL, "usage"))
		return ExitUsage
	}
	switch mode {
	case ModeSubreaper:
		return runSubreaper(o)
	case ModeExec:
		return runExec(o)
	}
	say("tend-unit-helper: unknown mode " + mode)
	report(ctlFD, failed(syscall.EINVAL, "usage"))
	return ExitUsage
}

// Refuse is the main of the standalone helper binary, reached only when
// its init did not run it as a helper: it was started by hand, or by a tend
// that speaks another version of the protocol. It says so on stderr and,
// when fd 3 is tend's socket, to tend, and exits.
func Refuse() {
	msg := "tend-unit-helper: this program is started by tend, as the helper of one unit"
	if seen != "" {
		msg = "tend-unit-helper: protocol version " + MarkerValue + ", but tend asked for " + seen + ": install the tend-unit-helper built with this tend"
	}
	say(msg)
	report(ctlFD, failed(syscall.EPROTO, msg))
	syscall.Exit(ExitUsage)
}

// say writes one line to stderr, for what tend's protocol cannot carry.
func say(line string) {
	syscall.Write(2, []byte(line+"\n"))
}

// execCode is the conventional exit status for a command that could not be
// run: 127 when it does not exist, 126 otherwise.
func execCode(errno syscall.Errno) int {
	if errno == syscall.ENOENT || errno == syscall.ENOTDIR {
		return ExitNotFound
	}
	return ExitNotExecutable
}
