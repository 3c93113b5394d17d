package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

// Output formats. The root's --output knows table and json; scan also
// writes SARIF and JUnit.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputSARIF = "sarif"
	outputJUnit = "junit"
)

// maxManifestSize bounds a file or stdin that scan reads.
const maxManifestSize = 64 << 20

// stdinName names standard input in reports.
const stdinName = "<stdin>"

// scanFlags are the flags of bulwarkctl scan k8s as given.
type scanFlags struct {
	threshold, pssLevel, pssVersion string
	checks, skip                    []string
}

// scanConfig is what a scan evaluates, resolved from the flags.
type scanConfig struct {
	threshold  compliance.Severity
	pssLevel   string // baseline, restricted or none
	pssVersion string
	// checks are the evaluated checks, in catalog order: SARIF rules and
	// JUnit test cases.
	checks []compliance.Check
	opts   compliance.Options
}

const scanLong = `Scan Kubernetes manifests for compliance, offline: no Console and no login are
needed. PATH is a file or a directory (its *.yaml, *.yml and *.json files,
recursively, skipping hidden directories and the templates of Helm charts,
which must be rendered first); - reads standard input.

Files hold any number of YAML documents or JSON objects, v1 Lists and typed
lists, read as kubectl reads them. Pods and pod controllers are checked:
Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob,
ReplicationController, PodTemplate; other kinds are skipped.

Every check of the catalog that applies to manifests runs, and the Pod
Security Standards profile --pss-level (baseline, restricted or none) at
--pss-version (latest or v1.N), evaluated by Kubernetes' own
pod-security-admission: pss-baseline and pss-restricted findings, one per
failed control. --checks and --skip take check slugs or Prisma IDs,
comma-separated.

Findings below --severity-threshold are not reported. The default, high,
matches the Console's default rule, which alerts on critical and high.

A check is ignored on one object by an annotation on it (or on its pod
template) that gives the reason, which is required:
  bulwark.dev/ignore-check.<check>: "<reason>"
Ignored findings are listed as suppressed in JSON and SARIF, skipped in JUnit
and counted in the table.

Output (-o): table (default), json, sarif (SARIF 2.1.0, for code scanning)
or junit (one test suite per file, a test case per object and check).

Exit codes: 0 no finding at or above the threshold, 1 findings at or above
it, 2 bad flags or a manifest that cannot be read (the error names the file
and line).

Checks (slug, Prisma ID, severity):
`

const scanExample = `  # A directory of manifests; exit 1 on anything critical or high
  bulwarkctl scan k8s deploy/

  # Everything from low up, with the restricted profile, for GitHub code scanning
  bulwarkctl scan k8s --severity-threshold low --pss-level restricted -o sarif k8s/ > bulwark.sarif

  # A rendered Helm chart, as a JUnit report for the CI
  helm template ./chart | bulwarkctl scan k8s -o junit - > bulwark-junit.xml

  # Only some checks, by slug or Prisma ID
  bulwarkctl scan k8s --checks privileged,host-pid,5059 app.yaml`

func (a *app) scanCommand() *cobra.Command {
	scan := &cobra.Command{
		Use:   "scan",
		Short: "Check configuration for compliance, offline",
		Long: `Check configuration for compliance with Bulwark's checks, offline: no Console
and no login are needed.`,
		Args: args(),
		// Scans need no Console: this replaces the root's resolution of the
		// Console settings, and accepts the scan's own output formats.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch a.output {
			case outputTable, outputJSON, outputSARIF, outputJUnit:
				return nil
			}
			return usagef("--output must be table, json, sarif or junit, not %q", a.output)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var f scanFlags
	k := &cobra.Command{
		Use:     "k8s PATH...|-",
		Short:   "Scan Kubernetes manifests: the catalog's checks and the Pod Security Standards",
		Long:    scanLong + checkList(),
		Example: scanExample,
		Args: func(_ *cobra.Command, got []string) error {
			if len(got) == 0 {
				return usagef("expected PATH... (files or directories) or - for standard input")
			}
			return nil
		},
		RunE: a.run(func(ctx context.Context, paths []string) error { return a.scanK8s(ctx, paths, f) }),
	}
	fl := k.Flags()
	fl.StringVar(&f.threshold, "severity-threshold", string(compliance.SeverityHigh), "report findings of this severity or higher: critical, high, medium, low or info")
	fl.StringVar(&f.pssLevel, "pss-level", "baseline", "Pod Security Standards profile: baseline, restricted or none")
	fl.StringVar(&f.pssVersion, "pss-version", "latest", "Pod Security Standards version: latest or v1.N")
	fl.StringSliceVar(&f.checks, "checks", nil, "run only these checks (slugs or Prisma IDs, comma-separated)")
	fl.StringSliceVar(&f.skip, "skip", nil, "do not run these checks (slugs or Prisma IDs, comma-separated)")
	scan.AddCommand(k)
	return scan
}

// checkList lists the checks that apply to manifests, for the help.
func checkList() string {
	var b strings.Builder
	for _, c := range compliance.Catalog() {
		if !c.Applies(compliance.ScopeManifest) {
			continue
		}
		fmt.Fprintf(&b, "  %-20s %-5s %-9s %s\n", c.Slug, c.CRIID, c.Severity, c.Title)
	}
	return b.String()
}

// config validates the flags.
func (f scanFlags) config() (*scanConfig, error) {
	cfg := &scanConfig{threshold: compliance.Severity(strings.ToLower(f.threshold)), pssLevel: f.pssLevel, pssVersion: f.pssVersion}
	if cfg.threshold.Rank() < 0 {
		return nil, usagef("--severity-threshold must be critical, high, medium, low or info, not %q", f.threshold)
	}
	version, err := k8s.ParsePSSVersion(f.pssVersion)
	if err != nil {
		return nil, usagef("--pss-version: %v", err)
	}
	switch f.pssLevel {
	case "baseline", "restricted":
		cfg.opts.Evaluators = []compliance.Evaluator{k8s.PSS(psaapi.Level(f.pssLevel), version)}
	case "none":
	default:
		return nil, usagef("--pss-level must be baseline, restricted or none, not %q", f.pssLevel)
	}
	only, err := resolveChecks("--checks", f.checks)
	if err != nil {
		return nil, err
	}
	skip, err := resolveChecks("--skip", f.skip)
	if err != nil {
		return nil, err
	}
	for _, slug := range only {
		if slug == k8s.CheckPSSBaseline && f.pssLevel == "none" || slug == k8s.CheckPSSRestricted && f.pssLevel != "restricted" {
			return nil, usagef("--checks %s needs --pss-level %s", slug, strings.TrimPrefix(slug, "pss-"))
		}
	}
	for _, c := range compliance.Catalog() {
		if !c.Applies(compliance.ScopeManifest) || slices.Contains(skip, c.Slug) || (len(only) > 0 && !slices.Contains(only, c.Slug)) {
			continue
		}
		switch c.Slug {
		case k8s.CheckPSSBaseline:
			if f.pssLevel == "none" {
				continue
			}
		case k8s.CheckPSSRestricted:
			if f.pssLevel != "restricted" {
				continue
			}
		}
		cfg.checks = append(cfg.checks, c)
		cfg.opts.Checks = append(cfg.opts.Checks, c.Slug)
	}
	if len(cfg.checks) == 0 {
		return nil, usagef("--checks and --skip leave no check to run")
	}
	return cfg, nil
}

// resolveChecks turns slugs and Prisma IDs into slugs of checks that apply
// to manifests.
func resolveChecks(flag string, refs []string) ([]string, error) {
	var out []string
	for _, ref := range refs {
		ref = strings.TrimSpace(ref)
		if ref == "" {
			continue
		}
		var found []compliance.Check
		for _, c := range compliance.Catalog() {
			if c.Slug == ref || c.DockerID == ref || c.CRIID == ref {
				found = append(found, c)
			}
		}
		if len(found) == 0 {
			return nil, usagef("%s: no check %q in the catalog ('bulwarkctl scan k8s --help' lists them)", flag, ref)
		}
		applies := false
		for _, c := range found {
			if c.Applies(compliance.ScopeManifest) {
				applies = true
				out = append(out, c.Slug)
			}
		}
		if !applies {
			return nil, usagef("%s: check %q does not apply to Kubernetes manifests", flag, ref)
		}
	}
	return out, nil
}

// scanInput is one file to scan.
type scanInput struct {
	name string // as reported: the path as given or found, or stdinName
	path string // "" for standard input
	data []byte // standard input, read at once
}

// scanK8s is bulwarkctl scan k8s.
func (a *app) scanK8s(ctx context.Context, paths []string, f scanFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	inputs, warnings, err := a.scanInputs(paths)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "bulwarkctl: warning: %s\n", w)
	}
	if len(inputs) == 0 {
		return &codeError{code: exitUsage, msg: "no *.yaml, *.yml or *.json files in " + strings.Join(paths, ", ")}
	}
	files, err := a.scanFiles(ctx, inputs, cfg)
	if err != nil {
		return err
	}
	rep := newScanReport(files, cfg, a.version)
	for _, w := range rep.warnings {
		fmt.Fprintf(a.stderr, "bulwarkctl: warning: %s\n", w)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(a.stderr, "bulwarkctl: %s\n", e)
	}
	switch a.output {
	case outputJSON:
		err = writeScanJSON(a.stdout, rep)
	case outputSARIF:
		err = writeSARIF(a.stdout, rep, cfg)
	case outputJUnit:
		err = writeJUnit(a.stdout, rep, cfg)
	default:
		err = writeScanTable(a.stdout, rep)
	}
	if err != nil {
		return err
	}
	switch {
	case len(rep.Errors) > 0:
		return &codeError{code: exitUsage}
	case rep.Summary.Failing > 0:
		return &codeError{code: exitError}
	}
	return nil
}

// scanInputs lists the files to scan: the files named, the manifests under
// the directories named, standard input for "-".
func (a *app) scanInputs(paths []string) (inputs []scanInput, warnings []string, err error) {
	seen := map[string]bool{}
	add := func(in scanInput) {
		if !seen[in.name] {
			seen[in.name] = true
			inputs = append(inputs, in)
		}
	}
	for _, p := range paths {
		if p == "-" {
			if seen[stdinName] {
				return nil, nil, usagef("- (standard input) is given twice")
			}
			data, err := io.ReadAll(io.LimitReader(a.stdin, maxManifestSize+1))
			if err != nil {
				return nil, nil, &codeError{code: exitUsage, msg: fmt.Sprintf("read standard input: %v", err)}
			}
			if len(data) > maxManifestSize {
				return nil, nil, &codeError{code: exitUsage, msg: fmt.Sprintf("standard input is larger than %d MiB", maxManifestSize>>20)}
			}
			add(scanInput{name: stdinName, data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nil, &codeError{code: exitUsage, msg: fmt.Sprintf("scan %s: %v", p, cause(err))}
		}
		if !fi.IsDir() {
			add(scanInput{name: p, path: p})
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				if d.Name() == "templates" && fileExists(filepath.Join(filepath.Dir(path), "Chart.yaml")) {
					warnings = append(warnings, fmt.Sprintf("skipping %s: Helm templates must be rendered first (helm template %s | bulwarkctl scan k8s -)", path, filepath.Dir(path)))
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				// Symbolic links to files count; links to directories are
				// not followed (no cycles).
				if d.Type().IsRegular() || (d.Type()&fs.ModeSymlink != 0 && fileExists(path)) {
					add(scanInput{name: path, path: path})
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, &codeError{code: exitUsage, msg: fmt.Sprintf("scan %s: %v", p, err)}
		}
	}
	return inputs, warnings, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// scannedFile is the result of one file. Findings below the threshold are
// only counted, so that a large scan keeps little in memory.
type scannedFile struct {
	name     string
	objects  []scannedObject
	below    int
	errors   []scanError
	warnings []string
}

// scannedObject is one object and its findings at or above the threshold.
type scannedObject struct {
	source   compliance.Source
	findings []scannedFinding
}

type scannedFinding struct {
	compliance.Finding
	// lines are where the paths are written; one line, the object's, when
	// the finding has no path.
	lines      []int
	suppressed string // the ignore annotation's reason
}

// scanError is an input that cannot be read, at a line when known.
type scanError struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (e scanError) String() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return e.File + ": " + e.Message
}

// scanFiles scans the inputs on every CPU, keeping their order, with a
// progress bar on a terminal.
func (a *app) scanFiles(ctx context.Context, inputs []scanInput, cfg *scanConfig) ([]scannedFile, error) {
	out := make([]scannedFile, len(inputs))
	prog := a.startProgress(len(inputs))
	defer prog.finish()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(inputs)) {
		wg.Go(func() {
			for i := range jobs {
				out[i] = scanFile(inputs[i], cfg)
				prog.add(1)
			}
		})
	}
	var err error
feed:
	for i := range inputs {
		select {
		case jobs <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return out, err
}

// scanFile reads, decodes and evaluates one file.
func scanFile(in scanInput, cfg *scanConfig) scannedFile {
	res := scannedFile{name: in.name}
	data := in.data
	if in.path != "" {
		var err error
		if data, err = readManifest(in.path); err != nil {
			res.errors = append(res.errors, scanError{File: in.name, Message: err.Error()})
			return res
		}
	}
	objs, err := k8s.Decode(in.name, data)
	for _, e := range unjoin(err) {
		se := scanError{File: in.name, Message: e.Error()}
		var pe *k8s.ParseError
		if errors.As(e, &pe) {
			se.Line, se.Message = pe.Line, pe.Msg
		}
		res.errors = append(res.errors, se)
	}
	for _, o := range objs {
		ignores, err := k8s.Ignores(o)
		var pe *k8s.ParseError
		if errors.As(err, &pe) {
			res.errors = append(res.errors, scanError{File: in.name, Line: pe.Line, Message: pe.Msg})
		}
		for slug := range ignores {
			if _, ok := compliance.Lookup(slug); !ok {
				res.warnings = append(res.warnings, fmt.Sprintf("%s:%d: %s%s names no check in the catalog", in.name, o.Workload.Source.Line, k8s.IgnoreAnnotation, slug))
			}
		}
		so := scannedObject{source: o.Workload.Source}
		for _, f := range compliance.Evaluate(o.Workload, cfg.opts) {
			if f.Severity.Rank() < cfg.threshold.Rank() {
				res.below++
				continue
			}
			sf := scannedFinding{Finding: f, suppressed: ignores[f.Check]}
			for _, p := range f.Paths {
				sf.lines = append(sf.lines, o.Line(p))
			}
			if len(sf.lines) == 0 {
				sf.lines = []int{o.Workload.Source.Line}
			}
			so.findings = append(so.findings, sf)
		}
		res.objects = append(res.objects, so)
	}
	slices.Sort(res.warnings)
	return res
}

func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", cause(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("larger than %d MiB", maxManifestSize>>20)
	}
	return data, nil
}

// cause drops the path from an *fs.PathError: the report names the file.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// unjoin splits an errors.Join.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // splitting errors.Join
		return j.Unwrap()
	}
	return []error{err}
}
