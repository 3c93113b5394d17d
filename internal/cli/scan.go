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

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
	"bulwark/internal/rego"
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

// scanKind is an input that bulwarkctl scan reads: a subcommand, the
// checks that apply to it, how its inputs are found and how one is decoded
// into what the checks evaluate. Everything else (flags, evaluation,
// threshold, reports, exit codes) is shared.
type scanKind struct {
	name          string // the subcommand: k8s, oci, docker, image, host
	use           string // its arguments: "PATH...|-"
	short         string
	long, example string
	scope         compliance.Scope // the catalog checks that apply
	what          string           // the inputs, in messages: "Kubernetes manifests"
	input         string           // one input, in JUnit's case for an unreadable one: "manifest"
	noun          string           // one thing evaluated, in the summary: "object"
	tag           string           // the SARIF rules' tag
	empty         string           // the start of the error for directories without inputs
	// host: the input is one host root, not files.
	host bool
	// args checks the arguments; nil: at least one PATH or -.
	args cobra.PositionalArgs
	// flags adds the kind's own flags.
	flags func(*cobra.Command, *scanFlags)
	// find adds the inputs under a directory named on the command line.
	find func(dir string, add func(path string)) (warnings []string, err error)
	// decode reads one input.
	decode func(in scanInput, cfg *scanConfig) decoded
}

// scanFlags are the flags of a scan as given.
type scanFlags struct {
	threshold, pssLevel, pssVersion, engine string
	checks, skip, custom                    []string
}

// scanConfig is what a scan evaluates, resolved from the flags.
type scanConfig struct {
	kind       *scanKind
	threshold  compliance.Severity
	pssLevel   string // k8s: baseline, restricted or none
	pssVersion string
	engine     string // oci: the --engine as given
	cri        bool   // findings carry CRI IDs (rules and test cases show them)
	// checks are the evaluated checks, in catalog order, then the custom
	// ones: SARIF rules and JUnit test cases.
	checks []compliance.Check
	opts   compliance.Options
	// custom evaluates the --custom-checks; nil without.
	custom *rego.Evaluator
}

// prismaID is the ID a check's findings carry in this scan.
func (cfg *scanConfig) prismaID(c compliance.Check) string { return c.PrismaID(cfg.cri) }

// displayName is "<ID> - <title>", as Prisma names a check, or the title
// alone.
func (cfg *scanConfig) displayName(c compliance.Check) string {
	if id := cfg.prismaID(c); id != "" {
		return id + " - " + c.Title
	}
	return c.Title
}

func (a *app) scanCommand() *cobra.Command {
	scan := &cobra.Command{
		Use:   "scan",
		Short: "Check configuration for compliance, offline",
		Long: `Check configuration for compliance with Bulwark's checks, offline: no Console
and no login are needed. Each input has its subcommand: Kubernetes manifests
(k8s), OCI runtime specs (oci), docker inspect output (docker), image configs
(image) and a host's files (host). They share the output formats, the severity
threshold and the exit codes; custom checks written in Rego (--custom-checks)
run on manifests, containers and images alike.`,
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
	for _, kind := range scanKinds() {
		scan.AddCommand(a.scanKindCommand(kind))
	}
	return scan
}

func scanKinds() []*scanKind {
	return []*scanKind{k8sKind(), ociKind(), dockerKind(), imageKind(), hostKind()}
}

func (a *app) scanKindCommand(kind *scanKind) *cobra.Command {
	var f scanFlags
	check := kind.args
	if check == nil {
		check = func(_ *cobra.Command, got []string) error {
			if len(got) == 0 {
				return usagef("expected PATH... (files or directories) or - for standard input")
			}
			return nil
		}
	}
	cmd := &cobra.Command{
		Use:     kind.name + " " + kind.use,
		Short:   kind.short,
		Long:    kind.long,
		Example: kind.example,
		Args:    check,
		RunE:    a.run(func(ctx context.Context, paths []string) error { return a.scan(ctx, kind, paths, f) }),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.threshold, "severity-threshold", string(compliance.SeverityHigh), "report findings of this severity or higher: critical, high, medium, low or info")
	if kind.flags != nil {
		kind.flags(cmd, &f)
	}
	fl.StringSliceVar(&f.checks, "checks", nil, "run only these checks (slugs or Prisma IDs, comma-separated)")
	fl.StringSliceVar(&f.skip, "skip", nil, "do not run these checks (slugs or Prisma IDs, comma-separated)")
	if !kind.host {
		fl.StringArrayVar(&f.custom, "custom-checks", nil, "also run the custom checks (Rego) in this directory, .rego file or exported JSON; repeatable")
	}
	return cmd
}

// checkList lists the checks that apply to the kind's inputs, for the help.
func checkList(scope compliance.Scope, cri bool) string {
	var b strings.Builder
	for _, c := range compliance.Catalog() {
		if !c.Applies(scope) || (c.External && scope != compliance.ScopeManifest) {
			continue
		}
		fmt.Fprintf(&b, "  %-20s %-5s %-9s %s\n", c.Slug, c.PrismaID(cri), c.Severity, c.Title)
	}
	return b.String()
}

// config validates the flags.
func (f scanFlags) config(ctx context.Context, kind *scanKind) (*scanConfig, error) {
	cfg := &scanConfig{kind: kind, threshold: compliance.Severity(strings.ToLower(f.threshold)), cri: kind.scope == compliance.ScopeManifest}
	if cfg.threshold.Rank() < 0 {
		return nil, usagef("--severity-threshold must be critical, high, medium, low or info, not %q", f.threshold)
	}
	if kind.scope == compliance.ScopeManifest {
		if err := f.pss(cfg); err != nil {
			return nil, err
		}
	}
	if kind.name == "oci" {
		switch f.engine {
		case "runc", "containerd", "cri-o", "docker":
			cfg.engine, cfg.cri = f.engine, f.engine != "docker"
		default:
			return nil, usagef("--engine must be runc, containerd, cri-o or docker, not %q", f.engine)
		}
	}
	if len(f.custom) > 0 {
		ev, custom, err := loadCustomChecks(ctx, f.custom)
		if err != nil {
			return nil, err
		}
		cfg.custom, cfg.opts.Custom = ev, custom
	}
	only, err := cfg.resolveChecks("--checks", f.checks)
	if err != nil {
		return nil, err
	}
	skip, err := cfg.resolveChecks("--skip", f.skip)
	if err != nil {
		return nil, err
	}
	for _, slug := range only {
		if kind.scope != compliance.ScopeManifest {
			break
		}
		if slug == k8s.CheckPSSBaseline && f.pssLevel == "none" || slug == k8s.CheckPSSRestricted && f.pssLevel != "restricted" {
			return nil, usagef("--checks %s needs --pss-level %s", slug, strings.TrimPrefix(slug, "pss-"))
		}
	}
	selected := func(c compliance.Check) bool {
		return !slices.Contains(skip, c.Slug) && (len(only) == 0 || slices.Contains(only, c.Slug))
	}
	for _, c := range compliance.Catalog() {
		if !c.Applies(kind.scope) || !selected(c) {
			continue
		}
		if c.External {
			// Only the Pod Security Standards profiles are evaluated here,
			// by the pod-security-admission adapter, at the level asked.
			switch {
			case c.Slug == k8s.CheckPSSBaseline && f.pssLevel != "none":
			case c.Slug == k8s.CheckPSSRestricted && f.pssLevel == "restricted":
			default:
				continue
			}
		}
		cfg.checks = append(cfg.checks, c)
		cfg.opts.Checks = append(cfg.opts.Checks, c.Slug)
	}
	for _, c := range cfg.opts.Custom {
		if c.Applies(kind.scope) && selected(c) {
			cfg.checks = append(cfg.checks, c)
			cfg.opts.Checks = append(cfg.opts.Checks, c.Slug)
		}
	}
	if len(cfg.checks) == 0 {
		return nil, usagef("--checks and --skip leave no check to run")
	}
	return cfg, nil
}

// resolveChecks turns slugs and Prisma IDs into slugs of checks that apply
// to the scan's inputs, custom checks included.
func (cfg *scanConfig) resolveChecks(flag string, refs []string) ([]string, error) {
	var out []string
	kind := cfg.kind
	for _, ref := range refs {
		ref = strings.TrimSpace(ref)
		if ref == "" {
			continue
		}
		var found []compliance.Check
		for _, c := range append(compliance.Catalog(), cfg.opts.Custom...) {
			if c.Slug == ref || c.DockerID == ref || c.CRIID == ref {
				found = append(found, c)
			}
		}
		if len(found) == 0 {
			return nil, usagef("%s: no check %q in the catalog ('bulwarkctl scan %s --help' lists them)", flag, ref, kind.name)
		}
		applies := false
		for _, c := range found {
			if !c.Applies(kind.scope) {
				continue
			}
			if c.External && kind.scope != compliance.ScopeManifest {
				return nil, usagef("%s: check %q is not evaluated from configuration (it needs runtime events or a person)", flag, ref)
			}
			applies = true
			out = append(out, c.Slug)
		}
		if !applies {
			return nil, usagef("%s: check %q does not apply to %s", flag, ref, kind.what)
		}
	}
	return out, nil
}

// scanInput is one input to scan.
type scanInput struct {
	name string // as reported: the path as given or found, or stdinName
	path string // "" for standard input
	data []byte // standard input, read at once
	// found: the input was found in a directory rather than named.
	found bool
}

// read returns the input's bytes.
func (in scanInput) read() ([]byte, error) {
	if in.path == "" {
		return in.data, nil
	}
	return readManifest(in.path)
}

// decoded is what one input holds.
type decoded struct {
	units    []scanUnit
	errors   []scanError
	warnings []string
	// skipped inputs are not counted: an OCI pod sandbox found in a
	// directory.
	skipped bool
}

// readError is an input that cannot be read at all.
func readError(in scanInput, err error) decoded {
	return decoded{errors: []scanError{{File: in.name, Message: err.Error()}}}
}

// scanUnit is one thing a scan evaluates: a Kubernetes object, a
// container, an image or a host.
type scanUnit struct {
	object   scanObject
	workload *compliance.Workload // or
	host     *compliance.Host
	// ignores are the checks the object's annotations ignore, with the
	// reasons.
	ignores map[string]string
	// locate says where a finding's path is written: the file ("" for the
	// input) and the line (0 when unknown).
	locate func(path string) (file string, line int)
}

// scan is bulwarkctl scan <kind>.
func (a *app) scan(ctx context.Context, kind *scanKind, paths []string, f scanFlags) error {
	cfg, err := f.config(ctx, kind)
	if err != nil {
		return err
	}
	var inputs []scanInput
	var warnings []string
	if kind.host {
		inputs, err = hostInputs(paths)
	} else {
		inputs, warnings, err = a.scanInputs(kind, paths)
	}
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "bulwarkctl: warning: %s\n", w)
	}
	if len(inputs) == 0 {
		return &codeError{code: exitUsage, msg: kind.empty + " in " + strings.Join(paths, ", ")}
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

// scanInputs lists the inputs to scan: the files named, the inputs the
// kind finds under the directories named, standard input for "-".
func (a *app) scanInputs(kind *scanKind, paths []string) (inputs []scanInput, warnings []string, err error) {
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
		w, err := kind.find(p, func(path string) { add(scanInput{name: path, path: path, found: path != p}) })
		if err != nil {
			return nil, nil, &codeError{code: exitUsage, msg: fmt.Sprintf("scan %s: %v", p, err)}
		}
		warnings = append(warnings, w...)
	}
	return inputs, warnings, nil
}

// findFiles walks dir for the files whose extension is one of exts,
// skipping hidden directories. Symbolic links to files count; links to
// directories are not followed (no cycles).
func findFiles(dir string, add func(string), exts ...string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if slices.Contains(exts, strings.ToLower(filepath.Ext(path))) &&
			(d.Type().IsRegular() || (d.Type()&fs.ModeSymlink != 0 && fileExists(path))) {
			add(path)
		}
		return nil
	})
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// scannedFile is the result of one input. Findings below the threshold
// are only counted, so that a large scan keeps little in memory.
type scannedFile struct {
	name     string
	objects  []scannedObject
	below    int
	errors   []scanError
	warnings []string
	skipped  bool
}

// scannedObject is one object and its findings at or above the threshold.
type scannedObject struct {
	object   scanObject
	findings []scannedFinding
}

type scannedFinding struct {
	compliance.Finding
	// locs are where the paths are written; one, the object's, when the
	// finding has no path.
	locs       []scanLoc
	suppressed string // the ignore annotation's reason
}

// scanLoc is a place in a file; line 0 when the file does not hold the
// key (a host file's mode, an option left unset).
type scanLoc struct {
	file string
	line int
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
				out[i] = scanFile(ctx, inputs[i], cfg)
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

// scanFile reads, decodes and evaluates one input.
func scanFile(ctx context.Context, in scanInput, cfg *scanConfig) scannedFile {
	d := cfg.kind.decode(in, cfg)
	res := scannedFile{name: in.name, errors: d.errors, warnings: d.warnings, skipped: d.skipped}
	for _, u := range d.units {
		so := scannedObject{object: u.object}
		findings, errs := cfg.evaluate(ctx, u)
		for _, err := range errs {
			res.errors = append(res.errors, scanError{File: in.name, Line: u.object.Line, Message: err.Error()})
		}
		for _, f := range findings {
			if f.Severity.Rank() < cfg.threshold.Rank() {
				res.below++
				continue
			}
			sf := scannedFinding{Finding: f, suppressed: u.ignores[f.Check]}
			for _, p := range f.Paths {
				file, line := u.locate(p)
				if file == "" {
					file = in.name
				}
				sf.locs = append(sf.locs, scanLoc{file: file, line: line})
			}
			if len(sf.locs) == 0 {
				sf.locs = []scanLoc{{file: in.name, line: u.object.Line}}
			}
			so.findings = append(so.findings, sf)
		}
		res.objects = append(res.objects, so)
	}
	slices.Sort(res.warnings)
	return res
}

// evaluate runs the selected checks on one unit. The errors are custom
// checks that failed on it.
func (cfg *scanConfig) evaluate(ctx context.Context, u scanUnit) ([]compliance.Finding, []error) {
	if u.host != nil {
		var out []compliance.Finding
		for _, f := range compliance.EvaluateHost(*u.host) {
			if slices.Contains(cfg.opts.Checks, f.Check) {
				out = append(out, f)
			}
		}
		return out, nil
	}
	opts := cfg.opts
	var errs []error
	if cfg.custom != nil {
		opts.Evaluators = append(slices.Clip(opts.Evaluators), &customEvaluator{ctx: ctx, ev: cfg.custom, errs: &errs})
	}
	return compliance.Evaluate(*u.workload, opts), errs
}

// customEvaluator runs the custom checks on one workload for
// compliance.Evaluate, keeping the errors of those that fail, which
// Evaluator has no way to return. It lives for one call.
type customEvaluator struct {
	ctx  context.Context //nolint:containedctx // one Evaluate call's
	ev   *rego.Evaluator
	errs *[]error
}

func (c *customEvaluator) Evaluate(w compliance.Workload) []compliance.Finding {
	fs, err := c.ev.EvaluateContext(c.ctx, w)
	*c.errs = append(*c.errs, unjoin(err)...)
	return fs
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
