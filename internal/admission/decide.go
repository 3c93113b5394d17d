package admission

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"bulwark/internal/audit"
	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

// Bounds on what a response carries. The API server may truncate warnings
// over 256 characters and long lists of them.
const (
	maxWarnings       = 20
	maxWarningLen     = 256
	maxDenyMessageLen = 4096
)

// decision is the answer to one request and its audit record.
type decision struct {
	allowed  bool
	message  string // of a denial
	warnings []string
	// record is nil for requests that are no decision about a workload:
	// other kinds, DELETE and CONNECT.
	record *audit.Admission
}

// decide evaluates one request under policy c. An error is a malformed
// request (the object does not decode, or is not what request.kind says).
func (h *Webhook) decide(c *compiled, cluster string, req *admissionv1.AdmissionRequest) (decision, error) {
	if (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || !podKind(req.Kind.Group, req.Kind.Kind) {
		return decision{allowed: true}, nil
	}
	obj, err := decodeObject(req.Object.Raw, req, "request.object")
	if err != nil {
		return decision{}, err
	}
	rec := h.record(c, cluster, req, obj)
	d := decision{allowed: true, record: rec}
	if c.exempt[rec.Namespace] {
		rec.Message = fmt.Sprintf("namespace %s is exempt", rec.Namespace)
		return d, nil
	}
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		// As the Pod Security admission plugin: an update that leaves the
		// pod template as it was (labels, replicas, an owner reference…)
		// is not evaluated again, so that workloads admitted before a
		// stricter policy can still be scaled and relabelled.
		old, err := decodeObject(req.OldObject.Raw, req, "request.oldObject")
		if err != nil {
			return decision{}, err
		}
		if sameTemplate(old, obj) {
			rec.Message = "pod template unchanged"
			return d, nil
		}
	}

	w := obj.Workload
	if w.Source.Object.Namespace == "" {
		w.Source.Object.Namespace = rec.Namespace
	}
	w.Source.Cluster = cluster
	opts := c.opts
	var warnings, ignoredNote []string
	if c.policy.IgnoreAnnotations {
		ignored, err := k8s.Ignores(obj)
		if err != nil {
			// A malformed annotation ignores nothing; say so.
			warnings = append(warnings, "bulwark: "+err.Error()+"; no check ignored")
		}
		for _, slug := range slices.Sorted(maps.Keys(ignored)) {
			opts.Skip = append(slices.Clip(opts.Skip), slug)
			ignoredNote = append(ignoredNote, fmt.Sprintf("%s (%s)", slug, ignored[slug]))
		}
	}
	rec.Findings = compliance.Apply(c.policy.Rules, w, opts)
	rules := decidingRules(c.policy.Rules, w, rec.Findings, c.checks)

	var blocked []int
	for i, f := range rec.Findings {
		if f.Effect == compliance.EffectBlock {
			blocked = append(blocked, i)
		}
	}
	enforce := c.policy.Mode == k8s.ModeEnforce
	switch {
	case len(rec.Findings) == 0:
		rec.Effect = audit.EffectAllow
	case enforce && len(blocked) > 0:
		d.allowed = false
		rec.Effect = audit.EffectBlock
		var blockers, lines []string
		for _, i := range blocked {
			blockers = appendNew(blockers, rules[i])
			lines = append(lines, describe(rec.Findings[i]))
		}
		by := "Bulwark"
		switch len(blockers) {
		case 0:
		case 1:
			by += " rule " + quoteAll(blockers)
		default:
			by += " rules " + quoteAll(blockers)
		}
		d.message = bound("denied by "+by+": "+strings.Join(lines, "; "), maxDenyMessageLen)
		rec.Message = d.message
		names := slices.Clone(blockers)
		for i, f := range rec.Findings {
			if f.Effect != compliance.EffectBlock {
				warnings = append(warnings, describe(f))
				names = appendNew(names, rules[i])
			}
		}
		rec.RuleName = strings.Join(names, ", ")
	default:
		rec.Effect = audit.EffectAlert
		var names []string
		for i, f := range rec.Findings {
			warnings = append(warnings, describe(f))
			names = appendNew(names, rules[i])
		}
		rec.RuleName = strings.Join(names, ", ")
		rec.Message = fmt.Sprintf("allowed with %s", plural(len(rec.Findings), "warning", "warnings"))
		if len(blocked) > 0 {
			rec.Message += fmt.Sprintf("; enforce mode would deny %s", plural(len(blocked), "check", "checks"))
		}
	}
	if len(ignoredNote) > 0 {
		// Who turned what off, and why, belongs in the audit.
		if rec.Message != "" {
			rec.Message += "; "
		}
		rec.Message += "ignored by annotation: " + strings.Join(ignoredNote, ", ")
	}
	d.warnings = boundWarnings(warnings)
	return d, nil
}

// record starts the audit record of a request about a workload.
func (h *Webhook) record(c *compiled, cluster string, req *admissionv1.AdmissionRequest, obj k8s.Object) *audit.Admission {
	ns := req.Namespace
	if ns == "" {
		ns = obj.Workload.Source.Object.Namespace
	}
	name := req.Name
	if name == "" {
		name = obj.Workload.Source.Object.Name // generateName for a Pod of a ReplicaSet
	}
	resource := req.Resource.Resource
	if req.SubResource != "" {
		resource += "/" + req.SubResource
	}
	dryRun := req.DryRun != nil && *req.DryRun
	return &audit.Admission{
		Time:           h.cfg.Now().UTC(),
		Operation:      string(req.Operation),
		Kind:           req.Kind.Kind,
		Resource:       resource,
		Name:           name,
		Namespace:      ns,
		Cluster:        cluster,
		Username:       req.UserInfo.Username,
		UserUID:        req.UserInfo.UID,
		UserGroups:     strings.Join(req.UserInfo.Groups, ", "),
		Effect:         audit.EffectAllow,
		Mode:           c.policy.Mode,
		UID:            string(req.UID),
		DryRun:         dryRun,
		PolicyRevision: c.revision,
		Findings:       []compliance.Finding{},
	}
}

// decodeObject decodes the object (or old object) of a request about a pod
// kind, which must be the kind the request names.
func decodeObject(raw []byte, req *admissionv1.AdmissionRequest, field string) (k8s.Object, error) {
	obj, err := k8s.DecodeObjectOf(raw, apiVersion(req.Kind.Group, req.Kind.Version), req.Kind.Kind)
	if err != nil {
		if errors.Is(err, k8s.ErrNotWorkload) {
			return k8s.Object{}, malformed("%s: %v, but request.kind is %s", field, err, gvk(req))
		}
		return k8s.Object{}, malformed("%s: %v", field, err)
	}
	o := obj.Workload.Source.Object
	if o.Kind != req.Kind.Kind || o.APIVersion != apiVersion(req.Kind.Group, req.Kind.Version) {
		return k8s.Object{}, malformed("%s is %s %s, but request.kind is %s", field, o.APIVersion, o.Kind, gvk(req))
	}
	return obj, nil
}

func apiVersion(group, version string) string {
	if group == "" {
		return version
	}
	return group + "/" + version
}

func gvk(req *admissionv1.AdmissionRequest) string {
	return apiVersion(req.Kind.Group, req.Kind.Version) + " " + req.Kind.Kind
}

// sameTemplate reports whether an update leaves the pod template's spec and
// annotations (which carry the legacy seccomp and AppArmor profiles) as they
// were.
func sameTemplate(old, cur k8s.Object) bool {
	return maps.Equal(old.Template.Annotations, cur.Template.Annotations) &&
		equality.Semantic.DeepEqual(old.Template.Spec, cur.Template.Spec)
}

// decidingRules returns, per finding, the name of the rule that gave it its
// effect, as compliance.Apply decides: a container's finding by the rule for
// that container, a pod-level one by the first rule with the strongest
// effect among the containers'.
func decidingRules(rules []compliance.Rule, w compliance.Workload, findings []compliance.Finding, checks map[string]compliance.Check) []string {
	if len(findings) == 0 {
		return nil
	}
	type decided struct {
		container string
		rule      compliance.Rule
	}
	var ds []decided
	for _, res := range w.Resources() {
		if r, ok := compliance.Decide(rules, res); ok {
			ds = append(ds, decided{res.Container, r})
		}
	}
	out := make([]string, len(findings))
	for i, f := range findings {
		check, ok := checks[f.Check]
		if !ok {
			continue
		}
		for _, d := range ds {
			if f.Container != "" && d.container != f.Container {
				continue
			}
			if d.rule.EffectFor(check) == f.Effect {
				out[i] = d.rule.Name
				break
			}
		}
	}
	return out
}

// describe renders a finding as a warning: "<id> - <title>: <paths>", the
// slug standing in for the ID of a check that has none.
func describe(f compliance.Finding) string {
	id := f.PrismaID
	if id == "" {
		id = f.Check
	}
	s := id + " - " + f.Title
	if len(f.Paths) > 0 {
		s += ": " + strings.Join(f.Paths, ", ")
	}
	return s
}

func boundWarnings(ws []string) []string {
	if len(ws) > maxWarnings {
		more := len(ws) - (maxWarnings - 1)
		ws = append(ws[:maxWarnings-1:maxWarnings-1], fmt.Sprintf("and %d more failed checks; see Bulwark's admission audit", more))
	}
	for i, w := range ws {
		ws[i] = bound(w, maxWarningLen)
	}
	return ws
}

// bound cuts s to at most n bytes, at a rune boundary, marking the cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !runeStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }

func appendNew(names []string, name string) []string {
	if name == "" || slices.Contains(names, name) {
		return names
	}
	return append(names, name)
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
