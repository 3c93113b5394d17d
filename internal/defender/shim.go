package defender

import (
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

	"bulwark/api/bulwarkv1"
	"bulwark/api/shimv1"
	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/shim"
)

// Shim modes (Config.Shim).
const (
	// ShimAuto serves decisions and puts the shim in place of runc while
	// a blocking rule is active, and takes it out when none is left.
	ShimAuto = "auto"
	// ShimManual serves decisions; `bulwark-defender shim install` and
	// `uninstall` are the operator's to run.
	ShimManual = "manual"
	// ShimOff neither serves decisions nor touches runc.
	ShimOff = "off"
)

// policyContainerCompliance is the policy type whose rules decide.
const policyContainerCompliance = "compliance/container"

// How often the gate looks for the shim's audit records and checks the
// installation (a runc package upgrade puts runc back over the shim).
const (
	auditScanEvery = time.Second
	reconcileEvery = 30 * time.Second
	auditBatch     = 256
)

// ShimStatus is the shim part of the Defender's status.
type ShimStatus struct {
	Mode     string `json:"mode"`
	Socket   string `json:"socket"`
	Blocking bool   `json:"blocking"` // a blocking rule is active
	// Runc is each runc binary the Defender manages and its state.
	Runc      []shim.Status `json:"runc,omitempty"`
	Decisions uint64        `json:"decisions"` // answered since start
	Blocked   uint64        `json:"blocked"`
	// PolicyError is set when the compliance policy could not be parsed;
	// the built-in rules decide meanwhile.
	PolicyError string `json:"policyError,omitempty"`
	LastError   string `json:"error,omitempty"`
}

// ImageGate decides from an image's vulnerability scan whether a container
// may run. Vulnerability blocking rules plug in here once images are
// scanned; until then the Defender has none.
type ImageGate interface {
	// Blocked returns the blocking rule and a one-line reason (a CVE
	// count, the worst severity), or ok false.
	Blocked(ctx context.Context, image string) (rule, reason string, ok bool)
}

// gate is the Defender's side of bulwark-shim: it decides on the socket,
// installs and removes the shim as the policy says, writes the settings
// the shim decides with when it cannot ask, and sends the shim's own audit
// records on.
type gate struct {
	mode      string
	timeout   time.Duration
	host      string
	paths     shim.Paths
	installer shim.Installer
	logger    *slog.Logger
	srv       *shim.Server

	// Seams for tests.
	policy    func() bulwarkv1.Policy
	emit      func(kind string, at time.Time, data ...json.RawMessage) error
	normalize func(spec []byte, engine string) (compliance.Workload, error)
	targets   func() []string
	images    ImageGate // nil: no vulnerability rules yet

	wake      chan struct{}
	pathErrs  map[string]string // the last error per runc path, reported once (reconcile's own)
	decisions atomic.Uint64
	blocked   atomic.Uint64

	mu        sync.Mutex
	parsedRev int64
	parsed    bool
	rules     []compliance.Rule
	blocking  bool
	policyErr string
	runc      []shim.Status
	lastErr   string
}

// shimPaths returns the shim directory's paths of cfg.
func shimPaths(cfg Config) shim.Paths {
	dir := cfg.ShimDir
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, "shim")
	}
	return shim.PathsIn(dir)
}

// shimInstaller returns the installer of cfg: the shim binary next to this
// executable unless configured.
func shimInstaller(cfg Config) shim.Installer {
	bin := cfg.ShimBinary
	if bin == "" {
		if exe, err := os.Executable(); err == nil {
			bin = filepath.Join(filepath.Dir(exe), "bulwark-shim")
		}
	}
	return shim.Installer{Shim: bin, Paths: shimPaths(cfg)}
}

// shimTargets returns the runc binaries of cfg: the configured ones, else
// those found on this host.
func shimTargets(cfg Config) func() []string {
	return func() []string {
		if len(cfg.ShimRunc) > 0 {
			return cfg.ShimRunc
		}
		return shim.Discover(shim.Discovery{PATH: os.Getenv("PATH")})
	}
}

func newGate(cfg Config, d *Defender, logger *slog.Logger) (*gate, error) {
	g := &gate{
		mode:      cfg.Shim,
		timeout:   cfg.ShimTimeout,
		host:      d.ident.Hostname,
		paths:     shimPaths(cfg),
		installer: shimInstaller(cfg),
		logger:    logger.With(slog.String("part", "shim")),
		policy: func() bulwarkv1.Policy {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.policy
		},
		emit:      d.Emit,
		normalize: fromOCI,
		targets:   shimTargets(cfg),
		wake:      make(chan struct{}, 1),
	}
	srv, err := shim.Listen(shim.ServerConfig{Socket: g.paths.Socket}, g, g.logger)
	if err != nil {
		return nil, err
	}
	g.srv = srv
	return g, nil
}

// policyChanged wakes the gate to write the settings and install or remove
// the shim.
func (g *gate) policyChanged() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// run serves decisions and keeps the installation in line with the policy
// until ctx ends. The first reconcile runs at once: the stored policy is
// enforced before the Console is reachable.
func (g *gate) run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- g.srv.Serve(ctx) }()
	g.reconcile(ctx)
	g.collectAudits()
	audits := time.NewTicker(auditScanEvery)
	defer audits.Stop()
	check := time.NewTicker(reconcileEvery)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			g.collectAudits()
			return <-done
		case <-g.wake:
			g.reconcile(ctx)
		case <-check.C:
			g.reconcile(ctx)
		case <-audits.C:
			g.collectAudits()
		}
	}
}

func (g *gate) close() error { return g.srv.Close() }

// currentRules parses the container compliance policy of the snapshot in
// force (once per revision). A missing policy means the built-in rules; a
// document that does not parse is reported and the built-in rules decide.
func (g *gate) currentRules() (int64, []compliance.Rule, bool) {
	p := g.policy()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.parsed && g.parsedRev == p.Revision {
		return g.parsedRev, g.rules, g.blocking
	}
	pol := compliance.DefaultPolicy(compliance.PolicyTypeContainer)
	g.policyErr = ""
	if raw, ok := p.Policies[policyContainerCompliance]; ok {
		parsed, err := compliance.ParsePolicy(raw)
		if err != nil {
			g.policyErr = err.Error()
			g.logger.Error("container compliance policy refused; the built-in rules decide", slog.Int64("revision", p.Revision), slog.Any("err", err))
		} else {
			pol = parsed
		}
	}
	g.parsed, g.parsedRev, g.rules, g.blocking = true, p.Revision, pol.Rules, pol.Blocking()
	return g.parsedRev, g.rules, g.blocking
}

// Decide answers the shim: blocked when the rule that decides for the
// container blocks any of its findings. Every decision is an event, spooled
// once the shim has its answer (done).
func (g *gate) Decide(ctx context.Context, req shimv1.Request) (shimv1.Decision, func(error)) {
	start := time.Now()
	rev, rules, _ := g.currentRules()
	ev := event.ShimDecision{
		Command: req.Command, Container: eventContainer(req), Bundle: req.Bundle, Host: g.host,
		PolicyRevision: rev, RecordedBy: "defender",
	}
	d := decide(rules, req, g.host, g.normalize, &ev)
	if d.Allowed() && g.images != nil && req.Container.Image != "" {
		if rule, reason, blocked := g.images.Blocked(ctx, req.Container.Image); blocked {
			d = shimv1.Decision{Verdict: shimv1.VerdictBlocked, Rule: rule, Message: fmt.Sprintf("bulwark: blocked by rule %q: %s", rule, reason)}
		}
	}
	ev.Verdict, ev.Rule, ev.Message = d.Verdict, d.Rule, d.Message
	ev.ElapsedMS = time.Since(start).Milliseconds()
	g.decisions.Add(1)
	if !d.Allowed() {
		g.blocked.Add(1)
	}
	return d, func(delivered error) {
		if delivered != nil {
			// The shim stopped waiting: it went by its own verdict and
			// recorded that; this one is what the Defender would have said.
			ev.Error = "not delivered: " + delivered.Error()
		}
		g.logger.Info("shim decision", slog.String("verdict", d.Verdict), slog.String("container", req.ID),
			slog.String("image", req.Container.Image), slog.String("rule", d.Rule))
		if b, err := json.Marshal(ev); err == nil {
			if err := g.emit(event.KindShimDecision, start, b); err != nil {
				g.logger.Error("spool shim decision", slog.Any("err", err))
			}
		}
	}
}

// decide evaluates one request against the rules and fills the event's
// findings and error. The message names the deciding rule and its first
// blocking finding: `bulwark: blocked by rule "prod-strict": 5515 - Do not
// share the host's process namespace`.
func decide(rules []compliance.Rule, req shimv1.Request, host string, normalize func([]byte, string) (compliance.Workload, error), ev *event.ShimDecision) shimv1.Decision {
	w, err := normalize(req.Config, engineOf(req.Root))
	if err != nil {
		ev.Error = err.Error()
		res := compliance.Resource{Image: req.Container.Image, Container: req.Container.Name, Host: host, Namespace: req.Container.Namespace}
		rule, ok := compliance.Decide(rules, res)
		if ok && rule.FailClosed {
			return shimv1.Decision{Verdict: shimv1.VerdictFailClosedError, Rule: rule.Name,
				Message: fmt.Sprintf("bulwark: refused: the container's config could not be evaluated (%v) and rule %q is fail-closed", err, rule.Name)}
		}
		return shimv1.Decision{Verdict: shimv1.VerdictFailOpenError, Rule: rule.Name}
	}
	w.Source.ID = req.ID
	w.Source.Host = host
	var ruleName string
	if rs := w.Resources(); len(rs) > 0 {
		if r, ok := compliance.Decide(rules, rs[0]); ok {
			ruleName = r.Name
		}
	}
	ev.Findings = compliance.Apply(rules, w, compliance.Options{})
	for _, f := range ev.Findings {
		if f.Effect == compliance.EffectBlock {
			return shimv1.Decision{Verdict: shimv1.VerdictBlocked, Rule: ruleName,
				Message: fmt.Sprintf("bulwark: blocked by rule %q: %s", ruleName, f.String())}
		}
	}
	return shimv1.Decision{Verdict: shimv1.VerdictAllowed, Rule: ruleName}
}

// engineOf tells the engine from runc's --root: containerd's is
// /run/containerd/runc/<namespace> (docker's namespace is moby), docker's
// own /run/docker/runtime-runc/moby. Else the normalizer guesses from the
// annotations (CRI, CRI-O).
func engineOf(root string) string {
	elems := strings.Split(filepath.Clean(root), string(filepath.Separator))
	for _, e := range elems {
		switch e {
		case "containerd":
			if elems[len(elems)-1] == "moby" {
				return compliance.EngineDocker
			}
			return compliance.EngineContainerd
		case "docker":
			return compliance.EngineDocker
		case "crio", "cri-o":
			return compliance.EngineCRIO
		}
	}
	return ""
}

func eventContainer(req shimv1.Request) event.Container {
	c := req.Container
	runtime := "runc"
	switch engineOf(req.Root) {
	case compliance.EngineContainerd:
		runtime = "containerd"
	case compliance.EngineDocker:
		runtime = "docker"
	case compliance.EngineCRIO:
		runtime = "crio"
	}
	return event.Container{ID: req.ID, Name: c.Name, Image: c.Image, Pod: c.Pod, Namespace: c.Namespace, Runtime: runtime}
}

// settingsFor returns what the shim needs to decide alone: the timeout and
// the enabled rules up to the last fail-closed one. Bulwark's own
// components come first whenever a rule is fail-closed, so that the
// Defender can always be started while it is down.
func settingsFor(rules []compliance.Rule, rev int64, host string, timeout time.Duration) shimv1.Settings {
	s := shimv1.Settings{V: shimv1.Version, TimeoutMS: timeout.Milliseconds(), PolicyRevision: rev, Host: host}
	last := -1
	for i, r := range rules {
		if !r.Disabled && r.FailClosed {
			last = i
		}
	}
	if last >= 0 {
		own := compliance.DefaultRules()[0] // "Default - ignore Bulwark components"
		own.FailClosed = false
		rules = append([]compliance.Rule{own}, rules[:last+1]...)
		last++
	}
	for _, r := range rules[:last+1] {
		if r.Disabled {
			continue
		}
		sr := shimv1.Rule{Name: r.Name, FailClosed: r.FailClosed}
		for _, c := range r.Collections {
			sr.Collections = append(sr.Collections, shimv1.Collection{
				Images: c.Images, Containers: c.Containers, Hosts: c.Hosts, Labels: c.Labels, Namespaces: c.Namespaces, Clusters: c.Clusters,
			})
		}
		s.Rules = append(s.Rules, sr)
	}
	return s
}

// reconcile writes the settings and, in auto mode, installs the shim while
// a blocking rule is active and removes it when none is.
func (g *gate) reconcile(ctx context.Context) {
	rev, rules, blocking := g.currentRules()
	var errs []error
	if err := shim.WriteSettings(g.paths.Settings, settingsFor(rules, rev, g.host, g.timeout)); err != nil {
		errs = append(errs, fmt.Errorf("write shim settings: %w", err))
	}
	var statuses []shim.Status
	for _, path := range g.targets() {
		var st shim.Status
		var changed bool
		var err error
		action, reason := "", ""
		switch {
		case g.mode != ShimAuto:
			st, err = g.installer.Status(path)
		case blocking:
			action, reason = "installed", "blocking rule active"
			prev, _ := g.installer.Status(path)
			if prev.State == shim.StateOutdated {
				action = "updated"
			}
			st, changed, err = g.installer.Install(ctx, path)
		default:
			action, reason = "uninstalled", "no blocking rule"
			st, changed, err = g.installer.Uninstall(path)
		}
		newErr := false
		if err != nil {
			errs = append(errs, err)
			if g.pathErrs == nil {
				g.pathErrs = map[string]string{}
			}
			newErr = g.pathErrs[path] != err.Error()
			g.pathErrs[path] = err.Error()
			if newErr {
				g.logger.Error("shim "+strings.TrimSuffix(action, "ed"), slog.String("path", path), slog.Any("err", err))
			}
		} else {
			delete(g.pathErrs, path)
		}
		// An event for every change, and once for each new failure (the
		// policy wants the shim and it cannot be put in place, say).
		if changed || (newErr && action != "") {
			g.logger.Info("shim "+action, slog.String("path", st.Path), slog.String("reason", reason))
			ie := event.ShimInstall{Action: action, Path: st.Path, Reason: reason}
			if st.Manifest != nil {
				ie.RuncSHA256 = st.Manifest.SHA256
			}
			if err != nil {
				ie.Error = err.Error()
			}
			if b, jerr := json.Marshal(ie); jerr == nil {
				if eerr := g.emit(event.KindShimInstall, time.Now(), b); eerr != nil {
					g.logger.Error("spool shim install event", slog.Any("err", eerr))
				}
			}
		}
		statuses = append(statuses, st)
	}
	g.mu.Lock()
	g.runc = statuses
	g.lastErr = ""
	if err := errors.Join(errs...); err != nil {
		g.lastErr = err.Error()
	}
	g.mu.Unlock()
}

// collectAudits sends the records the shim left when it decided alone as
// shim.decision events, then removes them.
func (g *gate) collectAudits() {
	files, err := shim.ReadAudits(g.paths.AuditDir, auditBatch)
	if err != nil {
		g.logger.Warn("read shim audit records", slog.Any("err", err))
		return
	}
	for _, f := range files {
		if f.Err != nil {
			g.logger.Warn("bad shim audit record; removed", slog.String("file", f.Path), slog.Any("err", f.Err))
			_ = os.Remove(f.Path)
			continue
		}
		a := f.Audit
		ev := event.ShimDecision{
			Verdict: a.Verdict, Command: a.Command, Rule: a.Rule, Bundle: a.Bundle, Host: g.host, RecordedBy: "shim",
			Error: a.Error, ElapsedMS: a.ElapsedMS,
			Container: eventContainer(shimv1.Request{ID: a.Container.ID, Root: a.Root, Container: a.Container}),
		}
		b, err := json.Marshal(ev)
		if err == nil {
			err = g.emit(event.KindShimDecision, a.Time, b)
		}
		if err != nil {
			g.logger.Error("spool shim audit record", slog.String("file", f.Path), slog.Any("err", err))
			return // keep it for the next pass
		}
		g.logger.Warn("the shim decided without the Defender", slog.String("verdict", a.Verdict), slog.String("container", a.Container.ID), slog.String("error", a.Error))
		if err := os.Remove(f.Path); err != nil {
			g.logger.Error("remove shim audit record", slog.String("file", f.Path), slog.Any("err", err))
		}
	}
}

func (g *gate) statusInfo() *ShimStatus {
	_, _, blocking := g.currentRules()
	g.mu.Lock()
	defer g.mu.Unlock()
	return &ShimStatus{
		Mode: g.mode, Socket: g.paths.Socket, Blocking: blocking, Runc: g.runc,
		Decisions: g.decisions.Load(), Blocked: g.blocked.Load(), PolicyError: g.policyErr, LastError: g.lastErr,
	}
}

// ShimCommand runs `bulwark-defender shim install|uninstall|status` on the
// runc binaries of cfg, without a running Defender.
func ShimCommand(ctx context.Context, cfg Config, action string) ([]shim.Status, error) {
	in := shimInstaller(cfg)
	var out []shim.Status
	var errs []error
	targets := shimTargets(cfg)()
	if len(targets) == 0 {
		return nil, errors.New("no runc binary found (PATH, /usr/bin, /usr/sbin, /usr/local/bin, /usr/local/sbin, containerd's BinaryName); name one with --shim-runc")
	}
	for _, path := range targets {
		var st shim.Status
		var err error
		switch action {
		case "install":
			st, _, err = in.Install(ctx, path)
		case "uninstall":
			st, _, err = in.Uninstall(path)
		case "status":
			st, err = in.Status(path)
		default:
			return nil, fmt.Errorf("shim %q: want install, uninstall or status", action)
		}
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}
