// Command bulwark-console runs the Bulwark Console: the REST API and UI on
// :8083, the Defender channel on :8084 and, when asked, the Kubernetes
// admission controller.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"bulwark/internal/console"
	"bulwark/internal/flagenv"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const intro = `Usage: bulwark-console [flags]

Runs the Bulwark Console: the HTTPS REST API (and UI) for users and CI, and the
mutual-TLS channel Defenders connect to. On first start it creates, in its data
directory, the embedded store, a certificate authority (ECDSA P-256), the
server certificates and the first admin user.

With --admission-addr it also serves the Kubernetes admission controller
(AdmissionReview v1 over HTTPS, a certificate from the Console CA); point a
cluster at it with 'bulwarkctl admission webhook-config'.
`

const outro = `
Environment only:
  BULWARK_ADMIN_PASSWORD
      password of the first admin, used on first start only. Unset: a random
      password is generated and printed once on standard output.
  GOGC, GOMEMLIMIT
      Go's garbage collector settings. While the admission controller serves,
      the Console collects at GOGC=800 with a soft GOMEMLIMIT of 1GiB (or three
      quarters of the container's memory limit, when lower), so that fewer
      reviews wait for a collection; either variable, when set, is used
      instead.

Examples:
  bulwark-console --data-dir /var/lib/bulwark
  BULWARK_ADMIN_PASSWORD=... bulwark-console --api-addr 127.0.0.1:8083
  bulwark-console --admission-addr :8085 --admission-dns bulwark-admission.bulwark.svc
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := console.Default()
	fs := flagenv.New("bulwark-console", intro, outro, stderr)
	var hosts, admissionHosts, logLevel string
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the store, the CA and certificates (created 0700)")
	fs.Env("data-dir", "BULWARK_DATA_DIR")
	fs.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "HTTPS address of the REST API and UI")
	fs.Env("api-addr", "BULWARK_API_ADDR")
	fs.StringVar(&cfg.ChannelAddr, "channel-addr", cfg.ChannelAddr, "mutual-TLS address Defenders connect to")
	fs.Env("channel-addr", "BULWARK_CHANNEL_ADDR")
	fs.StringVar(&cfg.ChannelURL, "channel-url", "", "wss:// address written into Defender install bundles (default: this host's name and the channel port)")
	fs.Env("channel-url", "BULWARK_CHANNEL_URL")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate for the API instead of the Console-issued one (with --tls-key)")
	fs.Env("tls-cert", "BULWARK_TLS_CERT")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key matching --tls-cert")
	fs.Env("tls-key", "BULWARK_TLS_KEY")
	fs.StringVar(&hosts, "hosts", "", "comma-separated extra DNS names/IPs for Console-issued certificates")
	fs.Env("hosts", "BULWARK_HOSTS")
	fs.StringVar(&cfg.AdmissionAddr, "admission-addr", "", "HTTPS address of the Kubernetes admission controller, such as :8085 (default: off; it answers any TLS client unless --admission-client-ca is set)")
	fs.Env("admission-addr", "BULWARK_ADMISSION_ADDR")
	fs.StringVar(&admissionHosts, "admission-dns", "", "comma-separated extra DNS names/IPs for the admission certificate, such as the Service's bulwark-admission.bulwark.svc")
	fs.Env("admission-dns", "BULWARK_ADMISSION_DNS")
	fs.StringVar(&cfg.AdmissionClientCAFile, "admission-client-ca", "", "PEM file of the CA whose client certificates the admission listener requires (the API server's, from its webhook kubeconfig); a CA of its own, not the Console CA, which signs Defenders' certificates (default: no client certificate asked)")
	fs.Env("admission-client-ca", "BULWARK_ADMISSION_CLIENT_CA")
	fs.IntVar(&cfg.AdmissionAuditRetention, "admission-audit-retention", cfg.AdmissionAuditRetention, "admission decisions kept in the audit (0 keeps all)")
	fs.Env("admission-audit-retention", "BULWARK_ADMISSION_AUDIT_RETENTION")
	fs.StringVar(&cfg.AdminUsername, "admin-username", cfg.AdminUsername, "name of the first admin, created on first start")
	fs.Env("admin-username", "BULWARK_ADMIN_USERNAME")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", cfg.TokenTTL, "lifetime of API tokens (1m..168h)")
	fs.Env("token-ttl", "BULWARK_TOKEN_TTL")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Env("log-level", "BULWARK_LOG_LEVEL")
	showVersion := fs.Bool("version", false, "print the version and exit")

	if err := fs.Parse(args, getenv); err != nil {
		if flagenv.IsHelp(err) {
			return 0
		}
		fmt.Fprintln(stderr, "bulwark-console:", err)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return 0
	}
	cfg.Hosts = splitList(hosts)
	cfg.AdmissionHosts = splitList(admissionHosts)
	cfg.AdminPassword = getenv("BULWARK_ADMIN_PASSWORD")
	keepGoGC(&cfg, getenv)
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
	if err := c.Run(ctx); err != nil {
		logger.Error("console stopped", slog.Any("err", err))
		return 1
	}
	return 0
}

// keepGoGC leaves the garbage collector's settings that the user made with
// GOGC or GOMEMLIMIT, which the Go runtime has read, as they are.
func keepGoGC(cfg *console.Config, getenv func(string) string) {
	if getenv("GOGC") != "" {
		cfg.AdmissionGCPercent = 0
	}
	if getenv("GOMEMLIMIT") != "" {
		cfg.AdmissionMemoryLimit = 0
	}
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
