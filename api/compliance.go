package api

import "time"

// The JSON shapes of the compliance explorer: GET /api/v1/stats/compliance,
// /api/v1/containers and /api/v1/hosts. They follow Prisma Cloud Compute's
// (ids with failed counts; complianceIssues, complianceIssuesCount and
// complianceDistribution on containers and hosts) and add Bulwark's check
// slugs, effects and per-kind counts.

// ComplianceStats is the compliance explorer: one entry per failed check
// and the number of resources its filters select.
type ComplianceStats struct {
	IDs []ComplianceIDStats `json:"ids"`
	// Containers, Images and Hosts count the resources with a current result
	// that the filters select, failing or not: containers, their distinct
	// images, and hosts (of any result).
	Containers int `json:"containers"`
	Images     int `json:"images"`
	Hosts      int `json:"hosts"`
}

// ComplianceIDStats counts the resources failing one check. A check with a
// Docker and a CRI ID (515, 5515) has an entry per ID seen.
type ComplianceIDStats struct {
	ID          string `json:"_id"`   // the Prisma ID ("5515"), or the slug when the check has none
	Check       string `json:"check"` // slug
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	Severity    string `json:"severity"` // the highest among the findings
	Type        string `json:"type"`     // container or host (image for image scans, later)
	// Failed counts the failing resources of Type.
	Failed int `json:"failed"`
	// FailedContainers and FailedImages count the failing containers and
	// their distinct images (0 for a host check); FailedHosts the failing
	// hosts, or for a container check the hosts that run a failing container.
	FailedContainers int `json:"failedContainers"`
	FailedImages     int `json:"failedImages"`
	FailedHosts      int `json:"failedHosts"`
}

// ComplianceIssue is one failed check of a container or host.
type ComplianceIssue struct {
	ID          int      `json:"id"`    // the Prisma ID; 0 when the check has none
	Check       string   `json:"check"` // slug
	Title       string   `json:"title"`
	Severity    string   `json:"severity"`
	Description string   `json:"description,omitempty"`
	Cause       string   `json:"cause"`            // what the Defender found
	Type        string   `json:"type"`             // container or host
	Effect      string   `json:"effect,omitempty"` // alert or block, from the deciding rule
	Paths       []string `json:"paths,omitempty"`  // the config keys that caused it
}

// ComplianceDistribution counts issues by severity.
type ComplianceDistribution struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
	Info     int `json:"info"`
	Total    int `json:"total"`
}

// ContainerCompliance is a container's current compliance result, as
// GET /api/v1/containers lists it.
type ContainerCompliance struct {
	ID       string                  `json:"_id"` // the container ID
	Hostname string                  `json:"hostname"`
	ScanTime time.Time               `json:"scanTime"` // when the Defender evaluated it
	Info     ContainerComplianceInfo `json:"info"`
	ComplianceSource
}

// ContainerComplianceInfo is the container and its issues.
type ContainerComplianceInfo struct {
	ID                     string                 `json:"id"`
	Name                   string                 `json:"name"`
	Image                  string                 `json:"image"`
	ImageName              string                 `json:"imageName"`
	Namespace              string                 `json:"namespace,omitempty"`
	Pod                    string                 `json:"pod,omitempty"`
	ComplianceIssues       []ComplianceIssue      `json:"complianceIssues"`
	ComplianceIssuesCount  int                    `json:"complianceIssuesCount"`
	ComplianceDistribution ComplianceDistribution `json:"complianceDistribution"`
}

// HostCompliance is a host's current compliance result, as GET
// /api/v1/hosts lists it.
type HostCompliance struct {
	ID                     string                 `json:"_id"`  // the host name
	Type                   string                 `json:"type"` // "host"
	Hostname               string                 `json:"hostname"`
	ScanTime               time.Time              `json:"scanTime"`
	ComplianceIssues       []ComplianceIssue      `json:"complianceIssues"`
	ComplianceIssuesCount  int                    `json:"complianceIssuesCount"`
	ComplianceDistribution ComplianceDistribution `json:"complianceDistribution"`
	ComplianceSource
}

// ComplianceSource says where a result came from.
type ComplianceSource struct {
	DefenderID     string `json:"defenderID"`
	PolicyRevision int64  `json:"policyRevision"` // of the policy the Defender evaluated with
	Trigger        string `json:"trigger,omitempty"`
}
