package store

import (
	"context"
	"time"

	"bulwark/internal/runtimepolicy"
)

// RuntimeReader reads learned models and incidents.
type RuntimeReader interface {
	// RuntimeModels returns the models f selects, ordered by image.
	RuntimeModels(ctx context.Context, f ModelFilter) ([]runtimepolicy.Model, error)
	// RuntimeModel returns the model with id, or ErrNotFound.
	RuntimeModel(ctx context.Context, id string) (runtimepolicy.Model, error)
	// Incidents returns the incidents f selects, newest first (by their
	// first audit).
	Incidents(ctx context.Context, f IncidentFilter) ([]Incident, error)
	// Incident returns the incident with id, or ErrNotFound.
	Incident(ctx context.Context, id string) (Incident, error)
	// LatestIncident returns the incident with the latest last audit of a
	// Defender's container (containerID "" for its host), or ErrNotFound.
	LatestIncident(ctx context.Context, defenderID, containerID string) (Incident, error)
	// IncidentAudits returns the audits of an incident, oldest first, at
	// most limit.
	IncidentAudits(ctx context.Context, id string, limit int) ([]AuditRef, error)
}

// RuntimeWriter changes learned models and incidents inside Update.
type RuntimeWriter interface {
	// PutRuntimeModel stores m, replacing the model with its ID.
	PutRuntimeModel(ctx context.Context, m runtimepolicy.Model) error
	// PutIncident stores inc, replacing the incident with its ID.
	PutIncident(ctx context.Context, inc Incident) error
	// AddIncidentAudit records that the audit (defender, seq) belongs to
	// an incident, which need not be stored yet; it reports false, and
	// changes nothing, when the audit already belongs to one.
	AddIncidentAudit(ctx context.Context, incidentID string, a AuditRef) (bool, error)
}

// ModelFilter selects models. Zero fields match everything.
type ModelFilter struct {
	Image string // exactly
	State runtimepolicy.ModelState
	// Limit and Offset page through the list; Limit 0 means the store's
	// default.
	Limit, Offset int
}

// Incident is runtime audits of one container (or host) of one Defender
// that followed each other closely (runtimepolicy.Joins).
type Incident struct {
	ID         string // the first audit's "defenderID:seq"
	DefenderID string
	Host       string
	// The container; all empty for a host incident.
	ContainerID   string
	ContainerName string
	Image         string
	Namespace     string
	// Category is the incident category of the most severe audit;
	// Detections lists every detection, in the order first seen.
	Category     string
	Detections   []string
	First, Last  time.Time
	Audits       int
	Acknowledged bool
	AckBy        string
	AckAt        time.Time
}

// AuditRef names one stored runtime.audit event.
type AuditRef struct {
	DefenderID string
	Seq        uint64
	Time       time.Time
}

// IncidentFilter selects incidents. Zero fields match everything.
type IncidentFilter struct {
	// Since and Until bound the incidents' audits: an incident matches when
	// its last audit is at or after Since and its first before Until.
	Since, Until time.Time
	Host         string
	// ContainerID matches IDs that start with it.
	ContainerID string
	Category    string
	// Acknowledged, when set, selects acknowledged (or unacknowledged)
	// incidents only.
	Acknowledged *bool
	// HostOnly selects incidents of hosts, InContainer of containers.
	HostOnly, InContainer bool
	Limit, Offset         int
}
