package runtimepolicy

import (
	"slices"
	"time"
)

// DefaultIncidentWindow is how close in time the audits of one container
// (or host) must follow each other to belong to one incident.
const DefaultIncidentWindow = 10 * time.Minute

// Incident categories, Prisma's names where it has one.
const (
	IncidentReverseShell       = "reverseShell"
	IncidentCryptoMiner        = "cryptoMiner"
	IncidentPrivilegeEscalate  = "privilegeEscalation"
	IncidentBackdoorAdmin      = "backdoorAdministrativeAccount"
	IncidentBackdoorSSH        = "backdoorSSHAccess"
	IncidentAlteredBinary      = "alteredBinary"
	IncidentLateralMovement    = "lateralMovement"
	IncidentKubernetes         = "kubernetes"
	IncidentSensitiveFile      = "sensitiveFileAccess"
	IncidentPackageManager     = "packageManager"
	IncidentExplicitlyDenied   = "customRule"
	IncidentUnexpectedBehavior = "unexpectedBehavior"
)

// incidentCategories, most severe first: an incident takes the category of
// its most severe audit.
var incidentCategories = []struct {
	category   string
	detections []string
}{
	{IncidentReverseShell, []string{DetectReverseShell}},
	{IncidentCryptoMiner, []string{DetectCryptoMiner}},
	{IncidentPrivilegeEscalate, []string{DetectSuidBinary, DetectPrivEscalation}},
	{IncidentBackdoorAdmin, []string{DetectAdminAccount}},
	{IncidentBackdoorSSH, []string{DetectSSHAccess}},
	{IncidentAlteredBinary, []string{DetectDrift, DetectAlteredBinary}},
	{IncidentLateralMovement, []string{DetectLateralMovement}},
	{IncidentKubernetes, []string{DetectKubectl}},
	{IncidentSensitiveFile, []string{DetectSecretFile}},
	{IncidentPackageManager, []string{DetectPackageManager}},
	{IncidentExplicitlyDenied, []string{DetectDeniedProcess, DetectDeniedFile, DetectDeniedIP, DetectDeniedOutbound, DetectDeniedListen}},
}

// IncidentCategory is the incident category of a detection.
func IncidentCategory(detection string) string {
	for _, c := range incidentCategories {
		if slices.Contains(c.detections, detection) {
			return c.category
		}
	}
	return IncidentUnexpectedBehavior
}

// severity ranks a category: lower is more severe.
func severity(category string) int {
	for i, c := range incidentCategories {
		if c.category == category {
			return i
		}
	}
	return len(incidentCategories)
}

// MoreSevere reports whether category a is more severe than b.
func MoreSevere(a, b string) bool { return severity(a) < severity(b) }

// Joins reports whether an audit at t belongs to the incident whose audits
// span first..last: it follows the last one (or precedes the first, for an
// audit that arrives late) within window.
func Joins(first, last, t time.Time, window time.Duration) bool {
	return !t.After(last.Add(window)) && !t.Before(first.Add(-window))
}

// DetectionCategory is the audit category (CategoryProcesses, …) of a
// detection.
func DetectionCategory(detection string) string {
	switch detection {
	case DetectDeniedFile, DetectUnexpectedWrite, DetectAlteredBinary, DetectAdminAccount, DetectSSHAccess, DetectSecretFile:
		return CategoryFilesystem
	case DetectDeniedIP, DetectDeniedOutbound, DetectUnexpectedOut, DetectDeniedListen, DetectUnexpectedListen:
		return CategoryNetwork
	case DetectKubectl:
		return CategoryKubernetes
	}
	return CategoryProcesses
}
