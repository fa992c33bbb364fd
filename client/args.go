//go:build linux

package client

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Names lists the client subcommands, for main's `tend help CMD` and its
// messages.
func Names() []string {
	var out []string
	for _, c := range newClientCommands(new(int), processIO()) {
		out = append(out, c.Name)
	}
	return out
}

// FlagsFirst puts the flags that follow the positional arguments of client
// command name before them, so that `tend restart web --socket S` means
// what `tend restart --socket S web` does: urfave/cli stops reading flags
// at a command's first positional argument, and would take "--socket" for
// a second service name. A word after `--` stays an argument. tend spawn's
// arguments are the job's command line (`tend spawn ls -l`), never its
// flags, so they are left as they are; so are the arguments of a name that
// is no client command.
func FlagsFirst(name string, args []string) []string {
	if name == "spawn" {
		return args
	}
	var cmd *cli.Command
	for _, c := range newClientCommands(new(int), processIO()) {
		if c.HasName(name) {
			cmd = c
		}
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			n := strings.TrimLeft(a, "-")
			if !strings.Contains(n, "=") && takesValue[n] && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			positional = append(positional, a)
		}
	}
	return append(flags, positional...)
}
