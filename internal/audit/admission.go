package audit

import (
	"time"

	"bulwark/internal/compliance"
)

// Effects of an admission decision, as Prisma names them: the request was
// allowed clean, allowed with warnings, or denied.
const (
	EffectAllow = "allow"
	EffectAlert = "alert"
	EffectBlock = "block"
)

// Admission is one decision of the admission controller about a Pod or pod
// controller, shaped like Prisma Cloud Compute's admission audit
// (GET /api/v1/audits/admission) with Bulwark's findings added. It never
// holds the object itself: a manifest may carry secrets in clear text.
type Admission struct {
	ID   int64     `json:"_id"`
	Time time.Time `json:"time"`
	// RuleName names the rules that decided the findings, comma-separated
	// in evaluation order (the blocking rules first on a denial).
	RuleName string `json:"ruleName,omitempty"`
	// Message is the denial's message, or a summary of the warnings.
	Message   string `json:"message"`
	Operation string `json:"operation"` // CREATE, UPDATE
	Kind      string `json:"kind"`      // Deployment
	Resource  string `json:"resource"`  // deployments, pods/ephemeralcontainers
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace"`
	Cluster   string `json:"cluster,omitempty"`
	Username  string `json:"username"`
	UserUID   string `json:"userUid,omitempty"`
	// UserGroups are comma-separated, as Prisma writes them.
	UserGroups string `json:"userGroups,omitempty"`
	// Effect is what happened: EffectAllow, EffectAlert or EffectBlock.
	Effect string `json:"effect"`
	// Mode is the policy's mode then: audit (never denies) or enforce.
	Mode string `json:"mode"`
	// UID is the AdmissionReview request's.
	UID            string `json:"uid"`
	DryRun         bool   `json:"dryRun,omitempty"`
	PolicyRevision int64  `json:"policyRevision"`
	// Findings are the failed checks the rules did not ignore, each with
	// the effect its rule gives it (block findings in audit mode warned).
	Findings []compliance.Finding `json:"findings"`
}

// AdmissionFilter selects admission audits. Zero fields match everything.
type AdmissionFilter struct {
	Namespaces []string // any of them
	Operations []string
	Effects    []string
	Kinds      []string
	Clusters   []string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	Limit      int       // 0: the store's default
	Offset     int
}
