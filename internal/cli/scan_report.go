package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"bulwark/internal/compliance"
)

// scanReport is the result of a scan as -o json prints it. Findings are
// those at or above the threshold, suppressed ones included and marked.
type scanReport struct {
	Tool      string        `json:"tool"`
	Version   string        `json:"version"`
	Threshold string        `json:"severityThreshold"`
	PSS       scanPSS       `json:"pss"`
	Summary   scanSummary   `json:"summary"`
	Findings  []scanFinding `json:"findings"`
	Errors    []scanError   `json:"errors"`

	files    []scannedFile
	warnings []string
}

type scanPSS struct {
	Level   string `json:"level"`
	Version string `json:"version"`
}

type scanSummary struct {
	Files   int `json:"files"`
	Objects int `json:"objects"`
	// Failing are the findings at or above the threshold that no
	// annotation ignores: the exit code is 1 when there are any.
	Failing int `json:"failing"`
	// BySeverity counts the failing findings.
	BySeverity     map[compliance.Severity]int `json:"bySeverity"`
	Suppressed     int                         `json:"suppressed"`
	BelowThreshold int                         `json:"belowThreshold"`
	Errors         int                         `json:"errors"`
}

type scanFinding struct {
	File string `json:"file"`
	// Line is where the finding's first field is written (the object's
	// line when the field is absent or the file is JSON).
	Line   int        `json:"line"`
	Object scanObject `json:"object"`
	Check  string     `json:"check"`
	// ID is the Prisma-compatible ID, Name "<id> - <title>" as Prisma
	// shows it (the title alone without an ID).
	ID         string              `json:"id,omitempty"`
	Name       string              `json:"name"`
	Severity   compliance.Severity `json:"severity"`
	Title      string              `json:"title"`
	Message    string              `json:"message"`
	Container  string              `json:"container,omitempty"`
	Paths      []string            `json:"paths,omitempty"`
	Suppressed *scanSuppression    `json:"suppressed,omitempty"`

	obj   int   // the object's position in the scan, for grouping
	lines []int // where each path is written
}

type scanObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Line       int    `json:"line"`
}

// String is "Kind namespace/name".
func (o scanObject) String() string {
	name := o.Name
	if o.Namespace != "" {
		name = o.Namespace + "/" + name
	}
	return o.Kind + " " + name
}

type scanSuppression struct {
	Annotation string `json:"annotation"`
	Reason     string `json:"reason"`
}

func newScanReport(files []scannedFile, cfg *scanConfig, version string) *scanReport {
	rep := &scanReport{
		Tool:      "bulwarkctl",
		Version:   version,
		Threshold: string(cfg.threshold),
		PSS:       scanPSS{Level: cfg.pssLevel, Version: cfg.pssVersion},
		Summary:   scanSummary{Files: len(files), BySeverity: map[compliance.Severity]int{}},
		Findings:  []scanFinding{},
		Errors:    []scanError{},
		files:     files,
	}
	for _, f := range files {
		rep.Errors = append(rep.Errors, f.errors...)
		rep.warnings = append(rep.warnings, f.warnings...)
		rep.Summary.BelowThreshold += f.below
		for _, o := range f.objects {
			rep.Summary.Objects++
			for _, sf := range o.findings {
				switch {
				case sf.suppressed != "":
					rep.Summary.Suppressed++
				default:
					rep.Summary.Failing++
					rep.Summary.BySeverity[sf.Severity]++
				}
				sf := newScanFinding(f.name, o, sf)
				sf.obj = rep.Summary.Objects
				rep.Findings = append(rep.Findings, sf)
			}
		}
	}
	rep.Summary.Errors = len(rep.Errors)
	return rep
}

func newScanFinding(file string, o scannedObject, sf scannedFinding) scanFinding {
	src := o.source.Object
	f := scanFinding{
		File:      file,
		Line:      sf.lines[0],
		lines:     sf.lines,
		Object:    scanObject{APIVersion: src.APIVersion, Kind: src.Kind, Namespace: src.Namespace, Name: src.Name, Line: o.source.Line},
		Check:     sf.Check,
		ID:        sf.PrismaID,
		Name:      sf.String(),
		Severity:  sf.Severity,
		Title:     sf.Title,
		Message:   sf.Message,
		Container: sf.Container,
		Paths:     sf.Paths,
	}
	if sf.suppressed != "" {
		f.Suppressed = &scanSuppression{Annotation: "bulwark.dev/ignore-check." + sf.Check, Reason: sf.suppressed}
	}
	return f
}

// writeScanJSON writes the report as writeJSON would, one finding at a
// time, so that a large report is not built in memory first.
func writeScanJSON(w io.Writer, rep *scanReport) error {
	bw := bufio.NewWriter(w)
	// A bufio.Writer keeps its first error and Flush returns it.
	put := func(s string) { _, _ = bw.WriteString(s) }
	field := func(name string, v any, last bool) error {
		b, err := json.MarshalIndent(v, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n"
		if last {
			sep = "\n"
		}
		_, err = fmt.Fprintf(bw, "  %q: %s%s", name, b, sep)
		return err
	}
	err := func() error {
		put("{\n")
		for _, f := range []struct {
			name string
			v    any
		}{{"tool", rep.Tool}, {"version", rep.Version}, {"severityThreshold", rep.Threshold}, {"pss", rep.PSS}, {"summary", rep.Summary}} {
			if err := field(f.name, f.v, false); err != nil {
				return err
			}
		}
		if len(rep.Findings) == 0 {
			put("  \"findings\": [],\n")
		} else {
			put("  \"findings\": [\n")
			for i, f := range rep.Findings {
				b, err := json.MarshalIndent(f, "    ", "  ")
				if err != nil {
					return err
				}
				put("    " + string(b))
				if i < len(rep.Findings)-1 {
					put(",")
				}
				put("\n")
			}
			put("  ],\n")
		}
		if err := field("errors", rep.Errors, true); err != nil {
			return err
		}
		put("}\n")
		return bw.Flush()
	}()
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeScanTable prints the findings by object, most severe first, and a
// summary.
func writeScanTable(w io.Writer, rep *scanReport) error {
	var b strings.Builder
	// Objects in the order scanned; within an object the most severe first.
	byObject := slices.Clone(rep.Findings)
	slices.SortStableFunc(byObject, func(x, y scanFinding) int {
		if x.obj != y.obj {
			return x.obj - y.obj
		}
		return y.Severity.Rank() - x.Severity.Rank()
	})
	obj := 0
	for _, f := range byObject {
		if f.Suppressed != nil {
			continue
		}
		if f.obj != obj {
			if obj != 0 {
				b.WriteString("\n")
			}
			obj = f.obj
			fmt.Fprintf(&b, "%s:%d: %s\n", safe(f.File), f.Object.Line, safe(f.Object.String()))
		}
		fmt.Fprintf(&b, "  %-9s %s\n", strings.ToUpper(string(f.Severity)), safe(f.Name))
		fmt.Fprintf(&b, "  %-9s %s\n", "", safe(f.Message))
		for i, p := range f.Paths {
			fmt.Fprintf(&b, "  %-9s at %s (line %d)\n", "", safe(p), f.lines[i])
		}
	}
	if obj != 0 {
		b.WriteString("\n")
	}
	b.WriteString(summaryLine(rep))
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// summaryLine says what was scanned and found.
func summaryLine(rep *scanReport) string {
	s := rep.Summary
	scanned := plural(s.Objects, "object") + " in " + plural(s.Files, "file")
	var parts []string
	if s.Failing == 0 {
		parts = append(parts, fmt.Sprintf("No findings at or above %s in %s", rep.Threshold, scanned))
	} else {
		var counts []string
		for _, sev := range []compliance.Severity{compliance.SeverityCritical, compliance.SeverityHigh, compliance.SeverityMedium, compliance.SeverityLow, compliance.SeverityInfo} {
			if n := s.BySeverity[sev]; n > 0 {
				counts = append(counts, fmt.Sprintf("%d %s", n, sev))
			}
		}
		parts = append(parts, fmt.Sprintf("%s in %s: %s", plural(s.Failing, "finding"), scanned, strings.Join(counts, ", ")))
	}
	if s.BelowThreshold > 0 {
		parts = append(parts, fmt.Sprintf("%d below %s not shown", s.BelowThreshold, rep.Threshold))
	}
	if s.Suppressed > 0 {
		parts = append(parts, fmt.Sprintf("%d ignored by annotation", s.Suppressed))
	}
	if s.Errors > 0 {
		parts = append(parts, plural(s.Errors, "error"))
	}
	return strings.Join(parts, "; ") + ".\n"
}

// safe shows control characters from a manifest escaped, so that a file
// cannot drive the terminal.
func safe(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return cell(s)
}
