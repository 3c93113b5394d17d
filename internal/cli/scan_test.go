package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
)

var update = flag.Bool("update", false, "rewrite the golden outputs in testdata/scan/golden")

// scanEnv is an environment whose Console settings would make every
// Console command fail: scan must not look at them.
func scanEnv() map[string]string {
	return map[string]string{envConsole: "http://not-https.example", envConfigDir: "/nonexistent/bulwark"}
}

const repo = "testdata/scan/repo"

func TestScan(t *testing.T) {
	agent, err := os.ReadFile(filepath.Join(repo, "infra", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		golden string   // testdata/scan/golden/<golden>: the expected stdout
		stderr []string // what stderr must contain
	}{
		{name: "clean", args: []string{"testdata/scan/clean.yaml"}, code: 0, golden: "clean.txt"},
		{name: "repository", args: []string{repo}, code: 1, golden: "repo.txt",
			stderr: []string{"warning: skipping testdata/scan/repo/chart/templates: Helm templates must be rendered first"}},
		{name: "json", args: []string{repo, "-o", "json"}, code: 1, golden: "repo.json"},
		{name: "sarif", args: []string{repo, "-o", "sarif", "--severity-threshold", "medium", "--pss-level", "restricted", "--checks", "host-pid,privileged,secrets-in-env,caps-added,net-raw,pss-baseline,pss-restricted"}, code: 1, golden: "repo.sarif"},
		{name: "junit", args: []string{repo, "--output", "junit", "--checks", "host-pid,privileged,599,secrets-in-env"}, code: 1, golden: "repo-junit.xml"},
		{name: "critical only", args: []string{repo, "--severity-threshold", "critical", "--pss-level", "none"}, code: 1, golden: "critical.txt"},
		{name: "skipping what fails", args: []string{repo, "--skip", "5515,5059,54,53,531,599,pss-baseline"}, code: 0, golden: "skipped.txt"},
		{name: "restricted at medium", args: []string{"testdata/scan/clean.yaml", "--pss-level", "restricted", "--pss-version", "v1.30", "--severity-threshold", "medium"}, code: 0, golden: "clean-restricted.txt"},
		{name: "low findings on a clean file", args: []string{"testdata/scan/clean.yaml", "--severity-threshold", "LOW"}, code: 1, golden: "clean-low.txt"},
		{name: "stdin", args: []string{"-"}, stdin: string(agent), code: 1, golden: "stdin.txt"},
		{name: "stdin sarif", args: []string{"-", "-o", "sarif", "--checks", "host-pid"}, stdin: string(agent), code: 1, golden: "stdin.sarif"},
		{name: "parse error", args: []string{"testdata/scan/broken.yaml", repo}, code: 2, golden: "broken.txt",
			stderr: []string{"bulwarkctl: testdata/scan/broken.yaml:6: invalid YAML: "}},
		{name: "parse error in json", args: []string{"testdata/scan/broken.yaml", "-o", "json"}, code: 2, golden: "broken.json"},
		{name: "missing file", args: []string{"testdata/scan/nope.yaml"}, code: 2,
			stderr: []string{"bulwarkctl: scan testdata/scan/nope.yaml: no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, scanEnv(), tc.stdin, append([]string{"scan", "k8s"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("bulwarkctl scan k8s %q exit %d, want %d; stderr:\n%s", tc.args, r.code, tc.code, r.stderr)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr = %q, want it to contain %q", r.stderr, want)
				}
			}
			if strings.Contains(r.stderr, "--help") {
				t.Errorf("stderr = %q: an input error is not a usage error", r.stderr)
			}
			if tc.golden == "" {
				return
			}
			golden(t, tc.golden, r.stdout)
			switch filepath.Ext(tc.golden) {
			case ".json":
				checkScanJSON(t, r.stdout)
			case ".sarif":
				// The same scan as JSON must list the same findings.
				args := slices.Clone(tc.args)
				args[slices.Index(args, "sarif")] = "json"
				j := run(t, scanEnv(), tc.stdin, append([]string{"scan", "k8s"}, args...)...)
				var rep scanReport
				if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil {
					t.Fatal(err)
				}
				checkSARIF(t, r.stdout, rep.Findings)
			case ".xml":
				checkJUnit(t, r.stdout)
			}
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", "scan", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("output differs from %s (-want +got):\n%s", file, diff)
	}
}

// checkScanJSON checks the JSON report's invariants.
func checkScanJSON(t *testing.T, out string) {
	t.Helper()
	var rep scanReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	failing, suppressed := 0, 0
	for _, f := range rep.Findings {
		if f.Suppressed != nil {
			suppressed++
			if f.Suppressed.Reason == "" || f.Suppressed.Annotation != "bulwark.dev/ignore-check."+f.Check {
				t.Errorf("finding %s suppressed by %+v: want the annotation and its reason", f.Check, f.Suppressed)
			}
			continue
		}
		failing++
		if f.Line < 1 || f.File == "" || f.Object.Kind == "" || f.Name == "" || f.Message == "" {
			t.Errorf("finding %+v lacks file, line, object, name or message", f)
		}
		if f.ID != "" && f.Name != f.ID+" - "+f.Title {
			t.Errorf("finding name %q, want %q", f.Name, f.ID+" - "+f.Title)
		}
	}
	if failing != rep.Summary.Failing || suppressed != rep.Summary.Suppressed || len(rep.Errors) != rep.Summary.Errors {
		t.Errorf("summary %+v disagrees with %d failing, %d suppressed findings and %d errors", rep.Summary, failing, suppressed, len(rep.Errors))
	}
}

// checkSARIF validates the log against the SARIF 2.1.0 schema and checks
// that its results are the findings of the JSON report, each naming a rule,
// a file and a line, suppressed ones with their reason.
func checkSARIF(t *testing.T, out string, want []scanFinding) {
	t.Helper()
	log, err := sarif.FromString(out, sarif.WithStrictValidation())
	if err != nil {
		t.Fatalf("SARIF: %v", err)
	}
	if err := log.Validate(); err != nil {
		t.Fatalf("SARIF does not validate against the 2.1.0 schema: %v", err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 {
		t.Fatalf("SARIF version %q with %d runs, want 2.1.0 and one run", log.Version, len(log.Runs))
	}
	run := log.Runs[0]
	if d := run.Tool.Driver; d == nil || d.Name == nil || *d.Name != "bulwarkctl" || len(d.Rules) == 0 {
		t.Fatalf("SARIF driver %+v: want bulwarkctl with rules", d)
	}
	rules := map[string]*sarif.ReportingDescriptor{}
	for _, r := range run.Tool.Driver.Rules {
		rules[*r.ID] = r
		if r.Help == nil || r.Help.Text == nil || !strings.Contains(*r.Help.Text, "Remediation: ") || r.ShortDescription == nil {
			t.Errorf("rule %s has no help with the remediation or no short description", *r.ID)
		}
	}
	if len(run.Results) != len(want) {
		t.Fatalf("SARIF has %d results, the JSON report %d findings", len(run.Results), len(want))
	}
	for i, res := range run.Results {
		if res.RuleID == nil || rules[*res.RuleID] == nil || res.RuleIndex < 0 || *run.Tool.Driver.Rules[res.RuleIndex].ID != *res.RuleID {
			t.Errorf("result %d: rule %v (index %v) is not among the rules", i, res.RuleID, res.RuleIndex)
			continue
		}
		if len(res.Locations) != 1 || res.Locations[0].PhysicalLocation == nil {
			t.Errorf("result %d has no physical location", i)
			continue
		}
		pl := res.Locations[0].PhysicalLocation
		if pl.ArtifactLocation.URI == nil || *pl.ArtifactLocation.URI == "" || pl.Region == nil || pl.Region.StartLine == nil || *pl.Region.StartLine < 1 {
			t.Errorf("result %d: location %+v lacks a file or a line", i, pl)
		}
		if !slices.Contains([]string{"error", "warning", "note"}, res.Level) {
			t.Errorf("result %d: level %q", i, res.Level)
		}
		f := want[i]
		if *res.RuleID != f.Check || *pl.ArtifactLocation.URI != sarifURI(f.File) || *pl.Region.StartLine != f.Line {
			t.Errorf("result %d: %s at %s:%d, the JSON report's finding %s at %s:%d", i, *res.RuleID, *pl.ArtifactLocation.URI, *pl.Region.StartLine, f.Check, f.File, f.Line)
		}
		switch {
		case f.Suppressed == nil && len(res.Suppressions) > 0:
			t.Errorf("result %d (%s) is suppressed, the finding is not", i, f.Check)
		case f.Suppressed != nil && (len(res.Suppressions) != 1 || res.Suppressions[0].Kind == nil || *res.Suppressions[0].Kind != "inSource" ||
			res.Suppressions[0].Justification == nil || *res.Suppressions[0].Justification != f.Suppressed.Reason):
			t.Errorf("result %d (%s): suppressions %+v, want one in source with the reason %q", i, f.Check, res.Suppressions, f.Suppressed.Reason)
		}
	}
}

// checkJUnit parses the report and checks its counts.
func checkJUnit(t *testing.T, out string) {
	t.Helper()
	var suites junitSuites
	if err := xml.Unmarshal([]byte(out), &suites); err != nil {
		t.Fatalf("JUnit XML: %v", err)
	}
	var tests, failures, skipped, errs int
	for _, s := range suites.Suites {
		var f, sk, e int
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				f++
				if c.Failure.Message == "" || c.Failure.Text == "" {
					t.Errorf("test case %s/%s: failure without message or text", c.Classname, c.Name)
				}
			case c.Skipped != nil:
				sk++
			case c.Error != nil:
				e++
			}
		}
		if s.Tests != len(s.Cases) || s.Failures != f || s.Skipped != sk || s.Errors != e {
			t.Errorf("suite %s counts tests %d failures %d skipped %d errors %d; cases say %d, %d, %d, %d", s.Name, s.Tests, s.Failures, s.Skipped, s.Errors, len(s.Cases), f, sk, e)
		}
		tests, failures, skipped, errs = tests+s.Tests, failures+f, skipped+sk, errs+e
	}
	if suites.Tests != tests || suites.Failures != failures || suites.Skipped != skipped || suites.Errors != errs {
		t.Errorf("testsuites counts %+v, suites add up to %d/%d/%d/%d", suites, tests, failures, skipped, errs)
	}
}

func TestScanUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no path", []string{"scan", "k8s"}, "expected PATH"},
		{"threshold", []string{"scan", "k8s", "--severity-threshold", "severe", repo}, "--severity-threshold must be critical, high, medium, low or info"},
		{"pss level", []string{"scan", "k8s", "--pss-level", "privileged", repo}, "--pss-level must be baseline, restricted or none"},
		{"pss version", []string{"scan", "k8s", "--pss-version", "1.30", repo}, `--pss-version: pod security standards version "1.30"`},
		{"unknown check", []string{"scan", "k8s", "--checks", "host-pid,no-such-check", repo}, `--checks: no check "no-such-check" in the catalog`},
		{"unknown ID", []string{"scan", "k8s", "--skip", "9999", repo}, `--skip: no check "9999"`},
		{"runtime-only check", []string{"scan", "k8s", "--checks", "pids-limit", repo}, `check "pids-limit" does not apply to Kubernetes manifests`},
		{"restricted check without restricted level", []string{"scan", "k8s", "--checks", "pss-restricted", repo}, "--checks pss-restricted needs --pss-level restricted"},
		{"everything skipped", []string{"scan", "k8s", "--checks", "host-pid", "--skip", "5515", repo}, "leave no check to run"},
		{"stdin twice", []string{"scan", "k8s", "-", "-"}, "given twice"},
		{"output", []string{"scan", "k8s", "-o", "yaml", repo}, "--output must be table, json, sarif or junit"},
		{"other commands refuse sarif", []string{"-o", "sarif", "users"}, "--output must be table or json"},
		{"other commands refuse junit", []string{"version", "--output", "junit"}, "--output must be table or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, baseEnv(t), "", tc.args...)
			if r.code != exitUsage {
				t.Errorf("Execute(%q) = %d, want %d; stderr:\n%s", tc.args, r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--help") {
				t.Errorf("Execute(%q) stderr = %q, want it to contain %q and point to --help", tc.args, r.stderr, tc.want)
			}
		})
	}
}

func TestScanEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, scanEnv(), "", "scan", "k8s", dir)
	if r.code != exitUsage || !strings.Contains(r.stderr, "no *.yaml, *.yml or *.json files in "+dir) {
		t.Errorf("scan of a directory without manifests: exit %d, stderr %q; want 2 and a message", r.code, r.stderr)
	}
}

func TestScanSymlinks(t *testing.T) {
	dir := t.TempDir()
	target, err := filepath.Abs(filepath.Join(repo, "infra", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "agent.yaml")); err != nil {
		t.Skipf("symlinks: %v", err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "loop.yaml")); err != nil { // a link to a directory, named like a manifest
		t.Fatal(err)
	}
	r := run(t, scanEnv(), "", "scan", "k8s", "--checks", "host-pid", "-o", "json", dir)
	var rep scanReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, stderr %q: %v", r.code, r.stderr, err)
	}
	if r.code != exitError || rep.Summary.Files != 1 || len(rep.Findings) != 1 {
		t.Errorf("scan of a linked manifest: exit %d, %d files, %d findings; want 1, 1 file (the link to a directory skipped), 1 finding", r.code, rep.Summary.Files, len(rep.Findings))
	}
}

func TestScanHelp(t *testing.T) {
	r := run(t, scanEnv(), "", "scan", "k8s", "--help")
	if r.code != 0 {
		t.Fatalf("scan k8s --help exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"Examples:", "--severity-threshold", "--pss-level", "--pss-version", "--checks", "--skip", "--output",
		"sarif", "junit", "bulwark.dev/ignore-check.", "Exit codes", "host-pid             5515  high",
		"helm template ./chart | bulwarkctl scan k8s",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("scan k8s --help lacks %q", want)
		}
	}
}

// TestScanManyFiles scans more files than one worker batch, on a pipe: no
// progress bar, and the output keeps the files' order.
func TestScanManyFiles(t *testing.T) {
	dir := t.TempDir()
	const n = 60
	for i := range n {
		pod := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\nspec:\n  hostPID: true\n  containers: [{name: a, image: a:1}]\n", i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pod-%03d.yaml", i)), []byte(pod), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, scanEnv(), "", "scan", "k8s", "--checks", "host-pid", "-o", "json", dir)
	if r.code != exitError || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 1 and nothing on stderr (no progress on a pipe)", r.code, r.stderr)
	}
	var rep scanReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Files != n || len(rep.Findings) != n {
		t.Fatalf("scanned %d files with %d findings, want %d and %d", rep.Summary.Files, len(rep.Findings), n, n)
	}
	if !slices.IsSortedFunc(rep.Findings, func(a, b scanFinding) int { return strings.Compare(a.File, b.File) }) {
		t.Errorf("findings are not in the files' order")
	}
}

func TestProgress(t *testing.T) {
	a := &app{stderr: &bytes.Buffer{}}
	if p := a.startProgress(1000); p != nil {
		t.Errorf("startProgress on a buffer = %v, want none: progress only on a terminal", p)
	}
	var buf syncBuffer
	p := newProgress(&buf, 40, time.Millisecond)
	p.add(10)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "scanning 10/40 files") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	p.add(30)
	p.finish()
	out := buf.String()
	if !strings.Contains(out, "scanning 10/40 files [=======                       ]  25%") {
		t.Errorf("progress drew %q, want a quarter done", out)
	}
	if !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress output %q does not end by clearing the line", out)
	}
	var none *progress
	none.add(1)
	none.finish()
}
