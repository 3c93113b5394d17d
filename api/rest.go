package api

import (
	"encoding/json"
	"time"

	"bulwark/internal/inventory"
)

// The JSON shapes of REST answers that both the Console and bulwarkctl read
// and write. api/openapi.yaml describes them; these are their Go form.

// Defender is a Defender as GET /api/v1/defenders shows it.
type Defender struct {
	ID             string            `json:"_id"`
	Hostname       string            `json:"hostname"`
	HostNetwork    bool              `json:"hostNetwork"`
	Version        string            `json:"version"`
	OS             string            `json:"os,omitempty"`
	Kernel         string            `json:"kernel,omitempty"`
	Runtimes       []string          `json:"runtimes"`
	Capabilities   []string          `json:"capabilities"`
	Connected      bool              `json:"connected"`
	LastSeen       time.Time         `json:"lastModified,omitzero"`
	CertExpiration time.Time         `json:"certificateExpiration,omitzero"`
	Revoked        bool              `json:"revoked"`
	SpoolDepth     uint64            `json:"spoolDepth"`
	EventsDropped  uint64            `json:"eventsDropped"`
	StoredSeq      uint64            `json:"storedSeq"`
	PolicyRevision int64             `json:"policyRevision"`
	Sensor         *inventory.Sensor `json:"sensor,omitempty"`
}

// Bundle is an install bundle: the files `bulwark-defender --bundle DIR` reads.
type Bundle struct {
	DefenderID string            `json:"defenderID"`
	ConsoleURL string            `json:"consoleURL"`
	NotAfter   time.Time         `json:"notAfter"`
	Files      map[string]string `json:"files"` // name → content
}

// RuntimeAudit is one runtime event as /api/v1/audits/runtime/* returns it:
// Prisma's shape, plus the event's kind and its whole Runtime for detail.
// A runtime.audit event (a rule's or model's verdict) also has the rule,
// effect and attack type, and says whether it was prevented and how.
type RuntimeAudit struct {
	ID            string          `json:"_id"` // defenderID:seq
	Time          time.Time       `json:"time"`
	Hostname      string          `json:"hostname"`
	ContainerID   string          `json:"containerId,omitempty"`
	ContainerName string          `json:"containerName,omitempty"`
	ImageName     string          `json:"imageName,omitempty"`
	PID           uint32          `json:"pid"`
	User          string          `json:"user"` // the UID
	Type          string          `json:"type"`
	Msg           string          `json:"msg"`
	Kind          string          `json:"kind"`
	Event         json.RawMessage `json:"event"`

	RuleName   string `json:"ruleName,omitempty"`
	Effect     string `json:"effect,omitempty"`
	AttackType string `json:"attackType,omitempty"`
	Prevented  bool   `json:"prevented,omitempty"`
	Mechanism  string `json:"mechanism,omitempty"`
	Blocked    bool   `json:"blocked,omitempty"`
}
