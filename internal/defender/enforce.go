package defender

import (
	"context"
	"slices"
	"strings"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	"bulwark/internal/runtimepolicy"
)

// Enforcer is the kernel side of prevention (kernelEnforcer wraps
// internal/enforcer): the Defender hands it the compiled rules of every
// container it knows, and of the host, and the enforcer denies those
// actions before they happen. It reports what it denied through
// Defender.Prevented.
type Enforcer interface {
	// Mechanisms says, for each kind of action (runtimepolicy.EnforceExec,
	// EnforceWrite, EnforceConnect, EnforceListen), which mechanism denies
	// it on this host, or "none" and why.
	Mechanisms() []bulwarkv1.Mechanism
	// Apply makes the kernel enforce exactly targets, replacing what an
	// earlier Apply installed, and says what is in force for each target,
	// in the order given.
	Apply(ctx context.Context, targets []EnforceTarget) []EnforceStatus
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

// EnforceStatus is what an Apply put in force for one target.
type EnforceStatus struct {
	ContainerID string
	// Kinds are the kinds of action the kernel denies in the target now,
	// some rules of, or all when Notes say nothing of the kind.
	Kinds []string
	// Notes say what the target's rules ask to prevent that the kernel
	// does not deny, each "<kind>: <what and why>" (kind as in Kinds).
	Notes []string
	// Gone: the container no longer exists.
	Gone bool
	// Retry: the target could not be (fully) applied for a reason that
	// may pass, such as a container still starting; apply it again.
	Retry bool
}

// enforces says whether kind is in force.
func (s EnforceStatus) enforces(kind string) bool { return slices.Contains(s.Kinds, kind) }

// enforcesAll says whether every rule of kind is in force.
func (s EnforceStatus) enforcesAll(kind string) bool {
	return s.enforces(kind) && s.noteFor(kind) == ""
}

// noteFor is the first note about kind, "" when none.
func (s EnforceStatus) noteFor(kind string) string {
	for _, n := range s.Notes {
		if rest, ok := strings.CutPrefix(n, kind+": "); ok {
			return rest
		}
	}
	return ""
}

// Prevented is an action the enforcer denied before it happened.
type Prevented struct {
	Time        time.Time
	Kind        string // runtimepolicy.EnforceExec, …
	ContainerID string // "" when the enforcer did not name it
	CgroupID    uint64
	PID         uint32
	Exe         string // the acting process, when known
	Path        string // the file executed or written
	Addr        string // the address connected to, or bound
	Port        uint16
	Rule        string
	Detection   string
	Mechanism   string // bpf-lsm, fanotify, cgroup-bpf
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

// noEnforcer reports that nothing prevents anything, and why: the Defender
// audits.
func noEnforcer(why string) []bulwarkv1.Mechanism {
	out := make([]bulwarkv1.Mechanism, 0, len(enforceKinds))
	for _, k := range enforceKinds {
		out = append(out, bulwarkv1.Mechanism{Kind: k, Mechanism: mechanismNone, Reason: why + "; rules that prevent are audited"})
	}
	return out
}
