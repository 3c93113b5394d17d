// Command bulwark-console runs the Bulwark Console: the REST API and UI on
// :8083 and the Defender channel on :8084.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"bulwark/internal/console"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// envVar names one BULWARK_* variable and the flag it feeds.
type envVar struct{ env, flag string }

var envVars = []envVar{
	{"BULWARK_DATA_DIR", "data-dir"},
	{"BULWARK_API_ADDR", "api-addr"},
	{"BULWARK_CHANNEL_ADDR", "channel-addr"},
	{"BULWARK_TLS_CERT", "tls-cert"},
	{"BULWARK_TLS_KEY", "tls-key"},
	{"BULWARK_HOSTS", "hosts"},
	{"BULWARK_ADMIN_USERNAME", "admin-username"},
	{"BULWARK_TOKEN_TTL", "token-ttl"},
	{"BULWARK_LOG_LEVEL", "log-level"},
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := console.Default()
	fs := flag.NewFlagSet("bulwark-console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var hosts, logLevel string
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the store, the CA and certificates (created 0700)")
	fs.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "HTTPS address of the REST API and UI")
	fs.StringVar(&cfg.ChannelAddr, "channel-addr", cfg.ChannelAddr, "mutual-TLS address Defenders connect to")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate for the API instead of the Console-issued one (with --tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key matching --tls-cert")
	fs.StringVar(&hosts, "hosts", "", "comma-separated extra DNS names/IPs for Console-issued certificates")
	fs.StringVar(&cfg.AdminUsername, "admin-username", cfg.AdminUsername, "name of the first admin, created on first start")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", cfg.TokenTTL, "lifetime of API tokens (1m..168h)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(fs) }

	// Environment first, flags on top: a flag given on the command line wins.
	for _, ev := range envVars {
		if v := getenv(ev.env); v != "" {
			if err := fs.Set(ev.flag, v); err != nil {
				fmt.Fprintf(stderr, "bulwark-console: %s=%q: %v\n", ev.env, v, err)
				return 2
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bulwark-console: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return 0
	}
	if hosts != "" {
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				cfg.Hosts = append(cfg.Hosts, h)
			}
		}
	}
	cfg.AdminPassword = getenv("BULWARK_ADMIN_PASSWORD")
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(stderr, "bulwark-console: log level %q: %v\n", logLevel, err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "bulwark-console: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}

	c, err := console.New(ctx, cfg, version, logger)
	if err != nil {
		logger.Error("start console", slog.Any("err", err))
		return 1
	}
	defer func() {
		if err := c.Close(); err != nil {
			logger.Error("close console", slog.Any("err", err))
		}
	}()
	if pw := c.GeneratedAdminPassword(); pw != "" {
		fmt.Fprintf(stdout, "\nFirst start: created admin user %q with password\n\n    %s\n\nIt is shown only this once. Change it with `bulwarkctl users password`.\n\n", cfg.AdminUsername, pw)
	}
	start := time.Now()
	if err := c.Run(ctx); err != nil {
		logger.Error("console stopped", slog.Any("err", err), slog.Duration("uptime", time.Since(start)))
		return 1
	}
	return 0
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, `Usage: bulwark-console [flags]

Runs the Bulwark Console: the HTTPS REST API (and UI) for users and CI, and the
mutual-TLS channel Defenders connect to. On first start it creates, in its data
directory, the embedded store, a certificate authority (ECDSA P-256), the API
server certificate and the first admin user.

Flags (each may also be set by the environment variable shown; a flag wins):
`)
	byFlag := map[string]string{}
	for _, ev := range envVars {
		byFlag[ev.flag] = ev.env
	}
	fs.VisitAll(func(f *flag.Flag) {
		env := ""
		if e, ok := byFlag[f.Name]; ok {
			env = " [$" + e + "]"
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s\n", f.Name, env, f.Usage, def)
	})
	fmt.Fprint(w, `
Environment only:
  BULWARK_ADMIN_PASSWORD
      password of the first admin, used on first start only. Unset: a random
      password is generated and printed once on standard output.

Examples:
  bulwark-console --data-dir /var/lib/bulwark
  BULWARK_ADMIN_PASSWORD=... bulwark-console --api-addr 127.0.0.1:8083
`)
}
