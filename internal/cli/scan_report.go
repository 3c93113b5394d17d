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
	Tool    string `json:"tool"`
	Version string `json:"version"`
	// Input is what was scanned: oci, docker, image or host; absent for
	// Kubernetes manifests, whose reports came first.
	Input string `json:"input,omitempty"`
	// Engine is the engine assumed for OCI runtime specs.
	Engine    string        `json:"engine,omitempty"`
	Threshold string        `json:"severityThreshold"`
	PSS       *scanPSS      `json:"pss,omitempty"`
	Summary   scanSummary   `json:"summary"`
	Findings  []scanFinding `json:"findings"`
	Errors    []scanError   `json:"errors"`

	kind     *scanKind
	files    []scannedFile
	warnings []string
}

type scanPSS struct {
	Level   string `json:"level"`
	Version string `json:"version"`
}

type scanSummary struct {
	Files int `json:"files"`
	// Objects are the Kubernetes objects, containers, images or hosts
	// evaluated.
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
	// File and Line are where the finding's first field is written: the
	// scanned file, or for a host the configuration file. Line is the
	// object's when the field is absent or a Kubernetes object is JSON,
	// the parent's when a key of a runtime config is absent, and 1 when a
	// host file does not hold it.
	File   string     `json:"file"`
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

	obj        int       // the object's position in the scan, for grouping
	objectFile string    // the scanned file that holds the object
	locs       []scanLoc // where each path is written
}

// scanObject is what a finding is about: a Kubernetes object; a
// container (Kind Container, with its pod when its config names one); an
// image; a host.
type scanObject struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Pod        string `json:"pod,omitempty"`
	// ID is a container's or an image's.
	ID string `json:"id,omitempty"`
	// Line is where the object starts; absent for a host.
	Line int `json:"line,omitempty"`
}

// String is "Kind namespace/name", "Container name (pod namespace/pod,
// id)", "Image name (id)".
func (o scanObject) String() string {
	name := o.Name
	if o.Namespace != "" && o.Pod == "" {
		name = o.Namespace + "/" + name
	}
	var more []string
	if o.Pod != "" {
		pod := o.Pod
		if o.Namespace != "" {
			pod = o.Namespace + "/" + pod
		}
		more = append(more, "pod "+pod)
	}
	if id := shortID(o.ID); id != "" && id != o.Name {
		more = append(more, id)
	}
	if len(more) == 0 {
		return o.Kind + " " + name
	}
	return o.Kind + " " + name + " (" + strings.Join(more, ", ") + ")"
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
		Summary:   scanSummary{BySeverity: map[compliance.Severity]int{}},
		Findings:  []scanFinding{},
		Errors:    []scanError{},
		kind:      cfg.kind,
	}
	if cfg.kind.scope == compliance.ScopeManifest {
		rep.PSS = &scanPSS{Level: cfg.pssLevel, Version: cfg.pssVersion}
	} else {
		rep.Input, rep.Engine = cfg.kind.name, cfg.engine
	}
	for _, f := range files {
		rep.warnings = append(rep.warnings, f.warnings...)
		if f.skipped {
			continue
		}
		rep.files = append(rep.files, f)
		rep.Errors = append(rep.Errors, f.errors...)
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
	rep.Summary.Files = len(rep.files)
	rep.Summary.Errors = len(rep.Errors)
	return rep
}

func newScanFinding(file string, o scannedObject, sf scannedFinding) scanFinding {
	f := scanFinding{
		File:       sf.locs[0].file,
		Line:       max(sf.locs[0].line, 1),
		objectFile: file,
		locs:       sf.locs,
		Object:     o.object,
		Check:      sf.Check,
		ID:         sf.PrismaID,
		Name:       sf.String(),
		Severity:   sf.Severity,
		Title:      sf.Title,
		Message:    sf.Message,
		Container:  sf.Container,
		Paths:      sf.Paths,
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
		type kv struct {
			name string
			v    any
		}
		head := []kv{{"tool", rep.Tool}, {"version", rep.Version}}
		if rep.Input != "" {
			head = append(head, kv{"input", rep.Input})
		}
		if rep.Engine != "" {
			head = append(head, kv{"engine", rep.Engine})
		}
		head = append(head, kv{"severityThreshold", rep.Threshold})
		if rep.PSS != nil {
			head = append(head, kv{"pss", rep.PSS})
		}
		for _, f := range append(head, kv{"summary", rep.Summary}) {
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
			if f.Object.Line > 0 {
				fmt.Fprintf(&b, "%s:%d: %s\n", safe(f.objectFile), f.Object.Line, safe(f.Object.String()))
			} else {
				fmt.Fprintf(&b, "%s: %s\n", safe(f.objectFile), safe(f.Object.String()))
			}
		}
		fmt.Fprintf(&b, "  %-9s %s\n", strings.ToUpper(string(f.Severity)), safe(f.Name))
		fmt.Fprintf(&b, "  %-9s %s\n", "", safe(f.Message))
		for i, p := range f.Paths {
			fmt.Fprintf(&b, "  %-9s at %s (%s)\n", "", safe(p), safe(f.where(i)))
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

// where says where the finding's i-th path is written: "line 12" in the
// object's file, "FILE:12" or "FILE" in another.
func (f scanFinding) where(i int) string {
	l := f.locs[i]
	switch {
	case l.line == 0:
		return l.file
	case l.file == f.objectFile:
		return fmt.Sprintf("line %d", l.line)
	}
	return fmt.Sprintf("%s:%d", l.file, l.line)
}

// summaryLine says what was scanned and found.
func summaryLine(rep *scanReport) string {
	s := rep.Summary
	scanned := plural(s.Objects, rep.kind.noun) + " in " + plural(s.Files, "file")
	if rep.kind.host {
		scanned = plural(s.Objects, rep.kind.noun)
	}
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
