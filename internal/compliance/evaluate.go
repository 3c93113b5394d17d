package compliance

import (
	"slices"
	"strconv"
	"strings"
)

// Options select what Evaluate checks.
type Options struct {
	// Checks are the slugs to evaluate; nil or empty means all.
	Checks []string
	// Skip are slugs not to evaluate.
	Skip []string
	// AllowedSysctls extend the Pod Security Standards' safe sysctls (the
	// newest list) for the sysctls check.
	AllowedSysctls []string
	// Evaluators add findings that this package cannot compute itself: the
	// Pod Security Standards profiles (k8s adapter), custom checks written in
	// Rego. Their findings pass through Checks and Skip like the catalog's.
	Evaluators []Evaluator
	// Custom are user-defined checks (their findings come from Evaluators);
	// rules and policies may name them like the catalog's checks.
	Custom []Check
}

// Evaluator computes findings for a workload outside the catalog's own
// evaluation.
type Evaluator interface {
	Evaluate(Workload) []Finding
}

// lookup finds a check in the catalog or among the custom checks.
func (o Options) lookup(slug string) (Check, bool) {
	if c, ok := Lookup(slug); ok {
		return c, true
	}
	i := slices.IndexFunc(o.Custom, func(c Check) bool { return c.Slug == slug })
	if i < 0 {
		return Check{}, false
	}
	return o.Custom[i], true
}

func (o Options) selects(slug string) bool {
	if slices.Contains(o.Skip, slug) {
		return false
	}
	return len(o.Checks) == 0 || slices.Contains(o.Checks, slug)
}

// Evaluate runs the selected workload checks on w and returns the findings
// in catalog order, then those of opts.Evaluators. External checks (PSS
// profiles, exec audits, manual items) are not evaluated here.
func Evaluate(w Workload, opts Options) []Finding {
	e := &env{w: &w, opts: &opts, cri: w.RuntimeIsCRI()}
	e.index()
	cat := catalog()
	for i := range cat {
		c := &cat[i] // read only; a copy per check would escape to the heap
		if c.eval == nil || c.External || !opts.selects(c.Slug) {
			continue
		}
		e.check = c
		c.eval(e)
	}
	for _, ev := range opts.Evaluators {
		for _, f := range ev.Evaluate(w) {
			if opts.selects(f.Check) {
				e.out = append(e.out, f)
			}
		}
	}
	return e.out
}

// env is one evaluation: the workload, the check that runs and the findings.
type env struct {
	w     *Workload
	opts  *Options
	cri   bool
	check *Check
	out   []Finding
	ctrs  []ctr
}

// ctr is a container with its resolved field path.
type ctr struct {
	*Container
	path string
}

func (c ctr) at(field string) string { return join(c.path, field) }
func (c ctr) sc(field string) string { return c.at("securityContext." + field) }

func (e *env) index() {
	p := e.w.Pod
	if p == nil {
		return
	}
	n := map[ContainerKind]int{}
	for i := range p.Containers {
		c := &p.Containers[i]
		path := c.Path
		if path == "" {
			path = ContainerPath(p.Path, c.Kind, n[c.Kind])
		}
		n[c.Kind]++
		e.ctrs = append(e.ctrs, ctr{c, path})
	}
}

// pod returns the pod spec of a manifest, nil for other inputs.
func (e *env) pod() *Pod { return e.w.Pod }

// runtime returns the runtime facts of a container, nil for other inputs.
func (e *env) runtime() *Runtime {
	if e.w.Source.Kind == SourceImage {
		return nil
	}
	return e.w.Runtime
}

// image returns the facts of an image config, nil for other inputs.
func (e *env) image() *Runtime {
	if e.w.Source.Kind != SourceImage {
		return nil
	}
	return e.w.Runtime
}

func (e *env) podPath(field string) string { return join(orDefault(e.w.Pod.Path, "spec"), field) }

func (e *env) metaPath(field string) string {
	mp := e.w.Pod.MetaPath
	if mp == "" {
		pp := orDefault(e.w.Pod.Path, "spec")
		if i := strings.LastIndexByte(pp, '.'); i >= 0 {
			mp = pp[:i] + ".metadata"
		} else {
			mp = "metadata"
		}
	}
	return join(mp, field)
}

func annotationPath(key string) string { return "annotations[" + strconv.Quote(key) + "]" }

func (e *env) report(container, msg string, paths ...string) {
	e.reportSev(e.check.Severity, container, msg, paths...)
}

func (e *env) reportSev(sev Severity, container, msg string, paths ...string) {
	var ps []string
	for _, p := range paths {
		if p != "" && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	e.out = append(e.out, Finding{
		Check:     e.check.Slug,
		PrismaID:  e.check.PrismaID(e.cri),
		Severity:  sev,
		Title:     e.check.Title,
		Message:   msg,
		Paths:     ps,
		Container: container,
	})
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// orKey returns key, or def when the normalizer did not record one.
func orKey(key, def string) string { return orDefault(key, def) }
