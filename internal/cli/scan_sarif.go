package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"

	"bulwark/internal/compliance"
)

// sarifLevel maps a severity to a SARIF level.
func sarifLevel(s compliance.Severity) string {
	switch s {
	case compliance.SeverityCritical, compliance.SeverityHigh:
		return sarif.LevelError
	case compliance.SeverityMedium:
		return sarif.LevelWarning
	}
	return sarif.LevelNote
}

// securitySeverity is the CVSS-like score GitHub code scanning reads from
// a rule's "security-severity" property to rank alerts.
func securitySeverity(s compliance.Severity) string {
	switch s {
	case compliance.SeverityCritical:
		return "9.5"
	case compliance.SeverityHigh:
		return "8.0"
	case compliance.SeverityMedium:
		return "5.5"
	case compliance.SeverityLow:
		return "3.0"
	}
	return "0.0"
}

// displayName is "<CRI ID> - <title>", as Prisma names a check on a
// Kubernetes workload, or the title alone.
func displayName(c compliance.Check) string {
	if c.CRIID == "" {
		return c.Title
	}
	return c.CRIID + " - " + c.Title
}

// sarifURI is a file name as a SARIF artifact URI: a relative URI
// reference, or a file URL for an absolute path.
func sarifURI(name string) string {
	if name == stdinName {
		return "stdin"
	}
	p := filepath.ToSlash(filepath.Clean(name))
	if filepath.IsAbs(name) {
		return (&url.URL{Scheme: "file", Path: p}).String()
	}
	return strings.TrimPrefix((&url.URL{Path: p}).String(), "./")
}

// writeSARIF writes a SARIF 2.1.0 log: one rule per evaluated check, one
// result per finding at or above the threshold (suppressed ones with an
// in-source suppression), unreadable inputs as tool notifications.
func writeSARIF(w io.Writer, rep *scanReport, cfg *scanConfig) error {
	run := sarif.NewRun()
	run.Tool = sarif.NewTool()
	run.Tool.Driver = sarif.NewToolComponent().WithName("bulwarkctl").WithVersion(rep.Version)
	for _, c := range cfg.checks {
		help := c.Description + "\n\nRemediation: " + c.Remediation
		markdown := "**" + displayName(c) + "**\n\n" + c.Description + "\n\n**Remediation:** " + c.Remediation
		if len(c.References) > 0 {
			help += "\n\nReferences: " + strings.Join(c.References, "; ")
			markdown += "\n\n**References:** " + strings.Join(c.References, "; ")
		}
		props := sarif.NewPropertyBag().
			Add("severity", string(c.Severity)).
			Add("security-severity", securitySeverity(c.Severity)).
			WithTags([]string{"security", "kubernetes", "compliance"})
		if c.CRIID != "" {
			props.Add("prismaId", c.CRIID)
		}
		run.AddRule(c.Slug).
			WithName(c.Slug).
			WithShortDescription(sarif.NewMultiformatMessageString().WithText(displayName(c))).
			WithFullDescription(sarif.NewMultiformatMessageString().WithText(c.Description)).
			WithHelp(sarif.NewMultiformatMessageString().WithText(help).WithMarkdown(markdown)).
			WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(sarifLevel(c.Severity))).
			WithProperties(props)
	}
	for _, f := range rep.Findings {
		run.AddDistinctArtifact(sarifURI(f.File))
		msg := f.Name + ": " + f.Message + " (" + f.Object.String() + ")"
		res := run.CreateResultForRule(f.Check).
			WithLevel(sarifLevel(f.Severity)).
			WithMessage(sarif.NewTextMessage(msg)).
			AddLocation(sarifLocation(f.File, f.Line).WithLogicalLocations([]*sarif.LogicalLocation{
				sarif.NewLogicalLocation().
					WithName(f.Object.Name).
					WithFullyQualifiedName(strings.Trim(f.Object.Kind+"/"+f.Object.Namespace+"/"+f.Object.Name, "/")).
					WithKind("resource"),
			})).
			WithPartialFingerprints(map[string]string{"bulwarkFinding/v1": fingerprint(f)})
		props := sarif.NewPropertyBag().Add("severity", string(f.Severity)).Add("paths", f.Paths)
		if f.Container != "" {
			props.Add("container", f.Container)
		}
		res.WithProperties(props)
		if f.Suppressed != nil {
			res.AddSuppression(sarif.NewSuppression().WithKind("inSource").WithStatus("accepted").
				WithJustification(f.Suppressed.Reason))
		}
	}
	inv := sarif.NewInvocation().WithExecutionSuccessful(len(rep.Errors) == 0)
	for _, e := range rep.Errors {
		run.AddDistinctArtifact(sarifURI(e.File))
		inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, sarif.NewNotification().
			WithLevel(sarif.LevelError).
			WithMessage(sarif.NewTextMessage(e.Message)).
			AddLocation(sarifLocation(e.File, e.Line)))
	}
	run.AddInvocation(inv)
	log := sarif.NewReport().AddRun(run)
	if err := log.PrettyWrite(w); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func sarifLocation(file string, line int) *sarif.Location {
	pl := sarif.NewPhysicalLocation().WithArtifactLocation(sarif.NewSimpleArtifactLocation(sarifURI(file)))
	if line > 0 {
		pl.WithRegion(sarif.NewRegion().WithStartLine(line))
	}
	return sarif.NewLocationWithPhysicalLocation(pl)
}

// fingerprint identifies a finding across scans, for code scanning to
// track it when lines move: the object, the check and the fields.
func fingerprint(f scanFinding) string {
	h := sha256.New()
	for _, s := range []string{f.File, f.Object.Kind, f.Object.Namespace, f.Object.Name, f.Check, f.Container, strings.Join(f.Paths, ",")} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
