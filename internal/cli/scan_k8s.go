package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

const scanK8sLong = `Scan Kubernetes manifests for compliance, offline: no Console and no login are
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

` + scanCustomHelp + `
Output (-o): table (default), json, sarif (SARIF 2.1.0, for code scanning)
or junit (one test suite per file, a test case per object and check).

Exit codes: 0 no finding at or above the threshold, 1 findings at or above
it, 2 bad flags or a manifest that cannot be read (the error names the file
and line).

Checks (slug, Prisma ID, severity):
`

// scanCustomHelp is the help of --custom-checks, shared by the kinds that
// take it.
const scanCustomHelp = `--custom-checks PATH adds custom checks written in Rego (see
docs/custom-compliance.md): a directory of *.rego files (*_test.rego left
out), one .rego file, or the JSON that 'bulwarkctl custom-compliance list -o
json' exports. A .rego file gives its check's ID (9000-9999; the next free one
when left out), severity and title in a METADATA comment on its package, or in
a sidecar file of the same name (.yaml, .yml or .json) with the keys id, name,
title, severity, description and remediation:
  # METADATA
  # title: Images come from our registries
  # custom:
  #   id: 9001
  #   severity: high
  package acme.no_docker_hub
--checks and --skip take their names and IDs too.
`

const scanK8sExample = `  # A directory of manifests; exit 1 on anything critical or high
  bulwarkctl scan k8s deploy/

  # Everything from low up, with the restricted profile, for GitHub code scanning
  bulwarkctl scan k8s --severity-threshold low --pss-level restricted -o sarif k8s/ > bulwark.sarif

  # A rendered Helm chart, as a JUnit report for the CI
  helm template ./chart | bulwarkctl scan k8s -o junit - > bulwark-junit.xml

  # Only some checks, by slug or Prisma ID
  bulwarkctl scan k8s --checks privileged,host-pid,5059 app.yaml

  # With the team's own checks, written in Rego
  bulwarkctl scan k8s --custom-checks policy/ deploy/`

func k8sKind() *scanKind {
	return &scanKind{
		name:    "k8s",
		use:     "PATH...|-",
		short:   "Scan Kubernetes manifests: the catalog's checks and the Pod Security Standards",
		long:    scanK8sLong + checkList(compliance.ScopeManifest, true),
		example: scanK8sExample,
		scope:   compliance.ScopeManifest,
		what:    "Kubernetes manifests",
		input:   "manifest",
		noun:    "object",
		tag:     "kubernetes",
		empty:   "no *.yaml, *.yml or *.json files",
		find:    findManifests,
		decode:  decodeManifests,
		flags: func(cmd *cobra.Command, f *scanFlags) {
			fl := cmd.Flags()
			fl.StringVar(&f.pssLevel, "pss-level", "baseline", "Pod Security Standards profile: baseline, restricted or none")
			fl.StringVar(&f.pssVersion, "pss-version", "latest", "Pod Security Standards version: latest or v1.N")
		},
	}
}

// pss validates the Pod Security Standards flags and adds the profile's
// evaluator.
func (f scanFlags) pss(cfg *scanConfig) error {
	cfg.pssLevel, cfg.pssVersion = f.pssLevel, f.pssVersion
	version, err := k8s.ParsePSSVersion(f.pssVersion)
	if err != nil {
		return usagef("--pss-version: %v", err)
	}
	switch f.pssLevel {
	case "baseline", "restricted":
		cfg.opts.Evaluators = []compliance.Evaluator{k8s.PSS(psaapi.Level(f.pssLevel), version)}
	case "none":
	default:
		return usagef("--pss-level must be baseline, restricted or none, not %q", f.pssLevel)
	}
	return nil
}

// findManifests finds the manifests under dir, skipping the templates of
// Helm charts, which must be rendered.
func findManifests(dir string, add func(string)) (warnings []string, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
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
				add(path)
			}
		}
		return nil
	})
	return warnings, err
}

// decodeManifests reads the pod-bearing objects of a manifest file and
// their ignore annotations.
func decodeManifests(in scanInput, cfg *scanConfig) decoded {
	data, err := in.read()
	if err != nil {
		return readError(in, err)
	}
	var d decoded
	objs, err := k8s.Decode(in.name, data)
	for _, e := range unjoin(err) {
		se := scanError{File: in.name, Message: e.Error()}
		var pe *k8s.ParseError
		if errors.As(e, &pe) {
			se.Line, se.Message = pe.Line, pe.Msg
		}
		d.errors = append(d.errors, se)
	}
	for _, o := range objs {
		ignores, err := k8s.Ignores(o)
		var pe *k8s.ParseError
		if errors.As(err, &pe) {
			d.errors = append(d.errors, scanError{File: in.name, Line: pe.Line, Message: pe.Msg})
		}
		for slug := range ignores {
			if _, ok := compliance.Lookup(slug); !ok && !slices.ContainsFunc(cfg.opts.Custom, func(c compliance.Check) bool { return c.Slug == slug }) {
				d.warnings = append(d.warnings, fmt.Sprintf("%s:%d: %s%s names no check in the catalog", in.name, o.Workload.Source.Line, k8s.IgnoreAnnotation, slug))
			}
		}
		src := o.Workload.Source
		d.units = append(d.units, scanUnit{
			object: scanObject{APIVersion: src.Object.APIVersion, Kind: src.Object.Kind, Namespace: src.Object.Namespace,
				Name: src.Object.Name, Line: src.Line},
			workload: &o.Workload,
			ignores:  ignores,
			locate:   func(path string) (string, int) { return "", o.Line(path) },
		})
	}
	return d
}
