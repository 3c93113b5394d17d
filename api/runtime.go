package api

import (
	"time"

	"bulwark/internal/event"
)

// Incident is runtime audits of one container (or host) that followed each
// other closely, as /api/v1/audits/incidents returns it: Prisma's shape
// where it has one. The list leaves out Audits and Forensics; one
// incident's GET has them.
type Incident struct {
	ID             string    `json:"_id"`
	Type           string    `json:"type"` // container or host
	Category       string    `json:"category"`
	Time           time.Time `json:"time"`     // the first audit
	LastTime       time.Time `json:"lastTime"` // the last audit
	Hostname       string    `json:"hostname"`
	DefenderID     string    `json:"defenderID"`
	ContainerID    string    `json:"containerID,omitempty"`
	ContainerName  string    `json:"containerName,omitempty"`
	ImageName      string    `json:"imageName,omitempty"`
	Namespace      string    `json:"namespace,omitempty"`
	AuditCount     int       `json:"auditCount"`
	Detections     []string  `json:"detections"`
	Acknowledged   bool      `json:"acknowledged"`
	AcknowledgedBy string    `json:"acknowledgedBy,omitempty"`
	AcknowledgedAt time.Time `json:"acknowledgedAt,omitzero"`
	// Audits are the incident's audits, oldest first.
	Audits []RuntimeAudit `json:"audits,omitempty"`
	// Forensics are the Defender's records of the container (or host) sent
	// with the incident's audits, oldest first.
	Forensics []event.Forensics `json:"forensics,omitempty"`
}

// IncidentAck is the body of PATCH /api/v1/audits/incidents/acknowledge/{id}.
type IncidentAck struct {
	Acknowledged bool `json:"acknowledged"`
}
