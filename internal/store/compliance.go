package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"bulwark/internal/compliance"
	"bulwark/internal/event"
)

// Kinds of compliance results: a running container, or a host itself.
const (
	ResourceContainer = "container"
	ResourceHost      = "host"
)

// ComplianceResult is the current compliance state of one container or
// host: the findings of the latest compliance.container or compliance.host
// event about it. A result with no findings is a clean one.
//
// Results are kept until a newer one replaces them; nothing tells the
// Console yet that a container stopped, so a container that a Defender no
// longer reports keeps its last result with its time, and readers leave out
// old results with ComplianceFilter.Since.
type ComplianceResult struct {
	Kind string // ResourceContainer or ResourceHost
	Host string
	// The container's identity; empty for a host.
	ContainerID   string
	ContainerName string
	Image         string
	Pod           string
	Namespace     string
	// Where the result came from: the event's Defender, seq and time.
	DefenderID     string
	Seq            uint64
	Time           time.Time
	PolicyRevision int64
	Trigger        string
	Findings       []compliance.Finding
}

// ComplianceFilter selects current compliance results. Zero fields match
// everything. Hosts, Images, Namespaces and Containers are globs as in a
// collection ("*" any string, "?" one character, everything else literal):
// a result matches when every non-empty list has a glob matching it, so an
// image glob leaves host results out, as a collection of images would.
type ComplianceFilter struct {
	Kind       string   // ResourceContainer, ResourceHost, or "" for both
	Hosts      []string // host names
	Images     []string
	Namespaces []string
	Containers []string // container names
	// ContainerID selects the container with this ID or IDs that start with it.
	ContainerID string
	// Checks selects results with a finding of any of these checks, each a
	// slug ("host-pid") or a Prisma ID ("5515", which matches that ID only).
	// ComplianceStats counts only the checks listed.
	Checks []string
	// Since leaves out results evaluated before it.
	Since time.Time
	// After, for ComplianceResults, selects results after it in their order:
	// pass the last result of a page to get the next one.
	After *ComplianceCursor
	Limit int // ComplianceResults: 0 means the store's default
}

// ComplianceCursor is a position in the order of results: by host, then
// container ID, a host's own result (ContainerID "") first.
type ComplianceCursor struct {
	Host        string
	ContainerID string
}

// CheckStat counts the current results that fail one check, for one kind of
// resource. A check with Docker and CRI IDs has a CheckStat per ID seen.
type CheckStat struct {
	Kind     string // ResourceContainer or ResourceHost
	Check    string // slug
	PrismaID string // "" when the check has none
	Title    string // as the findings give it
	// Severity is the highest of the findings (a check may escalate, as
	// caps-added does for SYS_ADMIN).
	Severity compliance.Severity
	// Containers and Images count the failing containers and their distinct
	// images (0 for host checks); Hosts counts the failing hosts, or for a
	// container check the hosts that run a failing container.
	Containers, Images, Hosts int
}

// ComplianceStats is the compliance explorer's aggregate.
type ComplianceStats struct {
	Checks []CheckStat // ordered by kind, check, Prisma ID
	// Containers, Images and Hosts count what the filter selects, failing
	// or not (Checks does not narrow them): container results, their
	// distinct images, and the distinct hosts of all results.
	Containers, Images, Hosts int
}

// ComplianceReader answers the compliance explorer from the current results
// that AppendEvents keeps.
type ComplianceReader interface {
	// ComplianceResults returns the results f selects in cursor order, at
	// most f.Limit.
	ComplianceResults(ctx context.Context, f ComplianceFilter) ([]ComplianceResult, error)
	// ComplianceStats counts, per check, the results f selects that fail it.
	// f.After and f.Limit do not apply.
	ComplianceStats(ctx context.Context, f ComplianceFilter) (ComplianceStats, error)
}

// ErrComplianceEvent marks a compliance event that AppendEvents stores but
// cannot turn into a result.
var ErrComplianceEvent = errors.New("malformed compliance event")

// IsComplianceKind reports whether events of kind update compliance results.
func IsComplianceKind(kind string) bool {
	return kind == event.KindComplianceContainer || kind == event.KindComplianceHost
}

// ComplianceResultOf turns a stored compliance event into the result it
// reports. The Data comes from a Defender: anything but a JSON
// event.Compliance of the event's kind (a container with an ID for
// compliance.container, none for compliance.host; every finding naming its
// check) is ErrComplianceEvent. Host is empty when the event names none; the
// store then uses the Defender's host name. Findings whose effect is
// "ignore" are dropped: they do not fail.
func ComplianceResultOf(e event.Event) (ComplianceResult, error) {
	bad := func(format string, args ...any) (ComplianceResult, error) {
		return ComplianceResult{}, fmt.Errorf("%w: %s seq %d: %s", ErrComplianceEvent, e.Kind, e.Seq, fmt.Sprintf(format, args...))
	}
	var c event.Compliance
	if err := json.Unmarshal(e.Data, &c); err != nil {
		return bad("%v", err)
	}
	r := ComplianceResult{
		Kind: ResourceHost, Host: c.Host, DefenderID: e.DefenderID, Seq: e.Seq, Time: e.Time,
		PolicyRevision: c.PolicyRevision, Trigger: c.Trigger,
	}
	switch e.Kind {
	case event.KindComplianceContainer:
		if c.Container == nil || strings.TrimSpace(c.Container.ID) == "" {
			return bad("no container ID")
		}
		r.Kind = ResourceContainer
		r.ContainerID, r.ContainerName, r.Image = c.Container.ID, c.Container.Name, c.Container.Image
		r.Pod, r.Namespace = c.Container.Pod, c.Container.Namespace
	case event.KindComplianceHost:
		if c.Container != nil {
			return bad("a host result names a container")
		}
	default:
		return bad("not a compliance kind")
	}
	r.Findings = make([]compliance.Finding, 0, len(c.Findings))
	for i, f := range c.Findings {
		if strings.TrimSpace(f.Check) == "" {
			return bad("finding %d names no check", i)
		}
		if f.Effect == compliance.EffectIgnore {
			continue
		}
		r.Findings = append(r.Findings, f)
	}
	return r, nil
}
