//go:build linux && deps

package main

// Built with -tags deps, refinit also links the packages tend depends on
// (DESIGN.md §2), and nothing else changes: the difference from plain
// refinit is what their package initialisation and size cost a Go init.
import (
	_ "log/slog"
	_ "net/http"

	_ "github.com/BurntSushi/toml"
	_ "github.com/hashicorp/go-multierror"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/sys/unix"
)
