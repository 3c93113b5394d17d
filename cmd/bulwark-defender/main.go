// Command bulwark-defender runs the Bulwark Defender on a host: it enforces
// the last policy it has, spools events on disk and sends them to the Console
// over mutual TLS.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"bulwark/internal/defender"
	"bulwark/internal/flagenv"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const intro = `Usage: bulwark-defender [flags]
       bulwark-defender status [--state-dir DIR]
       bulwark-defender shim install|uninstall|status [--shim-runc PATHS] [--shim-binary FILE]

Runs the Bulwark Defender from an install bundle (made by
'bulwarkctl defender bundle --out DIR' or POST /api/v1/defenders/bundle). At
start it enforces the policy stored in its state directory before it reaches
the Console; every event is written to an on-disk spool before it is sent and
removed only after the Console has stored it.

'status' prints the running (or last) Defender's status from its state dir.

Runtime rules that prevent are enforced in the kernel before the action
happens (the caller gets EPERM): BPF LSM where the kernel allows it, else
fanotify permission events for exec and file writes and cgroup BPF for
connect and bind. Block rules stop the container through its runtime. The
policy stored on disk is enforced at start, before the Console is reached;
if the Defender dies, the kernel drops every denial with it (the host stays
usable) until it restarts. --enforce=off audits those rules instead. GET
/api/v1/defenders (and 'status') show the mechanism for each kind of action.

'shim install' puts bulwark-shim in place of each runc binary (moved to
<runc>.bulwark-orig), 'shim uninstall' puts runc back byte for byte, 'shim
status' shows where each stands; all print JSON. With --shim=auto (the
default) the running Defender does this itself: it installs the shim while a
compliance rule blocks and removes it when none does.
`

const outro = `
Environment only:
  POD_NAME
      the name reported when the Defender is not in the host's network
      namespace (set it from the Kubernetes downward API).

Testing only:
  --test-synthetic-events N makes the Defender produce N numbered events in
  total, across restarts; nothing in a default configuration does.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := defender.Default()
	fs := flagenv.New("bulwark-defender", intro, outro, stderr)
	fs.StringVar(&cfg.BundleDir, "bundle", cfg.BundleDir, "install bundle directory (ca.pem, defender.pem, defender-key.pem, bundle.json)")
	fs.Env("bundle", "BULWARK_BUNDLE_DIR")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory for the stored policy, the event spool and status.json")
	fs.Env("state-dir", "BULWARK_STATE_DIR")
	fs.StringVar(&cfg.ConsoleURL, "console-url", "", "wss:// channel address, instead of the bundle's")
	fs.Env("console-url", "BULWARK_CONSOLE_URL")
	fs.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", cfg.SpoolMaxBytes, "bound on the on-disk event spool; when full the oldest events are dropped and counted")
	fs.Env("spool-max-bytes", "BULWARK_SPOOL_MAX_BYTES")
	fs.StringVar(&cfg.ProcRoot, "proc-root", cfg.ProcRoot, "the host's /proc (the Defender runs with hostPID)")
	fs.Env("proc-root", "BULWARK_PROC_ROOT")
	fs.BoolVar(&cfg.Sensor, "sensor", cfg.Sensor, "run the eBPF runtime sensor (process, file and network events)")
	fs.Env("sensor", "BULWARK_SENSOR")
	fs.BoolVar(&cfg.Compliance, "compliance", cfg.Compliance, "evaluate the running containers and the host against the compliance policies and report the results")
	fs.Env("compliance", "BULWARK_COMPLIANCE")
	fs.StringVar(&cfg.HostRoot, "host-root", cfg.HostRoot, "where the host's file system is seen, for the host compliance checks (/proc/1/root in a container with hostPID)")
	fs.Env("host-root", "BULWARK_HOST_ROOT")
	fs.DurationVar(&cfg.ComplianceInterval, "compliance-interval", cfg.ComplianceInterval, "how often containers and the host are looked at again; only changed results are sent")
	fs.Env("compliance-interval", "BULWARK_COMPLIANCE_INTERVAL")
	watch := fs.String("watch-paths", "", "comma-separated path prefixes whose file changes are reported, beyond the sensitive system paths that always are")
	fs.Env("watch-paths", "BULWARK_WATCH_PATHS")
	fs.IntVar(&cfg.RingBufferBytes, "sensor-ring-buffer-bytes", 0, "size of the sensor's kernel ring buffer, a power of two (default 4 MiB)")
	fs.Env("sensor-ring-buffer-bytes", "BULWARK_SENSOR_RING_BUFFER_BYTES")
	fs.BoolVar(&cfg.LifecycleEvents, "lifecycle-events", false, "send every process.fork and process.exit event to the Console too; without it they feed only the Defender's process tree, models and the forensic records incidents carry")
	fs.Env("lifecycle-events", "BULWARK_LIFECYCLE_EVENTS")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (default: off)")
	fs.Env("metrics-addr", "BULWARK_METRICS_ADDR")
	fs.StringVar(&cfg.Shim, "shim", cfg.Shim, "auto: answer bulwark-shim and put it in place of runc while a rule blocks; manual: answer, but install only by 'shim install'; off")
	fs.Env("shim", "BULWARK_SHIM")
	fs.StringVar(&cfg.ShimBinary, "shim-binary", "", "the bulwark-shim binary to install (default: next to this executable)")
	fs.Env("shim-binary", "BULWARK_SHIM_BINARY")
	fs.StringVar(&cfg.ShimDir, "shim-dir", "", "directory of the decision socket, the shim's settings and audit records (default: STATE_DIR/shim)")
	fs.Env("shim-dir", "BULWARK_SHIM_DIR")
	fs.DurationVar(&cfg.ShimTimeout, "shim-timeout", cfg.ShimTimeout, "how long the shim waits for a decision before it fails open (or closed, where a rule says failClosed)")
	fs.Env("shim-timeout", "BULWARK_SHIM_TIMEOUT")
	shimRunc := fs.String("shim-runc", "", "comma-separated runc binaries to manage (default: runc in PATH, /usr/bin, /usr/sbin, /usr/local/bin, /usr/local/sbin and containerd's BinaryName)")
	fs.Env("shim-runc", "BULWARK_SHIM_RUNC")
	fs.StringVar(&cfg.Enforce, "enforce", cfg.Enforce, "auto: deny what runtime rules prevent in the kernel and stop containers for block rules; off: audit them only")
	fs.Env("enforce", "BULWARK_ENFORCE")
	fs.DurationVar(&cfg.LearningWindow, "learning-window", cfg.LearningWindow, "how long a new model of an image learns before deviations from it are audited")
	fs.Env("learning-window", "BULWARK_LEARNING_WINDOW")
	fs.DurationVar(&cfg.ModelReportInterval, "model-report-interval", cfg.ModelReportInterval, "least time between two reports of a learning model to the Console")
	fs.Env("model-report-interval", "BULWARK_MODEL_REPORT_INTERVAL")
	fs.DurationVar(&cfg.IncidentWindow, "incident-window", cfg.IncidentWindow, "the first audit of a container in this long sends the container's forensic record along")
	fs.Env("incident-window", "BULWARK_INCIDENT_WINDOW")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Env("log-level", "BULWARK_LOG_LEVEL")
	fs.Uint64Var(&cfg.SyntheticEvents, "test-synthetic-events", 0, "TESTING ONLY: produce this many numbered events in total")
	fs.IntVar(&cfg.SyntheticRate, "test-synthetic-rate", 0, "TESTING ONLY: synthetic events per second (0: as fast as possible)")
	showVersion := fs.Bool("version", false, "print the version and exit")

	status := len(args) > 0 && args[0] == "status"
	if status {
		args = args[1:]
	}
	shimAction := ""
	if len(args) > 0 && args[0] == "shim" {
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			fmt.Fprintln(stderr, "bulwark-defender: shim: want install, uninstall or status")
			return 2
		}
		shimAction, args = args[1], args[2:]
	}
	if err := fs.Parse(args, getenv); err != nil {
		if flagenv.IsHelp(err) {
			return 0
		}
		fmt.Fprintln(stderr, "bulwark-defender:", err)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return 0
	}
	for _, p := range strings.Split(*shimRunc, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.ShimRunc = append(cfg.ShimRunc, p)
		}
	}
	if shimAction != "" {
		sts, err := defender.ShimCommand(ctx, cfg, shimAction)
		if sts != nil {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(sts)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bulwark-defender: shim "+shimAction+":", err)
			return 1
		}
		return 0
	}
	if status {
		st, err := defender.ReadStatus(cfg.StateDir)
		if err != nil {
			fmt.Fprintln(stderr, "bulwark-defender:", err)
			return 1
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return 0
	}
	cfg.PodName = getenv("POD_NAME")
	for _, p := range strings.Split(*watch, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.WatchPaths = append(cfg.WatchPaths, p)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "bulwark-defender: log level %q: %v\n", *logLevel, err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "bulwark-defender: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	d, err := defender.New(cfg, version, logger)
	if err != nil {
		logger.Error("start defender", slog.Any("err", err))
		return 1
	}
	defer func() {
		if err := d.Close(); err != nil {
			logger.Error("close defender", slog.Any("err", err))
		}
	}()
	if err := d.Run(ctx); err != nil {
		logger.Error("defender stopped", slog.Any("err", err))
		return 1
	}
	return 0
}
