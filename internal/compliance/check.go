// Package compliance is Bulwark's compliance engine: the catalog of CIS-style
// workload, runtime, image and host checks with their Prisma-compatible IDs,
// the Workload and Host models that every input is normalized to, the
// evaluation of checks into findings that name the field that caused them,
// and ordered compliance rules whose first matching collection decides.
//
// The package is pure: adapters parse Kubernetes manifests, OCI runtime
// specs, docker inspect JSON, image configs and host files into Workload and
// Host; the Console, Defender, shim, admission controller and bulwarkctl
// evaluate them here. Pod Security Standards profiles (pss-baseline,
// pss-restricted) are listed in the catalog but evaluated by the adapter that
// wraps k8s.io/pod-security-admission.
package compliance

import "slices"

// Severity grades a check.
type Severity string

// Severities, most severe first.
const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
	SeverityInfo     Severity = "info"
)

// Rank orders severities: critical 4 … info 0; unknown -1.
func (s Severity) Rank() int {
	switch s {
	case SeverityCritical:
		return 4
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 2
	case SeverityLow:
		return 1
	case SeverityInfo:
		return 0
	}
	return -1
}

// Scope is a kind of input a check applies to (the M, R, I and H columns of
// the catalog).
type Scope string

// The scopes.
const (
	ScopeManifest Scope = "manifest" // M: Kubernetes manifests and pod templates
	ScopeRuntime  Scope = "runtime"  // R: docker inspect, OCI config.json
	ScopeImage    Scope = "image"    // I: image config
	ScopeHost     Scope = "host"     // H: host files, flags and configs
)

// Check is one entry of the catalog.
type Check struct {
	// Slug is the stable identifier: "host-pid".
	Slug string `json:"slug"`
	// DockerID and CRIID are the Prisma-compatible IDs ("515", "5515");
	// empty where Prisma has none. Bulwark never invents numbers in
	// Prisma's ranges.
	DockerID    string   `json:"dockerId,omitempty"`
	CRIID       string   `json:"criId,omitempty"`
	Severity    Severity `json:"severity"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Remediation string   `json:"remediation"`
	References  []string `json:"references,omitempty"`
	AppliesTo   []Scope  `json:"appliesTo"`
	// External checks are catalogued here but evaluated elsewhere: the PSS
	// profiles by the pod-security-admission adapter, docker exec audits by
	// the runtime sensor, manual items by a person. Evaluate skips them.
	External bool `json:"external,omitempty"`

	eval func(*env) // workload checks
	host func(*hostEnv)
}

// PrismaID is the Prisma-compatible ID for a Docker engine container
// (runtimeIsCRI false) or for a CRI container or Kubernetes manifest
// (runtimeIsCRI true); empty when there is none.
func (c Check) PrismaID(runtimeIsCRI bool) string {
	if runtimeIsCRI {
		return c.CRIID
	}
	return c.DockerID
}

// Applies reports whether the check applies to inputs of scope s.
func (c Check) Applies(s Scope) bool { return slices.Contains(c.AppliesTo, s) }

// DefaultEffect is what a rule that keeps each check's default does with
// it: alert on critical and high checks, ignore the rest (Prisma's default
// compliance rule).
func (c Check) DefaultEffect() Effect {
	if c.Severity.Rank() >= SeverityHigh.Rank() {
		return EffectAlert
	}
	return EffectIgnore
}

// Lookup returns the catalog entry with the slug. Its slices are shared with
// every caller: do not change them.
func Lookup(slug string) (Check, bool) {
	for _, c := range catalog() {
		if c.Slug == slug {
			return c, true
		}
	}
	return Check{}, false
}

// Finding is a check that failed on a workload or host.
type Finding struct {
	Check string `json:"check"`
	// PrismaID is the Docker or CRI ID as Workload.RuntimeIsCRI chooses;
	// empty when the check has none.
	PrismaID string   `json:"prismaId,omitempty"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
	Message  string   `json:"message"`
	// Paths are the fields or config keys that caused the finding, e.g.
	// "spec.template.spec.hostPID", "linux.namespaces",
	// "/etc/docker/daemon.json#icc".
	Paths []string `json:"paths,omitempty"`
	// Container is the container's name; empty for pod- and host-level
	// findings.
	Container string `json:"container,omitempty"`
	// Effect is set by Apply from the deciding rule; empty from Evaluate.
	Effect Effect `json:"effect,omitempty"`
}

// String renders the finding as Prisma does: "<id> - <title>", or the title
// alone when the check has no Prisma ID.
func (f Finding) String() string {
	if f.PrismaID == "" {
		return f.Title
	}
	return f.PrismaID + " - " + f.Title
}
