package event

import "bulwark/internal/compliance"

// Kinds of compliance events: a Defender's evaluation of one running
// container or of its host against the compliance policy in force. Data is a
// JSON Compliance.
const (
	KindComplianceContainer = "compliance.container"
	KindComplianceHost      = "compliance.host"
)

// Compliance is the Data of a compliance event: what was evaluated, when
// and why, and every finding the deciding rule did not ignore. An empty
// Findings list is a clean result and replaces earlier findings for the
// same resource.
type Compliance struct {
	// Trigger says why the Defender evaluated: "start" (the Defender
	// started), "container.start", "policy" (a new policy revision),
	// "rescan" (a periodic look found the result changed).
	Trigger string `json:"trigger"`
	// PolicyRevision is the revision of the policy snapshot used.
	PolicyRevision int64                `json:"policyRevision"`
	Host           string               `json:"host"`
	Container      *Container           `json:"container,omitempty"` // nil for the host
	Findings       []compliance.Finding `json:"findings"`
}
