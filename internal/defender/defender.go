// Package defender assembles the Bulwark Defender: the per-host agent that
// holds the last policy on disk and enforces it from start, spools every
// event on disk before sending it, and talks to the Console over the mutual
// TLS channel.
package defender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"bulwark/api/bulwarkv1"
	"bulwark/api/shimv1"
	"bulwark/internal/channel"
	"bulwark/internal/runtime"
	"bulwark/internal/runtimepolicy"
	"bulwark/internal/spool"
)

// Config is everything the Defender can be told.
type Config struct {
	// BundleDir holds the install bundle: CA, client certificate and key,
	// bundle.json with the Defender ID and the Console address.
	BundleDir string
	// StateDir holds the last policy, the event spool and status.json.
	StateDir string
	// ConsoleURL overrides the bundle's channel address.
	ConsoleURL string
	// PodName is reported as the name when not on the host network.
	PodName string
	// SpoolMaxBytes bounds the on-disk event spool.
	SpoolMaxBytes int64
	// ProcRoot is where the host's /proc is mounted (hostPID).
	ProcRoot string

	// Sensor turns the eBPF runtime sensor on (the default).
	Sensor bool
	// WatchPaths are path prefixes whose file changes are reported, beyond
	// the sensitive system paths that always are.
	WatchPaths []string
	// RingBufferBytes sizes the sensor's kernel ring buffer (0: 4 MiB).
	RingBufferBytes int
	// LifecycleEvents sends every process.fork and process.exit to the
	// Console too. Off by default: they are two of every three process
	// events, and the Defender uses them where they matter (its process
	// tree, the forensic record an incident carries, the parent of each
	// exec it sends).
	LifecycleEvents bool
	// MetricsAddr serves Prometheus metrics at /metrics; empty: off.
	MetricsAddr string

	// Shim is ShimAuto (default), ShimManual or ShimOff: whether the
	// Defender answers bulwark-shim and puts it in place of runc.
	Shim string
	// ShimBinary is the bulwark-shim to install; empty: next to this
	// executable.
	ShimBinary string
	// ShimDir holds the decision socket, the shim's settings and its
	// audit records; empty: StateDir/shim.
	ShimDir string
	// ShimTimeout is how long the shim waits for a decision before it
	// fails open (or closed, per rule).
	ShimTimeout time.Duration
	// ShimRunc are the runc binaries to manage; empty: those found in
	// PATH, the sbin and bin directories and containerd's configuration.
	ShimRunc []string
	// Compliance evaluates the running containers and the host against the
	// compliance policies and reports the results (the default).
	Compliance bool
	// HostRoot is where the host's file system is seen: "/" on the host,
	// /proc/1/root (or a hostPath mount) in a container.
	HostRoot string
	// ComplianceInterval is how often the containers and the host are
	// looked at again; only changed results are sent.
	ComplianceInterval time.Duration
	// RuncRoots are the runc state roots where containers are found (globs
	// allowed); nil: runc's, containerd's and docker's defaults.
	RuncRoots []string
	// LearningWindow is how long a new model of an image learns before
	// deviations from it are audited.
	LearningWindow time.Duration
	// ModelReportInterval is the least time between two reports of a
	// learning model to the Console (a model that ends learning or is
	// relearned is reported at once).
	ModelReportInterval time.Duration
	// IncidentWindow: the first audit of a container in this long sends
	// its forensic record along.
	IncidentWindow time.Duration
	// Enforce is EnforceAuto (default) or EnforceOff: whether what runtime
	// rules prevent is denied in the kernel and containers are stopped for
	// block rules, or only audited.
	Enforce string
	// Enforcer denies what runtime rules prevent, in the kernel; nil: the
	// kernel enforcer (internal/enforcer) when Enforce is auto. Stopper
	// stops containers for block rules; nil: through their runtime when
	// Enforce is auto. Tests put doubles here.
	Enforcer Enforcer
	Stopper  Stopper

	// SyntheticEvents, a test option, makes the Defender produce this many
	// numbered events in total (across restarts) at SyntheticRate per second
	// (0: as fast as possible). Zero, the default, produces none.
	SyntheticEvents uint64
	SyntheticRate   int
}

// Default returns the configuration of a Defender started without options.
func Default() Config {
	return Config{
		BundleDir:     "/etc/bulwark/defender",
		StateDir:      "/var/lib/bulwark-defender",
		SpoolMaxBytes: 256 << 20,
		ProcRoot:      "/proc",
		Sensor:        true,
		Shim:          ShimAuto,
		ShimTimeout:   shimv1.DefaultTimeout,
		Enforce:       EnforceAuto,

		Compliance:          true,
		HostRoot:            "/",
		ComplianceInterval:  30 * time.Second,
		LearningWindow:      runtimepolicy.DefaultLearningWindow,
		ModelReportInterval: time.Minute,
		IncidentWindow:      runtimepolicy.DefaultIncidentWindow,
	}
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var errs []error
	if c.BundleDir == "" {
		errs = append(errs, errors.New("bundle dir: empty"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("state dir: empty"))
	}
	if c.SpoolMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("spool max bytes %d: want at least 1 MiB", c.SpoolMaxBytes))
	}
	if c.ConsoleURL != "" && !strings.HasPrefix(c.ConsoleURL, "wss://") {
		errs = append(errs, fmt.Errorf("console url %q: want wss://host:port%s", c.ConsoleURL, bulwarkv1.Path))
	}
	if c.RingBufferBytes != 0 && (c.RingBufferBytes < 4096 || c.RingBufferBytes&(c.RingBufferBytes-1) != 0) {
		errs = append(errs, fmt.Errorf("ring buffer bytes %d: want a power of two, at least 4096", c.RingBufferBytes))
	}
	switch c.Shim {
	case ShimAuto, ShimManual, ShimOff:
	default:
		errs = append(errs, fmt.Errorf("shim %q: want auto, manual or off", c.Shim))
	}
	switch c.Enforce {
	case EnforceAuto, EnforceOff:
	default:
		errs = append(errs, fmt.Errorf("enforce %q: want auto or off", c.Enforce))
	}
	if c.ShimTimeout <= 0 || c.ShimTimeout > shimv1.MaxTimeout {
		errs = append(errs, fmt.Errorf("shim timeout %s: want more than 0 and at most %s", c.ShimTimeout, shimv1.MaxTimeout))
	}
	if c.Shim != ShimOff {
		if sock := shimPaths(c).Socket; len(sock) >= 108 {
			errs = append(errs, fmt.Errorf("shim socket %s: %d bytes, a unix socket path must be under 108", sock, len(sock)))
		}
	}
	if c.Compliance && c.HostRoot == "" {
		errs = append(errs, errors.New("host root: empty"))
	}
	if c.Compliance && c.ComplianceInterval < time.Second {
		errs = append(errs, fmt.Errorf("compliance interval %s: want at least 1s", c.ComplianceInterval))
	}
	if c.SyntheticRate < 0 {
		errs = append(errs, errors.New("synthetic rate: negative"))
	}
	if c.LearningWindow <= 0 {
		errs = append(errs, fmt.Errorf("learning window %s: want a positive duration", c.LearningWindow))
	}
	if c.ModelReportInterval <= 0 {
		errs = append(errs, fmt.Errorf("model report interval %s: want a positive duration", c.ModelReportInterval))
	}
	if c.IncidentWindow <= 0 {
		errs = append(errs, fmt.Errorf("incident window %s: want a positive duration", c.IncidentWindow))
	}
	return errors.Join(errs...)
}

// Defender is a running Defender.
type Defender struct {
	cfg         Config
	version     string
	logger      *slog.Logger
	bundle      *Bundle
	spool       *spool.Spool
	ident       identity
	client      *channel.Client
	gate        *gate     // nil: shim off
	sensing     *sensing  // nil: no sensor
	assessor    *assessor // nil: compliance off
	defense     *defense
	kernel      *kernelEnforcer // nil: no kernel enforcement (off, unavailable, or a double in Config.Enforcer)
	sensorErr   string
	metricsAddr atomic.Value // string, once serving

	mu           sync.Mutex
	policy       bulwarkv1.Policy
	policySource string // "disk", "console" or "none"
	connected    bool
	lastErr      string
}

const (
	policyFile = "policy.json"
	statusFile = "status.json"
)

// New loads the bundle and, before any network, the last policy from disk.
func New(cfg Config, version string, logger *slog.Logger) (_ *Defender, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	b, err := LoadBundle(cfg.BundleDir)
	if err != nil {
		return nil, err
	}
	if cfg.ConsoleURL == "" {
		cfg.ConsoleURL = b.Info.ConsoleURL
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	d := &Defender{cfg: cfg, version: version, logger: logger.With(slog.String("defender", b.Info.DefenderID)), bundle: b, policySource: "none"}
	d.ident = detectIdentity(cfg.PodName, cfg.ProcRoot)
	enf, stop, why := d.enforcement()
	defer func() {
		if err != nil && d.kernel != nil {
			_ = d.kernel.Close()
		}
	}()
	if d.defense, err = newDefense(defenseConfig{
		stateDir: cfg.StateDir, procRoot: cfg.ProcRoot, host: d.ident.Hostname, learningWindow: cfg.LearningWindow,
		modelReport: cfg.ModelReportInterval, tick: 250 * time.Millisecond, incidentWindow: cfg.IncidentWindow,
		noEnforcer: why,
	}, d.logger, enf, stop, d.emitDefense); err != nil {
		return nil, err
	}
	if err := d.loadPolicy(); err != nil {
		return nil, err
	}
	sp, err := spool.Open(filepath.Join(cfg.StateDir, "spool"), spool.Options{
		MaxBytes: cfg.SpoolMaxBytes, SegmentBytes: min(8<<20, cfg.SpoolMaxBytes/8), SyncEvery: spoolSyncEvery,
	})
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	d.spool = sp
	if cfg.Shim != ShimOff {
		if d.gate, err = newGate(cfg, d, d.logger); err != nil {
			sp.Close()
			return nil, err
		}
	}
	if cfg.Compliance {
		d.assessor = newAssessor(cfg, d, d.logger)
		d.assessor.init()
	}
	if cfg.Sensor {
		if d.sensing, err = newSensing(d, cfg, d.logger); err != nil {
			// Run with what works: the channel, the spool, the policy.
			d.sensorErr = err.Error()
			d.logger.Error("runtime sensor unavailable; running without it", slog.Any("err", err))
			err = nil
		}
	}
	d.client = channel.NewClient(channel.ClientConfig{
		URL:       cfg.ConsoleURL,
		TLS:       b.TLS,
		Hello:     d.hello,
		Heartbeat: d.heartbeat,
		OnPolicy:  d.applyPolicy,
		Outbox:    outbox{d.spool},
		OnState:   d.onState,
	}, d.logger)
	d.writeStatus()
	return d, nil
}

// enforcement picks what denies and what stops: the configured doubles,
// else (auto) the kernel enforcer, when it starts, and the runtime's
// stopper; off: nothing. why says why nothing denies.
func (d *Defender) enforcement() (Enforcer, Stopper, string) {
	cfg := d.cfg
	if cfg.Enforce == EnforceOff {
		d.logger.Warn("enforcement is off: runtime rules that prevent or block are audited only")
		return nil, nil, "enforcement is off (--enforce=off)"
	}
	enf, stop, why := cfg.Enforcer, cfg.Stopper, ""
	if stop == nil {
		rcfg := runtime.DefaultConfig()
		rcfg.ProcRoot = cfg.ProcRoot
		if cfg.RuncRoots != nil {
			rcfg.RuncRoots = cfg.RuncRoots
		}
		stop = runtimeStopper{rcfg: rcfg, logger: d.logger}
	}
	if enf == nil {
		k, err := newKernelEnforcer(cfg, d.logger)
		if err != nil {
			d.logger.Error("kernel enforcer unavailable; runtime rules that prevent are audited only", slog.Any("err", err))
			return nil, stop, "the kernel enforcer did not start: " + err.Error()
		}
		d.kernel, enf = k, k
	}
	return enf, stop, why
}

// loadPolicy enforces the policy stored on disk, if any.
func (d *Defender) loadPolicy() error {
	raw, err := os.ReadFile(filepath.Join(d.cfg.StateDir, policyFile))
	if errors.Is(err, os.ErrNotExist) {
		d.logger.Info("no stored policy; waiting for the console")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read stored policy: %w", err)
	}
	var p bulwarkv1.Policy
	if err := json.Unmarshal(raw, &p); err != nil {
		// Atomic replacement makes this unexpected; refuse to guess a policy.
		return fmt.Errorf("stored policy %s is corrupt: %w", filepath.Join(d.cfg.StateDir, policyFile), err)
	}
	d.policy, d.policySource = p, "disk"
	d.defense.setPolicy(p)
	d.logger.Info("enforcing stored policy", slog.Int64("revision", p.Revision))
	return nil
}

// applyPolicy stores a snapshot from the Console, then enforces it.
func (d *Defender) applyPolicy(p bulwarkv1.Policy) error {
	d.mu.Lock()
	cur := d.policy.Revision
	d.mu.Unlock()
	if p.Revision == cur {
		return nil
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(d.cfg.StateDir, policyFile), raw, 0o600); err != nil {
		return err
	}
	d.mu.Lock()
	d.policy, d.policySource = p, "console"
	d.mu.Unlock()
	d.defense.setPolicy(p)
	d.logger.Info("enforcing policy", slog.Int64("revision", p.Revision), slog.Int64("previous", cur))
	if d.gate != nil {
		d.gate.policyChanged()
	}
	if d.assessor != nil {
		d.assessor.policyChanged()
	}
	d.writeStatus()
	return nil
}

// PolicyRevision is the revision enforced now.
func (d *Defender) PolicyRevision() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.policy.Revision
}

func (d *Defender) spoolInfo() bulwarkv1.SpoolInfo {
	st := d.spool.Stats()
	return bulwarkv1.SpoolInfo{Depth: st.Depth, Dropped: st.Dropped, NextSeq: st.NextSeq}
}

func (d *Defender) hello() bulwarkv1.Hello {
	return bulwarkv1.Hello{
		ID:             d.bundle.Info.DefenderID,
		Version:        d.version,
		Hostname:       d.ident.Hostname,
		HostNetwork:    d.ident.HostNetwork,
		OS:             d.ident.OS,
		Kernel:         d.ident.Kernel,
		Runtimes:       d.ident.Runtimes,
		Capabilities:   d.capabilities(),
		PolicyRevision: d.PolicyRevision(),
		Spool:          d.spoolInfo(),
		Sensor:         d.sensorInfo(),
	}
}

func (d *Defender) capabilities() []string {
	caps := []string{"spool"}
	if d.sensing != nil {
		caps = append(caps, d.sensing.capabilities()...)
	}
	if d.gate != nil {
		caps = append(caps, "shim:"+d.gate.mode) // answers bulwark-shim
	}
	return caps
}

func (d *Defender) sensorInfo() *bulwarkv1.SensorInfo {
	if d.sensing == nil {
		if d.defense.enforcer == nil {
			return nil
		}
		// No sensor, but the enforcer: say how it prevents.
		return &bulwarkv1.SensorInfo{Enforcement: d.defense.status().Enforcement}
	}
	si := d.sensing.info()
	si.Enforcement = d.defense.status().Enforcement
	return si
}

func (d *Defender) heartbeat() bulwarkv1.Heartbeat {
	si := d.spoolInfo()
	return bulwarkv1.Heartbeat{Time: time.Now(), PolicyRevision: d.PolicyRevision(), Spool: &si, Sensor: d.sensorInfo()}
}

func (d *Defender) onState(connected bool, err error) {
	d.mu.Lock()
	d.connected = connected
	d.lastErr = ""
	if err != nil {
		d.lastErr = err.Error()
	}
	d.mu.Unlock()
	d.writeStatus()
}

// Status is what status.json and `bulwark-defender status` show.
type Status struct {
	ID             string                `json:"id"`
	Version        string                `json:"version"`
	Hostname       string                `json:"hostname"`
	HostNetwork    bool                  `json:"hostNetwork"`
	Console        string                `json:"console"`
	Connected      bool                  `json:"connected"`
	LastError      string                `json:"lastError,omitempty"`
	PolicyRevision int64                 `json:"policyRevision"`
	PolicySource   string                `json:"policySource"` // disk, console, none
	Spool          bulwarkv1.SpoolInfo   `json:"spool"`
	Sensor         *bulwarkv1.SensorInfo `json:"sensor,omitempty"`
	SensorError    string                `json:"sensorError,omitempty"`
	Shim           *ShimStatus           `json:"shim,omitempty"`
	Compliance     *ComplianceStatus     `json:"compliance,omitempty"`
	Runtime        *RuntimeStatus        `json:"runtime,omitempty"`
	CertNotAfter   time.Time             `json:"certNotAfter"`
	UpdatedAt      time.Time             `json:"updatedAt"`
}

// Status returns the Defender's current status.
func (d *Defender) Status() Status {
	var shimStatus *ShimStatus
	if d.gate != nil {
		shimStatus = d.gate.statusInfo()
	}
	var cs *ComplianceStatus
	if d.assessor != nil {
		cs = d.assessor.statusInfo()
	}
	rs := d.defense.status()
	d.mu.Lock()
	defer d.mu.Unlock()
	return Status{
		Compliance: cs,
		Runtime:    rs,
		ID:         d.bundle.Info.DefenderID, Version: d.version, Hostname: d.ident.Hostname, HostNetwork: d.ident.HostNetwork,
		Console: d.cfg.ConsoleURL, Connected: d.connected, LastError: d.lastErr,
		PolicyRevision: d.policy.Revision, PolicySource: d.policySource, Spool: d.spoolInfo(),
		Sensor: d.sensorInfo(), SensorError: d.sensorErr, Shim: shimStatus,
		CertNotAfter: d.bundle.Leaf.NotAfter, UpdatedAt: time.Now().UTC(),
	}
}

func (d *Defender) writeStatus() {
	raw, err := json.MarshalIndent(d.Status(), "", "  ")
	if err == nil {
		err = writeFileView(filepath.Join(d.cfg.StateDir, statusFile), append(raw, '\n'), 0o644)
	}
	if err != nil {
		d.logger.Warn("write status", slog.Any("err", err))
	}
}

// ReadStatus reads the status a Defender wrote in stateDir.
func ReadStatus(stateDir string) (Status, error) {
	var st Status
	raw, err := os.ReadFile(filepath.Join(stateDir, statusFile))
	if err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	return st, nil
}

// Emit spools events of one kind; data are JSON objects.
func (d *Defender) Emit(kind string, at time.Time, data ...json.RawMessage) error {
	recs := make([][]byte, len(data))
	for i, x := range data {
		b, err := json.Marshal(spooled{Time: at, Kind: kind, Data: x})
		if err != nil {
			return err
		}
		recs[i] = b
	}
	_, _, err := d.spool.Append(recs...)
	return err
}

// Run works until ctx ends: the channel, and the synthetic generator when configured.
// The stored policy is enforced on the containers already running before
// the channel starts, so that a Defender that cannot reach the Console
// still prevents what the policy prevents.
func (d *Defender) Run(ctx context.Context) error {
	if d.kernel != nil {
		if cs, ok := d.kernel.list(); ok {
			d.defense.containersRunning(cs)
		}
	}
	if d.sensing != nil {
		d.sensing.scanExisting()
	}
	d.defense.step(ctx)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.defense.run(ctx) })
	if d.kernel != nil {
		g.Go(func() error { d.kernel.watch(ctx, d.defense); return nil })
		g.Go(func() error { d.kernel.forward(ctx, d.Prevented); return nil })
	}
	g.Go(func() error { return d.client.Run(ctx) })
	if d.sensing != nil {
		g.Go(func() error { return d.sensing.run(ctx) })
	}
	if d.cfg.MetricsAddr != "" {
		g.Go(func() error { return d.serveMetrics(ctx, d.cfg.MetricsAddr) })
	}
	if d.gate != nil {
		g.Go(func() error { return d.gate.run(ctx) })
	}
	if d.assessor != nil {
		g.Go(func() error { return d.assessor.run(ctx) })
	}
	if d.cfg.SyntheticEvents > 0 {
		g.Go(func() error { return d.synthesize(ctx) })
	}
	g.Go(func() error { // keep status.json fresh for operators and tests
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				d.writeStatus()
			}
		}
	})
	err := g.Wait()
	d.writeStatus()
	return err
}

// Close removes the enforcer's kernel state, detaches the sensor and
// releases the spool.
func (d *Defender) Close() error {
	var errs []error
	if d.kernel != nil {
		errs = append(errs, d.kernel.Close())
	}
	if d.sensing != nil {
		errs = append(errs, d.sensing.close())
	}
	if d.gate != nil {
		errs = append(errs, d.gate.close())
	}
	if d.spool != nil {
		errs = append(errs, d.spool.Close())
	}
	return errors.Join(errs...)
}

// synthesize produces numbered test events until SyntheticEvents exist in
// total; it resumes after a restart from the spool's next seq.
func (d *Defender) synthesize(ctx context.Context) error {
	const batch = 500
	var tick <-chan time.Time
	per := batch
	if d.cfg.SyntheticRate > 0 {
		per = max(1, d.cfg.SyntheticRate/100)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	for {
		made := d.spool.Stats().NextSeq - 1
		if made >= d.cfg.SyntheticEvents {
			d.logger.Info("synthetic events done", slog.Uint64("events", made))
			<-ctx.Done()
			return nil
		}
		n := min(uint64(per), d.cfg.SyntheticEvents-made)
		data := make([]json.RawMessage, n)
		for i := range data {
			data[i] = json.RawMessage(fmt.Sprintf(`{"n":%d}`, made+uint64(i)+1))
		}
		if err := d.Emit("synthetic", time.Now(), data...); err != nil {
			return fmt.Errorf("synthetic events: %w", err)
		}
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return nil
			}
		} else if ctx.Err() != nil {
			return nil
		}
	}
}

// spooled is an event as kept in the spool; its seq is the spool's.
type spooled struct {
	Time time.Time       `json:"t"`
	Kind string          `json:"k"`
	Data json.RawMessage `json:"d,omitempty"`
}

// parseSpooled reads a record in the layout appendSpooled and
// json.Marshal(spooled) write, {"t":"…","k":"…","d":…}, without scanning the
// data: it is compact JSON that json.Marshal wrote, and the spool's checksum
// says it is what was written. false: another layout, for json.Unmarshal.
func parseSpooled(b []byte) (spooled, bool) {
	const pt, pk, pd = `{"t":"`, `","k":"`, `","d":`
	rest, ok := bytes.CutPrefix(b, []byte(pt))
	if !ok || len(b) == 0 || b[len(b)-1] != '}' {
		return spooled{}, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return spooled{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, string(rest[:i]))
	if err != nil {
		return spooled{}, false
	}
	rest, ok = bytes.CutPrefix(rest[i:], []byte(pk))
	if !ok {
		return spooled{}, false
	}
	i = bytes.IndexByte(rest, '"')
	if i <= 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return spooled{}, false
	}
	kind := string(rest[:i])
	data, ok := bytes.CutPrefix(rest[i:], []byte(pd))
	if !ok || len(data) < 2 { // at least one byte of data and the closing brace
		return spooled{}, false
	}
	return spooled{Time: at, Kind: kind, Data: data[:len(data)-1]}, true
}

// spoolSyncEvery bounds the spool's fsyncs to one a second. Each fsync is a
// journal commit and a disk cache flush that the node's own writers wait
// behind: one per 200 ms batch cost a workload that creates and truncates
// files 1.5 % of its time (bench/sensor, docs/benchmarks.md). Events are
// written to the spool file at once, so the Defender's death loses none of
// them; they are sent once fsynced, up to a second later under load; a power
// loss takes at most the last second's, which were never sent.
const spoolSyncEvery = time.Second

// outbox adapts the spool to the channel client.
type outbox struct{ sp *spool.Spool }

func (o outbox) Pending(from uint64, maxEvents int) ([]bulwarkv1.Event, error) {
	recs, err := o.sp.Read(from, maxEvents, bulwarkv1.MaxFrameBytes/2)
	if err != nil {
		return nil, err
	}
	out := make([]bulwarkv1.Event, 0, len(recs))
	for _, r := range recs {
		s, ok := parseSpooled(r.Data)
		if !ok {
			if err := json.Unmarshal(r.Data, &s); err != nil || s.Kind == "" {
				s = spooled{Time: time.Now(), Kind: "spool.corrupt"} // keep the seq sequence whole; report, don't stall
			}
		}
		out = append(out, bulwarkv1.Event{Seq: r.Seq, Time: s.Time, Kind: s.Kind, Data: s.Data})
	}
	return out, nil
}

func (o outbox) Acked(seq uint64) error {
	next := o.sp.Stats().NextSeq
	if seq >= next {
		// The Console has more of this Defender's events than the spool has
		// ever held (its state was wiped): continue numbering after them, or
		// new events would be taken for duplicates.
		if err := o.sp.SkipTo(seq + 1); err != nil {
			return err
		}
	}
	return o.sp.Ack(seq)
}

func (o outbox) Wake() <-chan struct{} { return o.sp.Notify() }
