package api

import "time"

// CustomComplianceCheck is a custom compliance check as
// /api/v1/custom-compliance reads and writes it, and as the
// custom-compliance policy document holds it: Prisma's shape (_id, name,
// title, script, severity, disabled, notes, owner, modified, previousName)
// plus the script's language and the description and remediation that
// findings carry.
type CustomComplianceCheck struct {
	// ID is the check's number, 9000–9999 as Prisma numbers custom checks;
	// 0 in a PUT asks the Console for the next free one.
	ID int `json:"_id"`
	// Name is the check's slug, which compliance rules may name in "checks".
	Name string `json:"name"`
	// PreviousName is the name before the last rename (set by the Console).
	PreviousName string `json:"previousName,omitempty"`
	Title        string `json:"title"`
	// Type is the script's language: "rego" (the only one).
	Type string `json:"type"`
	// Script is the check's Rego module; its deny set yields the findings.
	Script      string `json:"script"`
	Severity    string `json:"severity"`
	Description string `json:"description,omitempty"`
	Remediation string `json:"remediation,omitempty"`
	// Disabled checks are kept and may be named by rules, but not evaluated.
	Disabled bool   `json:"disabled,omitempty"`
	Notes    string `json:"notes,omitempty"`
	// Owner and Modified are set by the Console on every write.
	Owner    string    `json:"owner,omitempty"`
	Modified time.Time `json:"modified,omitzero"`
}

// CustomComplianceType is the only script language of custom checks.
const CustomComplianceType = "rego"
