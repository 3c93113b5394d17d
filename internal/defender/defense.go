package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/collection"
	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

// defenseConfig is what runtime defense takes from the Defender's Config.
type defenseConfig struct {
	stateDir       string
	procRoot       string
	host           string
	learningWindow time.Duration
	modelReport    time.Duration // least time between two reports of a model
	tick           time.Duration
	incidentWindow time.Duration // a forensic record goes with the first audit of a workload in this long
	// noEnforcer says why nothing is prevented when there is no enforcer.
	noEnforcer string
}

// defense is the Defender's runtime defense. For every runtime event it
// decides the runtime rule of the container (or host), learns the image's
// model, evaluates rule and model, and emits audits; it keeps a forensic
// record per container, compiles what the rules prevent for the kernel
// enforcer, and stops containers whose rule blocks.
type defense struct {
	cfg      defenseConfig
	logger   *slog.Logger
	facts    procFacts
	enforcer Enforcer // nil: nothing is prevented
	stopper  Stopper  // nil: nothing is stopped
	// emit queues one event for the spool; it must not block.
	emit func(kind string, at time.Time, data []byte)
	now  func() time.Time

	blocks   chan blockJob
	wake     chan struct{} // a container appeared: apply enforcement now, not at the next tick
	audits   atomic.Uint64
	lastSave time.Time // of models.json; only run's goroutine uses it

	mu           sync.Mutex
	revision     int64
	policyGen    uint64 // counts setPolicy calls: cached rule decisions older than it are stale
	container    rp.Policy
	host         rp.Policy
	overrides    map[string]rp.Override // by image
	models       map[string]*rp.Model   // by image
	reported     map[string]time.Time   // when each model was last sent
	dirty        map[string]bool        // models changed since sent; true: send now
	unsaved      bool                   // models changed since models.json was written
	workloads    map[string]*tracked    // by container ID; "" is the host
	enforceDirty bool                   // the targets changed: apply them at the next step
	retrying     bool                   // a target could not be applied: apply again at retryAt
	retryAt      time.Time
	retryDelay   time.Duration // between applies while a target cannot be applied yet
	mechanisms   map[string]bulwarkv1.Mechanism
}

// A target that could not be applied (a container still starting) is
// applied again after retryFirst, then at doubling gaps up to retryMax
// while it still cannot be; a change (a policy, a container) is applied at
// once all the same.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 10 * time.Second
)

// blockJob is a container to stop and the audit to send once it is.
type blockJob struct {
	container event.Container
	audit     event.Audit
	at        time.Time
}

// driftSlack is how much later than its container's start a binary must
// have changed to be drift: a process's start is the boot-relative clock
// turned into wall time once, at the Defender's start, and a file's change
// time is the wall clock, which NTP slews meanwhile.
const driftSlack = time.Second

// Limits that keep the Defender's memory bounded on a busy host.
const (
	maxModels    = 4096
	maxWorkloads = 4096
	modelsFile   = "models.json"
	// modelsSaveGap spaces the writes of models.json while models learn;
	// the Defender also writes it when it stops.
	modelsSaveGap = 5 * time.Second
	idleWorkload  = time.Hour        // forget a container not heard of for this long
	deadWorkload  = 10 * time.Minute // … or whose processes all exited this long ago
)

func newDefense(cfg defenseConfig, logger *slog.Logger, enforcer Enforcer, stopper Stopper, emit func(string, time.Time, []byte)) (*defense, error) {
	d := &defense{
		cfg: cfg, logger: logger, facts: procFacts{root: cfg.procRoot}, enforcer: enforcer, stopper: stopper, emit: emit, now: time.Now,
		blocks: make(chan blockJob, 64), wake: make(chan struct{}, 1),
		policyGen: 1, // above every new workload's ruleGen: the default policy decides until one is set
		container: rp.DefaultPolicy(rp.Container), host: rp.DefaultPolicy(rp.Host),
		overrides: map[string]rp.Override{}, models: map[string]*rp.Model{}, reported: map[string]time.Time{},
		dirty: map[string]bool{}, workloads: map[string]*tracked{}, mechanisms: map[string]bulwarkv1.Mechanism{},
	}
	why := cfg.noEnforcer
	if why == "" {
		why = "this Defender has no kernel enforcer"
	}
	ms := noEnforcer(why)
	if enforcer != nil {
		ms = enforcer.Mechanisms()
	}
	for _, m := range ms {
		d.mechanisms[m.Kind] = m
	}
	if err := d.loadModels(); err != nil {
		return nil, err
	}
	return d, nil
}

// setPolicy applies a policy snapshot: the runtime rules and the Console's
// model overrides. A runtime policy that does not parse (a newer Console's)
// leaves the one in force, or the default, in place.
func (d *defense) setPolicy(p bulwarkv1.Policy) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.revision = p.Revision
	d.policyGen++
	for _, k := range []rp.Kind{rp.Container, rp.Host} {
		pol := rp.DefaultPolicy(k)
		if raw, ok := p.Policies[k.PolicyType()]; ok {
			parsed, err := rp.ParsePolicy(raw)
			if err != nil {
				d.logger.Error("runtime policy does not parse; keeping the one in force", slog.String("type", k.PolicyType()), slog.Any("err", err))
				continue
			}
			pol = parsed
		}
		if k == rp.Container {
			d.container = pol
		} else {
			d.host = pol
		}
	}
	if raw, ok := p.Policies[rp.OverridesType]; ok {
		var ov rp.Overrides
		if err := json.Unmarshal(raw, &ov); err != nil {
			d.logger.Error("model overrides do not parse", slog.Any("err", err))
		} else {
			d.applyOverrides(ov)
		}
	}
	d.enforceDirty = true
}

// applyOverrides adopts the Console's edits and relearns of a newer
// generation than the local models'.
func (d *defense) applyOverrides(ov rp.Overrides) {
	now := d.now()
	for _, o := range ov.Models {
		if o.Image == "" {
			continue
		}
		d.overrides[o.Image] = o
		m := d.models[o.Image]
		if m != nil && o.Generation <= m.Generation {
			continue
		}
		switch {
		case o.Model != nil:
			adopted := *o.Model
			adopted.ID, adopted.Image, adopted.Generation, adopted.Hosts = rp.ModelID(o.Image), o.Image, o.Generation, nil
			if m == nil && len(d.models) >= maxModels {
				continue
			}
			d.models[o.Image] = &adopted
		case o.Relearn && m != nil:
			m.Relearn(now, d.cfg.learningWindow, o.Generation)
		default:
			continue
		}
		d.logger.Info("adopted the console's model", slog.String("image", o.Image), slog.Int64("generation", o.Generation), slog.Bool("relearn", o.Relearn))
		d.dirty[o.Image], d.unsaved = true, true
	}
}

// runtimeKind reports whether runtime defense looks at events of kind.
func runtimeKind(kind string) bool {
	for _, p := range []string{"process.", "file.", "network.", "privilege.", "namespace.", "kernel."} {
		if strings.HasPrefix(kind, p) {
			return true
		}
	}
	return false
}

// observe judges one runtime event; it runs on the sensor's reader and
// must not block. The event itself is spooled by the caller, before.
func (d *defense) observe(kind string, at time.Time, rt *event.Runtime) {
	if !runtimeKind(kind) {
		return
	}
	facts := rp.Facts{Kind: kind, Runtime: *rt}
	var exeChanged time.Time
	var exeKnown bool
	if kind == event.KindProcessExec && !rt.Existing {
		p := &rt.Process
		if rt.Container != nil {
			exeChanged, exeKnown = p.ExeChanged, !p.ExeChanged.IsZero() // the sensor's, read at the exec
			if !exeKnown {
				exeChanged, exeKnown = d.facts.exeChanged(p.PID)
			}
		}
		if rp.IsShell(*p) {
			facts.StdioSockets = d.facts.stdioSockets(p.PID)
		}
		if p.UID != 0 {
			facts.SetuidRoot = d.facts.setuidRoot(p.PID)
		}
	}

	d.mu.Lock()
	w := d.tracked(rt)
	w.started(&rt.Process)
	if rt.Container != nil {
		for _, p := range writes(kind, rt.File) {
			if !w.written[p] {
				w.markWritten(p)
				if d.container.Prevents() {
					d.enforceDirty = true // drift prevention may need the new path
				}
			}
		}
		if kind == event.KindProcessExec {
			facts.Drift = w.written[rt.Process.Exe] || exeKnown && !w.start.IsZero() && exeChanged.After(w.start.Add(driftSlack))
		}
	}
	if w.ruleGen != d.policyGen {
		w.rule, w.ruleOK = d.decide(rt)
		w.ruleGen = d.policyGen
	}
	rule, ok := w.rule, w.ruleOK
	model := d.model(kind, at, rt)
	var findings []rp.Finding
	if ok {
		findings = rp.Evaluate(rule, model, facts)
	}
	var out []event.Audit
	var jobs []blockJob
	var detections []string
	for _, f := range findings {
		if enforcerReports(w, kind, rt, f) {
			continue // the kernel denied it, and the enforcer reports it
		}
		a := d.audit(w, kind, rt, f)
		detections = append(detections, f.Detection)
		if f.Effect == rp.EffectBlock {
			if job, ok := d.block(w, a, at); ok {
				jobs = append(jobs, job)
				continue // sent once the container is stopped
			}
		}
		out = append(out, a)
	}
	w.record(kind, at, rt, strings.Join(detections, ","))
	var forensic *event.Forensics
	if len(detections) > 0 && (w.lastForensics.IsZero() || at.Sub(w.lastForensics) >= d.cfg.incidentWindow) {
		f := w.forensics(d.cfg.host, detections[0])
		forensic, w.lastForensics = &f, at
	}
	d.mu.Unlock()

	for _, a := range out {
		d.send(event.KindRuntimeAudit, at, a)
	}
	for _, j := range jobs {
		select {
		case d.blocks <- j:
		default:
			j.audit.Audit.BlockError = "too many containers being stopped at once; not stopped"
			d.send(event.KindRuntimeAudit, at, j.audit)
		}
	}
	if forensic != nil {
		d.send(event.KindRuntimeForensics, at, forensic)
	}
}

// enforcerReports says whether an event's finding is the enforcer's to
// report: the kernel denies that kind of action in the workload now (every
// rule of it: where some are not, an audit too many beats one missing),
// and the event is an attempt the kernel refused. The sensor reports writes as
// attempts (at the syscall's entry), so every one of them under a denied
// path was refused; connects and listens it reports with their result, so
// one that did not fail with EPERM, or a listen that did not fail, was not
// denied; an exec it reports has happened.
func enforcerReports(w *tracked, kind string, rt *event.Runtime, f rp.Finding) bool {
	if f.Enforce == "" || !w.enforce.enforcesAll(f.Enforce) {
		return false
	}
	switch kind {
	case event.KindFileWrite, event.KindFileCreate:
		return true
	case event.KindNetConnect:
		return rt.Result == -int64(syscall.EPERM)
	case event.KindNetListen:
		return rt.Result < 0
	}
	return false
}

// send marshals and queues one event.
func (d *defense) send(kind string, at time.Time, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		d.logger.Error("encode", slog.String("kind", kind), slog.Any("err", err))
		return
	}
	if kind == event.KindRuntimeAudit {
		d.audits.Add(1)
	}
	d.emit(kind, at, data)
}

// writes are the files an event writes, for drift.
func writes(kind string, f *event.File) []string {
	if f == nil {
		return nil
	}
	switch kind {
	case event.KindFileWrite, event.KindFileCreate, event.KindFileChmod:
		return []string{f.Path}
	case event.KindFileRename:
		return []string{f.NewPath}
	}
	return nil
}

// tracked returns the record of the event's container (or the host),
// making one. Called with d.mu held.
func (d *defense) tracked(rt *event.Runtime) *tracked {
	key := ""
	if rt.Container != nil {
		key = rt.Container.ID
	}
	w := d.workloads[key]
	if w == nil {
		if len(d.workloads) >= maxWorkloads {
			d.evictOldest()
		}
		var c *event.Container
		if rt.Container != nil {
			cc := *rt.Container
			c = &cc
		}
		w = newTracked(c)
		d.workloads[key] = w
		d.newWorkload()
	}
	return w
}

// newWorkload asks for enforcement to be applied at once: a container's
// first processes must not wait for the next tick. Called with d.mu held.
func (d *defense) newWorkload() {
	d.enforceDirty = true
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// RunningContainer is a container the runtime lists, with its own cgroup.
type RunningContainer struct {
	Container event.Container
	CgroupID  uint64
}

// containersRunning takes the whole list of the containers the runtime
// runs: those no event named yet (started while the Defender runs, or
// before it, quiet since) are tracked, so that their enforcement is
// applied before they act; listed ones no longer listed are gone.
func (d *defense) containersRunning(cs []RunningContainer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	listed := make(map[string]bool, len(cs))
	for _, rc := range cs {
		listed[rc.Container.ID] = true
		w := d.workloads[rc.Container.ID]
		if w == nil {
			if len(d.workloads) >= maxWorkloads {
				d.evictOldest()
			}
			c := rc.Container
			w = newTracked(&c)
			d.workloads[c.ID] = w
			d.newWorkload()
		}
		if w.cgroupID == 0 {
			w.cgroupID = rc.CgroupID
		}
		w.listed = true
		if now.After(w.lastSeen) {
			w.lastSeen = now
		}
	}
	for id, w := range d.workloads {
		if w.listed && !listed[id] && !w.gone {
			w.gone = true
			d.enforceDirty = true
		}
	}
}

func (d *defense) evictOldest() {
	var victim string
	var when time.Time
	for k, w := range d.workloads {
		if k != "" && (when.IsZero() || w.lastSeen.Before(when)) {
			victim, when = k, w.lastSeen
		}
	}
	delete(d.workloads, victim)
}

// decide returns the rule in force for the event's container or host.
// Called with d.mu held.
func (d *defense) decide(rt *event.Runtime) (rp.Rule, bool) {
	if rt.Container != nil {
		return rp.Decide(d.container.Rules, rp.ResourceOf(*rt))
	}
	return rp.Decide(d.host.Rules, collection.Resource{Host: rt.Host})
}

// model returns the model of the event's image, learning from the event
// while it learns; nil for a host or an image without a name. Called with
// d.mu held.
func (d *defense) model(kind string, at time.Time, rt *event.Runtime) *rp.Model {
	if rt.Container == nil || rt.Container.Image == "" {
		return nil
	}
	img := rt.Container.Image
	m := d.models[img]
	if m == nil {
		if d.container.LearningDisabled || len(d.models) >= maxModels {
			return nil
		}
		nm := rp.NewModel(img, at, d.cfg.learningWindow, d.overrides[img].Generation)
		m = &nm
		d.models[img] = m
		d.dirty[img], d.unsaved = true, true
		d.logger.Info("learning a new model", slog.String("image", img), slog.Duration("window", d.cfg.learningWindow))
	}
	if m.Tick(at) {
		d.modelActivated(m)
	}
	if !d.container.LearningDisabled && m.Learn(kind, *rt, at) {
		if _, ok := d.dirty[img]; !ok {
			d.dirty[img] = false // sent at the next report, not at once
		}
		d.unsaved = true
	}
	return m
}

// modelActivated notes a model that ended learning. Called with d.mu held.
func (d *defense) modelActivated(m *rp.Model) {
	d.dirty[m.Image], d.unsaved, d.enforceDirty = true, true, true
	d.logger.Info("model learned", slog.String("image", m.Image), slog.Int("processes", len(m.Processes)))
}

// audit builds the runtime.audit of one finding. Called with d.mu held.
func (d *defense) audit(w *tracked, kind string, rt *event.Runtime, f rp.Finding) event.Audit {
	msg := f.Message
	if f.Effect.Prevents() {
		msg += " (not prevented: " + d.whyNotPrevented(w, f) + ")"
	}
	return event.Audit{Runtime: *rt, Audit: event.AuditInfo{
		Trigger: kind, Rule: f.Rule, Effect: string(f.Effect), Category: f.Category, Detection: f.Detection,
		Message: msg, ModelID: f.ModelID, PolicyRevision: d.revision,
	}}
}

// whyNotPrevented says why an action a rule prevents happened. Called with
// d.mu held.
func (d *defense) whyNotPrevented(w *tracked, f rp.Finding) string {
	m := d.mechanisms[f.Enforce]
	switch {
	case f.Enforce == "":
		return "it is seen only once it happened"
	case m.Mechanism == mechanismNone:
		why := fmt.Sprintf("no mechanism denies %s on this host", f.Enforce)
		if m.Reason != "" {
			why += ": " + m.Reason
		}
		return why
	}
	if note := w.enforce.noteFor(f.Enforce); note != "" {
		return note
	}
	return "it happened before the enforcement was in place"
}

// block marks the workload for stopping; false when it cannot be (a host,
// or already being stopped). Called with d.mu held.
func (d *defense) block(w *tracked, a event.Audit, at time.Time) (blockJob, bool) {
	switch {
	case w.container == nil:
		a.Audit.BlockError = "a host is not stopped; the action is audited"
		return blockJob{}, false
	case w.blocked:
		return blockJob{}, false
	}
	w.blocked = true
	return blockJob{container: *w.container, audit: a, at: at}, true
}

// Prevented records an action the kernel enforcer denied: an audit that
// says so, by which rule and mechanism, and a stop of the container when
// the rule blocks.
func (d *defense) prevented(p Prevented) {
	d.mu.Lock()
	w := d.workloads[p.ContainerID]
	if p.ContainerID == "" || w == nil {
		w = nil
		for _, x := range d.workloads {
			if x.cgroupID == p.CgroupID && p.CgroupID != 0 {
				w = x
				break
			}
		}
	}
	if w == nil {
		if p.ContainerID != "" {
			// A container forgotten meanwhile (gone): audited, not tracked.
			w = newTracked(&event.Container{ID: p.ContainerID})
		} else if w = d.workloads[""]; w == nil {
			w = newTracked(nil)
			d.workloads[""] = w
		}
	}
	rt := event.Runtime{Process: event.Process{PID: p.PID, Exe: p.Exe, CgroupID: p.CgroupID}, Container: w.container, Host: d.cfg.host}
	kind := event.KindProcessExec
	switch p.Kind {
	case rp.EnforceWrite:
		kind = event.KindFileWrite
		rt.File = &event.File{Path: p.Path}
	case rp.EnforceConnect:
		kind = event.KindNetConnect
		rt.Net = &event.Net{DstAddr: p.Addr, DstPort: p.Port}
	case rp.EnforceListen:
		kind = event.KindNetListen
		rt.Net = &event.Net{SrcAddr: p.Addr, SrcPort: p.Port}
	default:
		rt.Process.Exe = p.Path
	}
	effect := rp.EffectPrevent
	if rule, ok := d.decide(&rt); ok && rule.Name == p.Rule {
		if slices.Contains(rp.Compile(rule, d.modelOf(&rt)).Block, p.Detection) {
			effect = rp.EffectBlock
		}
	}
	what := p.Path
	if p.Kind == rp.EnforceConnect || p.Kind == rp.EnforceListen {
		what = fmt.Sprintf("%s port %d", p.Addr, p.Port)
	}
	a := event.Audit{Runtime: rt, Audit: event.AuditInfo{
		Trigger: "enforcer", Rule: p.Rule, Effect: string(effect), Category: rp.DetectionCategory(p.Detection), Detection: p.Detection,
		Message:   fmt.Sprintf("%s of %s by pid %d was prevented by %s (rule %q)", p.Kind, what, p.PID, p.Mechanism, p.Rule),
		Prevented: true, Mechanism: p.Mechanism, PolicyRevision: d.revision,
	}}
	w.record(kind, p.Time, &rt, p.Detection)
	var job blockJob
	blocking := false
	if effect == rp.EffectBlock {
		job, blocking = d.block(w, a, p.Time)
	}
	d.mu.Unlock()
	if blocking {
		select {
		case d.blocks <- job:
			return
		default:
			a.Audit.BlockError = "too many containers being stopped at once; not stopped"
		}
	}
	d.send(event.KindRuntimeAudit, p.Time, a)
}

// modelOf is the model of the event's image without learning. Called with
// d.mu held.
func (d *defense) modelOf(rt *event.Runtime) *rp.Model {
	if rt.Container == nil {
		return nil
	}
	return d.models[rt.Container.Image]
}

// run ticks until ctx ends: models end learning and are reported and
// saved, the enforcer gets new targets, idle containers are forgotten, and
// containers whose rule blocks are stopped.
func (d *defense) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.blockLoop(ctx) })
	defer wg.Wait()
	t := time.NewTicker(d.cfg.tick)
	defer t.Stop()
	for {
		d.step(ctx)
		var retry <-chan time.Time // sooner than the tick
		d.mu.Lock()
		if wait := d.retryAt.Sub(d.now()); d.retrying && wait > 0 && wait < d.cfg.tick {
			retry = time.After(wait)
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			d.saveModels()
			return nil
		case <-t.C:
		case <-d.wake:
		case <-retry:
		}
	}
}

// step does one tick's work.
func (d *defense) step(ctx context.Context) {
	now := d.now()
	d.mu.Lock()
	for _, m := range d.models {
		if m.Tick(now) {
			d.modelActivated(m)
		}
	}
	var reports []rp.Model
	for img, urgent := range d.dirty {
		if !urgent && now.Sub(d.reported[img]) < d.cfg.modelReport {
			continue
		}
		if m := d.models[img]; m != nil {
			c := *m
			c.Processes = slices.Clone(m.Processes)
			c.Network.ListeningPorts = slices.Clone(m.Network.ListeningPorts)
			c.Network.OutboundPorts = slices.Clone(m.Network.OutboundPorts)
			c.Network.OutboundIPs = slices.Clone(m.Network.OutboundIPs)
			c.Filesystem.Paths = slices.Clone(m.Filesystem.Paths)
			c.Hosts = []string{d.cfg.host}
			c.Normalize()
			reports = append(reports, c)
		}
		delete(d.dirty, img)
		d.reported[img] = now
	}
	for k, w := range d.workloads {
		if k != "" && (now.Sub(w.lastSeen) > idleWorkload || !w.live() && !w.listed && now.Sub(w.lastSeen) > deadWorkload || w.gone) {
			delete(d.workloads, k)
			d.enforceDirty = true
		}
	}
	var targets []EnforceTarget
	apply := d.enforcer != nil && (d.enforceDirty || d.retrying && !now.Before(d.retryAt))
	if apply {
		targets = d.targets()
		d.enforceDirty, d.retrying = false, false
	}
	d.mu.Unlock()

	for _, m := range reports {
		d.send(event.KindRuntimeModel, now, m)
	}
	if apply {
		d.applied(targets, d.enforcer.Apply(ctx, targets), now)
	}
	if now.Sub(d.lastSave) >= modelsSaveGap {
		d.saveModels()
		d.lastSave = now
	}
}

// applied records what an Apply put in force for each workload, logs what
// changed, and asks to apply again later when a target may yet succeed.
func (d *defense) applied(targets []EnforceTarget, sts []EnforceStatus, now time.Time) {
	byID := make(map[string]EnforceStatus, len(sts))
	for _, st := range sts {
		byID[st.ContainerID] = st
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	inTargets := make(map[string]bool, len(targets))
	for _, t := range targets {
		inTargets[t.ContainerID] = true
	}
	retry := false
	for k, w := range d.workloads {
		st, ok := byID[k]
		if !inTargets[k] || !ok {
			st = EnforceStatus{ContainerID: k} // nothing to deny there
		}
		if st.Gone {
			w.gone = true
			continue
		}
		if st.Retry {
			retry = true
		}
		what := "the host"
		if k != "" {
			what = k
		}
		switch {
		case st.Retry && d.retryDelay == retryMax:
			// Still failing after every retry: not a container starting.
			d.logger.Warn("enforcement", slog.String("workload", what), slog.Any("kinds", st.Kinds), slog.String("not enforced", strings.Join(st.Notes, "; ")))
		case slices.Equal(st.Kinds, w.enforce.Kinds) && slices.Equal(st.Notes, w.enforce.Notes):
		case st.Retry:
			d.logger.Debug("enforcement", slog.String("workload", what), slog.Any("kinds", st.Kinds), slog.String("not yet", strings.Join(st.Notes, "; ")))
		case len(st.Notes) > 0:
			d.logger.Warn("enforcement", slog.String("workload", what), slog.Any("kinds", st.Kinds), slog.String("not enforced", strings.Join(st.Notes, "; ")))
		default:
			d.logger.Info("enforcement", slog.String("workload", what), slog.Any("kinds", st.Kinds))
		}
		w.enforce = st
	}
	if !retry {
		d.retryDelay = 0
		return
	}
	d.retryDelay = min(max(2*d.retryDelay, retryFirst), retryMax)
	d.retrying, d.retryAt = true, now.Add(d.retryDelay)
}

// targets compiles the enforcement of every known container and the host.
// Called with d.mu held.
func (d *defense) targets() []EnforceTarget {
	var out []EnforceTarget
	hostRule, ok := rp.Decide(d.host.Rules, collection.Resource{Host: d.cfg.host})
	if ok {
		if e := rp.Compile(hostRule, nil); !e.Empty() {
			out = append(out, EnforceTarget{Enforcement: e})
		}
	}
	keys := make([]string, 0, len(d.workloads))
	for k := range d.workloads {
		if k != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w := d.workloads[k]
		if w.gone {
			continue
		}
		rt := event.Runtime{Container: w.container, Host: d.cfg.host}
		rule, ok := d.decide(&rt)
		if !ok {
			continue
		}
		e := rp.Compile(rule, d.modelOf(&rt))
		if e.Empty() {
			continue
		}
		t := EnforceTarget{ContainerID: k, CgroupID: w.cgroupID, Enforcement: e}
		if e.Drift != nil {
			t.DriftPaths = w.writtenPaths()
		}
		out = append(out, t)
	}
	return out
}

// blockLoop stops the containers of block effects, one at a time, and
// sends their audits once it is known whether the stop worked.
func (d *defense) blockLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.blocks:
			a := j.audit
			if d.stopper == nil {
				a.Audit.BlockError = "this Defender cannot stop containers (no runtime stopper)"
				if d.cfg.noEnforcer != "" {
					a.Audit.BlockError = "this Defender stops no container: " + d.cfg.noEnforcer
				}
			} else {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := d.stopper.Stop(sctx, j.container)
				cancel()
				if err != nil {
					a.Audit.BlockError = err.Error()
					d.logger.Error("stop container for a block rule", slog.String("container", j.container.ID), slog.Any("err", err))
				} else {
					a.Audit.Blocked = true
					d.logger.Warn("stopped container for a block rule", slog.String("container", j.container.ID), slog.String("rule", a.Audit.Rule), slog.String("detection", a.Audit.Detection))
				}
			}
			if !a.Audit.Blocked {
				d.mu.Lock()
				if w := d.workloads[j.container.ID]; w != nil {
					w.blocked = false // let a later audit try again
				}
				d.mu.Unlock()
			}
			d.send(event.KindRuntimeAudit, j.at, a)
		}
	}
}

// modelsDoc is models.json.
type modelsDoc struct {
	Models []rp.Model `json:"models"`
}

// loadModels reads the models this Defender learned before it restarted.
func (d *defense) loadModels() error {
	raw, err := os.ReadFile(filepath.Join(d.cfg.stateDir, modelsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read models: %w", err)
	}
	var doc modelsDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		// Written atomically, so this is damage, not a torn write: relearn
		// rather than refuse to start.
		d.logger.Error("stored models are corrupt; learning again", slog.Any("err", err))
		return nil
	}
	for i := range doc.Models {
		m := doc.Models[i]
		if m.Image != "" && len(d.models) < maxModels {
			d.models[m.Image] = &m
		}
	}
	d.logger.Info("loaded learned models", slog.Int("models", len(d.models)))
	return nil
}

// saveModels writes models.json when a model changed.
func (d *defense) saveModels() {
	d.mu.Lock()
	if !d.unsaved {
		d.mu.Unlock()
		return
	}
	doc := modelsDoc{Models: make([]rp.Model, 0, len(d.models))}
	for _, m := range d.models {
		doc.Models = append(doc.Models, *m)
	}
	raw, err := json.Marshal(doc)
	d.unsaved = false
	d.mu.Unlock()
	if err == nil {
		err = writeFileAtomic(filepath.Join(d.cfg.stateDir, modelsFile), raw, 0o600)
	}
	if err != nil {
		d.logger.Error("save models", slog.Any("err", err))
		d.mu.Lock()
		d.unsaved = true
		d.mu.Unlock()
	}
}

// RuntimeStatus is runtime defense in the Defender's status.
type RuntimeStatus struct {
	Models      int                   `json:"models"`
	Learning    int                   `json:"learning"`
	Workloads   int                   `json:"workloads"`
	Audits      uint64                `json:"audits"`
	Enforcement []bulwarkv1.Mechanism `json:"enforcement"`
	// Enforced lists the workloads whose rules the kernel enforces, or
	// means to.
	Enforced []EnforcedWorkload `json:"enforced,omitempty"`
}

// EnforcedWorkload is what the kernel denies in one container, or the
// host, and what of its rules it does not deny.
type EnforcedWorkload struct {
	Container string   `json:"container,omitempty"` // "": the host
	Kinds     []string `json:"kinds,omitempty"`
	Notes     []string `json:"notes,omitempty"`
}

func (d *defense) status() *RuntimeStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &RuntimeStatus{Models: len(d.models), Workloads: len(d.workloads), Audits: d.audits.Load(), Enforcement: d.mechanismList()}
	for _, m := range d.models {
		if m.Learning() {
			st.Learning++
		}
	}
	for k, w := range d.workloads {
		if len(w.enforce.Kinds)+len(w.enforce.Notes) > 0 {
			st.Enforced = append(st.Enforced, EnforcedWorkload{Container: k, Kinds: w.enforce.Kinds, Notes: w.enforce.Notes})
		}
	}
	slices.SortFunc(st.Enforced, func(a, b EnforcedWorkload) int { return strings.Compare(a.Container, b.Container) })
	return st
}

// mechanismList is the mechanisms in kind order. Called with d.mu held.
func (d *defense) mechanismList() []bulwarkv1.Mechanism {
	out := make([]bulwarkv1.Mechanism, 0, len(d.mechanisms))
	for _, k := range enforceKinds {
		if m, ok := d.mechanisms[k]; ok {
			out = append(out, m)
		}
	}
	return out
}

// emitDefense queues what runtime defense concludes: through the sensor's
// queue when there is a sensor (it must not block the sensor's reader),
// else straight into the spool.
func (d *Defender) emitDefense(kind string, at time.Time, data []byte) {
	if d.sensing != nil {
		d.sensing.enqueue(kind, at, data)
		return
	}
	if err := d.Emit(kind, at, data); err != nil {
		d.logger.Error("spool", slog.String("kind", kind), slog.Any("err", err))
	}
}

// Observe takes one runtime event from a source other than the sensor
// (tests, replays): it is spooled, then judged by runtime defense, as a
// sensed event is.
func (d *Defender) Observe(kind string, at time.Time, rt event.Runtime) error {
	if rt.Host == "" {
		rt.Host = d.ident.Hostname
	}
	data, err := json.Marshal(rt)
	if err != nil {
		return err
	}
	if err := d.Emit(kind, at, data); err != nil {
		return err
	}
	d.defense.observe(kind, at, &rt)
	return nil
}

// Prevented records an action the kernel enforcer denied (see Enforcer):
// its audit says it was prevented, by which rule and mechanism, and a
// block rule stops the container.
func (d *Defender) Prevented(p Prevented) { d.defense.prevented(p) }
