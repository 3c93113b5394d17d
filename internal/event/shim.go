package event

import "bulwark/internal/compliance"

// Kinds of runc shim events.
const (
	// KindShimDecision is a decision about creating a container: the
	// Defender's (allowed or blocked by a rule), or the shim's own when it
	// could not ask (fail-open or fail-closed on timeout, unreachable
	// Defender or error). Data is a JSON ShimDecision.
	KindShimDecision = "shim.decision"
	// KindShimInstall is the shim put in place of a runc binary or taken
	// out. Data is a JSON ShimInstall.
	KindShimInstall = "shim.install"
)

// ShimDecision is the Data of a shim.decision event.
type ShimDecision struct {
	// Verdict is one of api/shimv1's: allowed, blocked, fail-open-timeout,
	// fail-open-unreachable, fail-open-error, fail-closed-timeout,
	// fail-closed-unreachable, fail-closed-error.
	Verdict string `json:"verdict"`
	// Command is the runc subcommand: create, run or restore.
	Command string `json:"command"`
	// Rule is the rule that decided: the compliance rule whose findings
	// blocked (or, for the fail verdicts, whose FailClosed applied).
	Rule string `json:"rule,omitempty"`
	// Message is what the container engine was told, for refusals.
	Message string `json:"message,omitempty"`
	// Findings are every finding the deciding rule did not ignore, those
	// that blocked and those that only alert.
	Findings       []compliance.Finding `json:"findings,omitempty"`
	Container      Container            `json:"container"`
	Bundle         string               `json:"bundle,omitempty"`
	Host           string               `json:"host,omitempty"`
	PolicyRevision int64                `json:"policyRevision,omitempty"`
	// RecordedBy is "defender", or "shim" for decisions the shim made alone
	// and left in its audit directory.
	RecordedBy string `json:"recordedBy"`
	// Error says why the Defender could not decide (fail verdicts).
	Error string `json:"error,omitempty"`
	// ElapsedMS is how long the decision took, as its recorder measured.
	ElapsedMS int64 `json:"elapsedMs"`
}

// ShimInstall is the Data of a shim.install event.
type ShimInstall struct {
	// Action is "installed", "updated" or "uninstalled".
	Action string `json:"action"`
	// Path is the runc path the shim stands (or stood) at.
	Path string `json:"path"`
	// Reason says why: "blocking rule active", "no blocking rule",
	// "command" (bulwark-defender shim install|uninstall).
	Reason     string `json:"reason"`
	RuncSHA256 string `json:"runcSha256,omitempty"`
	Error      string `json:"error,omitempty"`
}
