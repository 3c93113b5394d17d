package cli

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML as CI systems read it (the Ant/Jenkins form): a suite per file,
// a case per object and check.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Skipped  int          `xml:"skipped,attr"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name     string      `xml:"name,attr"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Errors   int         `xml:"errors,attr"`
		Skipped  int         `xml:"skipped,attr"`
		Cases    []junitCase `xml:"testcase"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		File      string        `xml:"file,attr,omitempty"`
		Line      int           `xml:"line,attr,omitempty"`
		Failure   *junitProblem `xml:"failure,omitempty"`
		Error     *junitProblem `xml:"error,omitempty"`
		Skipped   *junitSkipped `xml:"skipped,omitempty"`
	}
	junitProblem struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr,omitempty"`
		Text    string `xml:",cdata"`
	}
	junitSkipped struct {
		Message string `xml:"message,attr"`
	}
)

// writeJUnit writes one test suite per file and one test case per object
// and evaluated check: a failure lists the check's findings at or above the
// threshold, a check that annotations ignore is skipped, and an unreadable
// input is an error case.
func writeJUnit(w io.Writer, rep *scanReport, cfg *scanConfig) error {
	byObject := map[int][]scanFinding{}
	for _, f := range rep.Findings {
		byObject[f.obj] = append(byObject[f.obj], f)
	}
	out := junitSuites{Name: "bulwarkctl scan k8s"}
	obj := 0
	for _, file := range rep.files {
		s := junitSuite{Name: file.name}
		for _, e := range file.errors {
			s.Cases = append(s.Cases, junitCase{
				Name: "read manifest", Classname: file.name, File: file.name, Line: e.Line,
				Error: &junitProblem{Message: e.String(), Type: "parse"},
			})
			s.Errors++
		}
		for _, o := range file.objects {
			obj++
			class := scanObject{Kind: o.source.Object.Kind, Namespace: o.source.Object.Namespace, Name: o.source.Object.Name}.String()
			for _, c := range cfg.checks {
				tc := junitCase{Name: displayName(c), Classname: class, File: file.name, Line: o.source.Line}
				var failing, ignored []scanFinding
				for _, f := range byObject[obj] {
					switch {
					case f.Check != c.Slug:
					case f.Suppressed != nil:
						ignored = append(ignored, f)
					default:
						failing = append(failing, f)
					}
				}
				switch {
				case len(failing) > 0:
					tc.Line = failing[0].Line
					tc.Failure = junitFailure(failing)
					s.Failures++
				case len(ignored) > 0:
					tc.Skipped = &junitSkipped{Message: "ignored by annotation: " + ignored[0].Suppressed.Reason}
					s.Skipped++
				}
				s.Cases = append(s.Cases, tc)
			}
		}
		s.Tests = len(s.Cases)
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
		out.Skipped += s.Skipped
		out.Suites = append(out.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func junitFailure(fs []scanFinding) *junitProblem {
	p := &junitProblem{Message: fs[0].Message, Type: string(fs[0].Severity)}
	if len(fs) > 1 {
		p.Message += fmt.Sprintf(" (and %d more)", len(fs)-1)
	}
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s: %s\n", strings.ToUpper(string(f.Severity)), f.Message)
		for i, path := range f.Paths {
			fmt.Fprintf(&b, "  at %s (%s:%d)\n", path, f.File, f.lines[i])
		}
	}
	p.Text = b.String()
	return p
}
