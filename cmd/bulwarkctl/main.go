// Command bulwarkctl is the command-line client of the Bulwark Console: it
// logs in, manages users and access keys and reads the audit log. The
// program lives in bulwark/internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"bulwark/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Program{Version: version}.Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
