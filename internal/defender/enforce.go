package defender

import (
	"context"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	"bulwark/internal/runtimepolicy"
)

// Enforcer is the kernel side of prevention (internal/enforcer, when the
// Defender is built with it): the Defender hands it the compiled rules of
// every container it knows, and of the host, and the enforcer denies those
// actions before they happen. It reports what it denied through
// Defender.Prevented.
type Enforcer interface {
	// Mechanisms says, for each kind of action (runtimepolicy.EnforceExec,
	// EnforceWrite, EnforceConnect, EnforceListen), which mechanism denies
	// it on this host, or "none" and why.
	Mechanisms() []bulwarkv1.Mechanism
	// Apply makes the kernel enforce exactly targets, replacing what an
	// earlier Apply installed.
	Apply(ctx context.Context, targets []EnforceTarget) error
}

// EnforceTarget is one container's cgroup, or the host (ContainerID ""),
// and what to deny in it.
type EnforceTarget struct {
	ContainerID string
	CgroupID    uint64
	Enforcement runtimepolicy.Enforcement
	// DriftPaths are files written in the container since it started; when
	// Enforcement.Drift is set, executing them is denied.
	DriftPaths []string
}

// Prevented is an action the enforcer denied before it happened.
type Prevented struct {
	Time      time.Time
	Kind      string // runtimepolicy.EnforceExec, …
	CgroupID  uint64
	PID       uint32
	Exe       string // the acting process, when known
	Path      string // the file executed or written
	Addr      string // the address connected to, or bound
	Port      uint16
	Rule      string
	Detection string
	Mechanism string // bpf-lsm, fanotify, cgroup-bpf
}

// Stopper stops a container through its runtime, for rules whose effect is
// block.
type Stopper interface {
	Stop(ctx context.Context, c event.Container) error
}

// Mechanism names.
const mechanismNone = "none"

// enforceKinds are the kinds of action the kernel can deny.
var enforceKinds = []string{runtimepolicy.EnforceExec, runtimepolicy.EnforceWrite, runtimepolicy.EnforceConnect, runtimepolicy.EnforceListen}

// noEnforcer reports that nothing prevents anything: the Defender audits.
func noEnforcer() []bulwarkv1.Mechanism {
	out := make([]bulwarkv1.Mechanism, 0, len(enforceKinds))
	for _, k := range enforceKinds {
		out = append(out, bulwarkv1.Mechanism{Kind: k, Mechanism: mechanismNone, Reason: "this Defender has no kernel enforcer; rules that prevent are audited"})
	}
	return out
}
