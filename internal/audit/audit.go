// Package audit defines the Console's audit records: the management audit
// (who changed what in the Console, through which API call, and with what
// result) and the admission audit (what the admission controller decided
// about a workload, and why).
package audit

import "time"

// Types of management audit records.
const (
	TypeLogin    = "login"
	TypeUsers    = "users"
	TypeKeys     = "accessKeys"
	TypeSettings = "settings"
	TypeDefender = "defenders"
	TypePolicy   = "policies"
)

// Mgmt is one management audit record, shaped like Prisma Cloud Compute's
// mgmt audit so that existing readers of GET /api/v1/audits/mgmt work.
type Mgmt struct {
	ID       int64     `json:"_id"`
	Time     time.Time `json:"time"`
	Username string    `json:"username"`
	Type     string    `json:"type"`
	Method   string    `json:"method,omitempty"`
	API      string    `json:"api"`
	Status   string    `json:"status"`
	SourceIP string    `json:"sourceIP,omitempty"`
	// Diff describes the change in words ("created user alice with role auditor");
	// it never contains secrets.
	Diff string `json:"diff,omitempty"`
}

// Filter selects audit records. Zero fields match everything.
type Filter struct {
	Username string
	Type     string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	Limit    int       // 0: the store's default
	Offset   int
}
