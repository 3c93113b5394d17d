package defender

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/hostcfg"
	"bulwark/internal/policy"
	"bulwark/internal/rego"
	"bulwark/internal/runtime"
	"bulwark/internal/workload"
)

// The policy types whose rules decide compliance findings, as the policy
// snapshot names them.
const (
	policyComplianceContainer = "compliance/container"
	policyComplianceHost      = "compliance/host"
)

// Triggers of an evaluation, as event.Compliance.Trigger reports them.
const (
	TriggerStart          = "start"           // the Defender started
	TriggerContainerStart = "container.start" // a container the Defender had not evaluated
	TriggerPolicy         = "policy"          // a new policy revision
	TriggerRescan         = "rescan"          // a periodic look found a result changed (a process, a host file)
)

// debounce gathers the container starts of a burst into one pass.
const debounce = 200 * time.Millisecond

// assessor evaluates the host's running containers and the host itself
// against the compliance policy in force, and sends one event per container
// and one for the host whenever a result is new: at start, for a container
// it has not evaluated, for a new policy revision, and when a periodic
// rescan finds that a result changed. Unchanged results are not sent again.
type assessor struct {
	hostRoot string
	hostname string
	interval time.Duration
	runtime  runtime.Config
	logger   *slog.Logger
	// Seams for tests: the running containers, the policy in force, the
	// spool.
	list   func() ([]runtime.Info, error)
	policy func() bulwarkv1.Policy
	emit   func(kind string, at time.Time, data ...json.RawMessage) error

	known        sync.Map // container ID → struct{}: seen by the sensor
	wake         chan struct{}
	policyChange atomic.Bool

	// Owned by the run goroutine.
	sent      map[string]result // by container ID
	hostSent  *result
	badPolicy map[string]int64 // policy type → revision whose document was refused (logged once)
	// custom are the snapshot's custom checks, compiled once per revision.
	custom    compliance.Options
	customRev int64

	mu     sync.Mutex
	status ComplianceStatus
}

// result is what was last sent for a resource.
type result struct {
	revision int64
	digest   [sha256.Size]byte
}

// ComplianceStatus is the compliance part of the Defender's status.
type ComplianceStatus struct {
	LastPass   time.Time `json:"lastPass,omitzero"`
	Containers int       `json:"containers"`      // evaluated in the last pass
	Events     uint64    `json:"events"`          // compliance events sent since start
	LastError  string    `json:"error,omitempty"` // of the last pass
}

func newAssessor(cfg Config, d *Defender, logger *slog.Logger) *assessor {
	rcfg := runtime.DefaultConfig()
	rcfg.ProcRoot = cfg.ProcRoot
	if cfg.RuncRoots != nil {
		rcfg.RuncRoots = cfg.RuncRoots
	}
	a := &assessor{
		hostRoot: cfg.HostRoot,
		hostname: d.ident.Hostname,
		interval: cfg.ComplianceInterval,
		runtime:  rcfg,
		logger:   logger.With(slog.String("part", "compliance")),
		policy: func() bulwarkv1.Policy {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.policy
		},
		emit: d.Emit,
	}
	a.list = func() ([]runtime.Info, error) { return runtime.Running(a.runtime, a.logger) }
	return a
}

func (a *assessor) init() {
	a.wake = make(chan struct{}, 1)
	a.sent = map[string]result{}
	a.badPolicy = map[string]int64{}
	a.customRev = -1
}

// sawContainer is called for every sensor event with a container; it must
// not block. A container not seen before wakes the assessor.
func (a *assessor) sawContainer(id string) {
	if _, loaded := a.known.LoadOrStore(id, struct{}{}); !loaded {
		a.poke()
	}
}

// policyChanged wakes the assessor to evaluate everything again.
func (a *assessor) policyChanged() {
	a.policyChange.Store(true)
	a.poke()
}

func (a *assessor) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run evaluates at once, then on every wake and every interval, until ctx
// ends.
func (a *assessor) run(ctx context.Context) error {
	a.pass(ctx, TriggerStart)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		trigger := TriggerRescan
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.wake:
			trigger = TriggerContainerStart
			select { // let a burst of starts (or a policy and its starts) settle
			case <-ctx.Done():
				return nil
			case <-time.After(debounce):
			}
		}
		if a.policyChange.Swap(false) {
			trigger = TriggerPolicy
		}
		a.pass(ctx, trigger)
	}
}

// pass evaluates every running container and the host once and sends the
// results that are new. A trigger of start or policy sends every result.
func (a *assessor) pass(ctx context.Context, trigger string) {
	pol := a.policy()
	rev := pol.Revision
	all := trigger == TriggerStart || trigger == TriggerPolicy
	now := time.Now()
	var errs []error

	opts := a.customChecks(ctx, pol)
	ctrRules := a.rules(pol, policyComplianceContainer, compliance.PolicyTypeContainer, opts.Custom)
	hostRules := a.rules(pol, policyComplianceHost, compliance.PolicyTypeHost, opts.Custom)
	appArmor, seLinux := hostcfg.Security(a.hostRoot)

	infos, err := a.list()
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	live := make(map[string]bool, len(infos))
	var ctrEvents []json.RawMessage
	undo := map[string]result{} // what a.sent held before this pass, for a failed send
	for _, info := range infos {
		id := info.Container.ID
		live[id] = true
		w, ctr, ok, err := a.workload(info, appArmor, seLinux)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue // a pod's sandbox
		}
		findings := compliance.Apply(ctrRules, w, opts)
		res := result{revision: rev, digest: digest(findings)}
		prev, seen := a.sent[id]
		if seen && !all && prev == res {
			continue
		}
		why := trigger
		if !all {
			why = TriggerRescan
			if !seen {
				why = TriggerContainerStart
			}
		}
		data, err := json.Marshal(event.Compliance{Trigger: why, PolicyRevision: rev, Host: a.hostname, Container: &ctr, Findings: nonNil(findings)})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctrEvents = append(ctrEvents, data)
		if seen {
			undo[id] = prev
		} else {
			undo[id] = result{}
		}
		a.sent[id] = res
	}
	if err == nil { // forget the containers that are gone, unless listing failed
		for id := range a.sent {
			if !live[id] {
				delete(a.sent, id)
				a.known.Delete(id)
			}
		}
	}
	var sent uint64
	if len(ctrEvents) > 0 {
		if err := a.emit(event.KindComplianceContainer, now, ctrEvents...); err != nil {
			errs = append(errs, fmt.Errorf("spool compliance events: %w", err))
			// Not sent: they are new again next time.
			for id, prev := range undo {
				if prev == (result{}) {
					delete(a.sent, id)
				} else {
					a.sent[id] = prev
				}
			}
		} else {
			sent += uint64(len(ctrEvents))
		}
	}

	if hostEvent, res, err := a.host(hostRules, trigger, all, rev); err != nil {
		errs = append(errs, err)
	} else if hostEvent != nil {
		if err := a.emit(event.KindComplianceHost, now, hostEvent); err != nil {
			errs = append(errs, fmt.Errorf("spool compliance events: %w", err))
		} else {
			a.hostSent = &res
			sent++
		}
	}

	err = errors.Join(errs...)
	if err != nil {
		a.logger.Warn("compliance evaluation", slog.String("trigger", trigger), slog.Any("err", err))
	}
	a.mu.Lock()
	a.status.LastPass, a.status.Containers, a.status.Events = now, len(live), a.status.Events+sent
	a.status.LastError = ""
	if err != nil {
		a.status.LastError = err.Error()
	}
	a.mu.Unlock()
	if sent > 0 {
		a.logger.Info("compliance results sent", slog.String("trigger", trigger), slog.Uint64("events", sent), slog.Int64("revision", rev))
	}
}

// host evaluates the host; nil data when its result is unchanged.
func (a *assessor) host(rules []compliance.Rule, trigger string, all bool, rev int64) (json.RawMessage, result, error) {
	h, err := hostcfg.Read(a.hostRoot)
	if err != nil {
		if h.Name == "" && h.Docker == nil && h.Kubelet == nil && h.Audit == nil && len(h.Files) == 0 {
			return nil, result{}, fmt.Errorf("read host %s: %w", a.hostRoot, err)
		}
		// Some files could not be parsed: evaluate what could be read.
		a.logger.Warn("read host configuration", slog.String("root", a.hostRoot), slog.Any("err", err))
	}
	h.Name = a.hostname
	findings := compliance.ApplyHost(rules, h)
	res := result{revision: rev, digest: digest(findings)}
	if !all && a.hostSent != nil && *a.hostSent == res {
		return nil, res, nil
	}
	why := trigger
	if !all {
		why = TriggerRescan
	}
	data, err := json.Marshal(event.Compliance{Trigger: why, PolicyRevision: rev, Host: a.hostname, Findings: nonNil(findings)})
	return data, res, err
}

// workload reads a container's OCI config and names it. ok is false for a
// pod's sandbox container, which runs nothing of the user's.
func (a *assessor) workload(info runtime.Info, appArmor, seLinux bool) (compliance.Workload, event.Container, bool, error) {
	ctr := info.Container
	if info.Bundle == "" {
		return compliance.Workload{}, ctr, false, fmt.Errorf("container %s: no bundle in its runc state", ctr.ID)
	}
	spec, err := os.ReadFile(filepath.Join(info.Bundle, "config.json"))
	if err != nil {
		return compliance.Workload{}, ctr, false, fmt.Errorf("container %s: %w", ctr.ID, err)
	}
	w, err := workload.FromOCI(spec, workload.EngineOf(ctr.Runtime))
	if err != nil {
		return compliance.Workload{}, ctr, false, fmt.Errorf("container %s: %w", ctr.ID, err)
	}
	if workload.IsSandbox(w.Source.Annotations) {
		return w, ctr, false, nil
	}
	r := w.Runtime
	// What the runtime's records say beyond config.json (docker keeps the
	// name and image in its own files).
	if ctr.Name == "" {
		ctr.Name = r.Name
	}
	if r.Name == "" {
		r.Name = ctr.Name
	}
	if ctr.Image == "" {
		ctr.Image = r.Image.Value
	}
	if r.Image.Value == "" && ctr.Image != "" {
		r.Image = compliance.Fact[string]{Value: ctr.Image, Key: "image"}
	}
	w.Source.ID, w.Source.Host = ctr.ID, a.hostname
	if w.Source.Object.Namespace == "" {
		w.Source.Object.Namespace = ctr.Namespace
	}
	r.HostAppArmor = r.HostAppArmor || appArmor
	r.HostSELinux = r.HostSELinux || seLinux
	if cmds, err := runtime.Commands(a.runtime, info.CgroupPath); err == nil {
		r.Processes = compliance.Fact[[]string]{Value: cmds, Key: "processes"}
	}
	return w, ctr, true, nil
}

// rules returns the rules of a compliance policy type in the snapshot, or
// the built-in rules when the snapshot has none. A document the engine
// refuses (the Console validates them, so this is a Defender older than its
// Console) falls back to the built-in rules, logged once per revision.
func (a *assessor) rules(p bulwarkv1.Policy, typ, prismaType string, custom []compliance.Check) []compliance.Rule {
	raw, ok := p.Policies[typ]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return compliance.DefaultPolicy(prismaType).Rules
	}
	pol, err := compliance.ParsePolicy(raw, custom...)
	if err != nil {
		if a.badPolicy[typ] != p.Revision {
			a.badPolicy[typ] = p.Revision
			a.logger.Error("compliance policy refused; using the built-in rules", slog.String("type", typ),
				slog.Int64("revision", p.Revision), slog.Any("err", err))
		}
		return compliance.DefaultPolicy(prismaType).Rules
	}
	return pol.Rules
}

// customChecks compiles the snapshot's custom compliance checks (Rego) once
// per policy revision: their evaluator and catalog entries, for Apply and
// ParsePolicy. Checks that do not compile (the Console compiles them on
// write, so this is a Defender older than its Console) are left out, logged
// once per revision.
func (a *assessor) customChecks(ctx context.Context, p bulwarkv1.Policy) compliance.Options {
	if a.customRev == p.Revision {
		return a.custom
	}
	a.customRev, a.custom = p.Revision, compliance.Options{}
	raw, ok := p.Policies[policy.TypeCustomCompliance]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return a.custom
	}
	doc, err := rego.DecodeDocument(raw)
	if err == nil {
		var ev *rego.Evaluator
		ev, a.custom.Custom, err = doc.Load(ctx, rego.Config{Logger: a.logger})
		if err == nil {
			a.custom.Evaluators = []compliance.Evaluator{ev}
		}
	}
	if err != nil {
		a.logger.Error("custom compliance checks refused; evaluating without them",
			slog.Int64("revision", p.Revision), slog.Any("err", err))
	}
	return a.custom
}

func (a *assessor) statusInfo() *ComplianceStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status
	return &st
}

func digest(fs []compliance.Finding) [sha256.Size]byte {
	b, _ := json.Marshal(fs) // findings are plain data
	return sha256.Sum256(b)
}

// nonNil makes a clean result a JSON [] rather than null.
func nonNil(fs []compliance.Finding) []compliance.Finding {
	if fs == nil {
		return []compliance.Finding{}
	}
	return fs
}
