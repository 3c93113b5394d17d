package event

import "time"

// Kinds of runtime defense events: what the Defender concluded from the
// runtime events, rather than saw.
const (
	// KindRuntimeAudit is a runtime rule's or a learned model's verdict on
	// one action: Data is an Audit.
	KindRuntimeAudit = "runtime.audit"
	// KindRuntimeModel reports a learned model of an image as the Defender
	// holds it: Data is the model's JSON (runtimepolicy.Model).
	KindRuntimeModel = "runtime.model"
	// KindRuntimeForensics is the Defender's recent record of a container
	// (or host) sent with the audits of an incident: Data is a Forensics.
	KindRuntimeForensics = "runtime.forensics"
)

// Audit is the Data of a runtime.audit event: the Runtime of the action it
// judges, inline, so that a runtime.audit is found by container, image and
// host as the event itself is, and the verdict under "audit".
type Audit struct {
	Runtime
	Audit AuditInfo `json:"audit"`
}

// AuditInfo is what a rule (or model) decided about an action, and what
// was done about it.
type AuditInfo struct {
	// Trigger is the kind of the event judged (process.exec, file.write…),
	// or "enforcer" for an action the kernel denied.
	Trigger   string `json:"trigger"`
	Rule      string `json:"rule"`
	Effect    string `json:"effect"`    // alert, prevent, block
	Category  string `json:"category"`  // processes, network, filesystem, kubernetes
	Detection string `json:"detection"` // Prisma's attack type: reverseShell, unexpectedProcess…
	Message   string `json:"message"`
	// Prevented is true only when the kernel denied the action before it
	// happened; Mechanism names how (bpf-lsm, fanotify, cgroup-bpf).
	Prevented bool   `json:"prevented"`
	Mechanism string `json:"mechanism,omitempty"`
	// Blocked: the container was stopped for it (effect block).
	Blocked    bool   `json:"blocked,omitempty"`
	BlockError string `json:"blockError,omitempty"`
	// ModelID names the model a deviation departs from.
	ModelID        string `json:"modelId,omitempty"`
	PolicyRevision int64  `json:"policyRevision"`
}

// Forensics is the Data of a runtime.forensics event: a container's (or
// the host's) recent processes and events, as the Defender kept them in a
// bounded ring, at the time of an audit.
type Forensics struct {
	Host      string     `json:"host"`
	Container *Container `json:"container,omitempty"`
	// Reason is the detection of the audit that asked for the record.
	Reason string `json:"reason"`
	// Processes are the processes seen in the container, live or recently
	// exited, in start order.
	Processes []ForensicProcess `json:"processes"`
	// Events are the most recent runtime events, oldest first; Dropped
	// counts older ones that no longer fit.
	Events  []ForensicEvent `json:"events"`
	Dropped uint64          `json:"dropped,omitempty"`
}

// ForensicProcess is one process of a forensic record.
type ForensicProcess struct {
	PID    uint32     `json:"pid"`
	PPID   uint32     `json:"ppid"`
	UID    uint32     `json:"uid"`
	Exe    string     `json:"exe,omitempty"`
	Argv   []string   `json:"argv,omitempty"`
	Start  time.Time  `json:"start,omitzero"`
	Exited *time.Time `json:"exited,omitempty"`
}

// ForensicEvent is one event of a forensic record, in brief.
type ForensicEvent struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	PID  uint32    `json:"pid"`
	Exe  string    `json:"exe,omitempty"`
	File *File     `json:"file,omitempty"`
	Net  *Net      `json:"net,omitempty"`
	// Audit is the detection, for an audit in the record.
	Audit string `json:"audit,omitempty"`
}
