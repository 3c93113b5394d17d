package compliance

import (
	"slices"
	"strconv"

	"bulwark/internal/collection"
)

// Effect is what a rule does with a failed check.
type Effect string

// The effects, weakest first. EffectDefault in Rule.Effect keeps each
// check's own default (Check.DefaultEffect).
const (
	EffectDefault Effect = ""
	EffectIgnore  Effect = "ignore"
	EffectAlert   Effect = "alert"
	EffectBlock   Effect = "block"
)

func (e Effect) rank() int {
	switch e {
	case EffectAlert:
		return 1
	case EffectBlock:
		return 2
	}
	return 0
}

// Collection is collection.Collection, shared by every policy type; the
// name keeps compliance's API as it was.
type Collection = collection.Collection

// Resource is collection.Resource.
type Resource = collection.Resource

// Glob reports whether s matches pattern ("*" any string, slashes
// included; "?" one character); see collection.Glob.
func Glob(pattern, s string) bool { return collection.Glob(pattern, s) }

// Rule is one compliance rule. Rules are ordered; the first enabled rule
// whose collections match a resource decides what happens to it.
type Rule struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled,omitempty"`
	// Collections scope the rule; the rule matches a resource in any of
	// them. No collections means every resource.
	Collections []Collection `json:"collections,omitempty"`
	// Effect applies to every check not listed in Checks; EffectDefault
	// keeps each check's default effect (alert on critical and high).
	Effect Effect `json:"effect,omitempty"`
	// Checks override the effect per check slug.
	Checks map[string]Effect `json:"checks,omitempty"`
	// Condition is Prisma's way of enabling checks: when set, the listed
	// checks alert (or block) and every other check is ignored. Checks
	// still overrides it per slug.
	Condition *Condition `json:"condition,omitempty"`
	// FailClosed refuses a container when the Defender cannot be asked in
	// time (the runc shim); by default the shim fails open.
	FailClosed bool `json:"failClosed,omitempty"`
	// Notes, Owner and Modified are kept as the user wrote them (Prisma
	// clients send them back).
	Notes    string `json:"notes,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Modified string `json:"modified,omitempty"`
}

// Condition lists the checks a rule enables, in Prisma's shape
// (`condition.vulnerabilities`, a historical name for compliance checks too).
type Condition struct {
	Checks []CheckRef `json:"vulnerabilities"`
}

// CheckRef names one check of a Condition: by Prisma ID (Docker or CRI,
// 5515 or 515) as Prisma clients do, or by slug for checks that have no
// Prisma ID. Block turns the alert into a block.
type CheckRef struct {
	ID    int    `json:"id,omitempty"`
	Check string `json:"check,omitempty"`
	Block bool   `json:"block,omitempty"`
	// MinSeverity is accepted as Prisma's documented examples send it; it
	// only matters to Prisma's vulnerability-count checks, which Bulwark's
	// compliance catalog does not have, so it changes nothing here.
	MinSeverity int `json:"minSeverity,omitempty"`
}

// Matches reports whether the reference names check c.
func (r CheckRef) Matches(c Check) bool {
	if r.Check != "" {
		return r.Check == c.Slug
	}
	id := strconv.Itoa(r.ID)
	return r.ID != 0 && (id == c.DockerID || id == c.CRIID)
}

// Matches reports whether the rule is enabled and scopes r.
func (r Rule) Matches(res Resource) bool {
	if r.Disabled {
		return false
	}
	return collection.Any(r.Collections, res)
}

// EffectFor is what the rule does when check c fails.
func (r Rule) EffectFor(c Check) Effect {
	if e, ok := r.Checks[c.Slug]; ok && e != EffectDefault {
		return e
	}
	if r.Condition != nil {
		i := slices.IndexFunc(r.Condition.Checks, func(ref CheckRef) bool { return ref.Matches(c) })
		switch {
		case i < 0:
			return EffectIgnore
		case r.Condition.Checks[i].Block:
			return EffectBlock
		}
		return EffectAlert
	}
	if r.Effect != EffectDefault {
		return r.Effect
	}
	return c.DefaultEffect()
}

// Decide returns the first enabled rule whose collections match res
// (Prisma semantics), and false when none does.
func Decide(rules []Rule, res Resource) (Rule, bool) {
	for _, r := range rules {
		if r.Matches(res) {
			return r, true
		}
	}
	return Rule{}, false
}

// Names of the built-in rules.
const (
	RuleIgnoreBulwark = "Default - ignore Bulwark components"
	RuleDefaultAlert  = "Default - alert on critical and high"
)

// DefaultRules are the built-in compliance rules, in order: Bulwark's own
// components are ignored (the Defender runs with hostPID and hostNetwork on
// purpose), then every other resource alerts on critical and high checks.
func DefaultRules() []Rule {
	return []Rule{
		{
			Name: RuleIgnoreBulwark,
			Collections: []Collection{
				{Name: "Bulwark images", Images: []string{"*bulwark-defender*", "*bulwark/defender*", "*bulwark-console*", "*bulwark/console*"}},
				{Name: "Bulwark containers", Containers: []string{"bulwark-defender*", "bulwark-console*"}},
			},
			Effect: EffectIgnore,
		},
		{
			Name:        RuleDefaultAlert,
			Collections: []Collection{{Name: "All", Images: []string{"*"}}},
		},
	}
}

// Resources are what collections are matched against for w: one per
// container of a manifest (or one for a pod without containers), one for a
// runtime container or an image.
func (w Workload) Resources() []Resource {
	base := Resource{
		Host:      w.Source.Host,
		Namespace: w.Source.Object.Namespace,
		Cluster:   w.Source.Cluster,
		Labels:    w.Source.Labels,
	}
	var out []Resource
	if w.Pod != nil {
		for _, c := range w.Pod.Containers {
			r := base
			r.Image, r.Container = c.Image, c.Name
			out = append(out, r)
		}
	}
	if w.Runtime != nil {
		r := base
		r.Image, r.Container = w.Runtime.Image.Value, w.Runtime.Name
		out = append(out, r)
	}
	if len(out) == 0 {
		out = append(out, base)
	}
	return out
}

// Apply evaluates w and keeps the findings that the rules deciding for its
// resources do not ignore, with Finding.Effect set. A container's finding is
// decided by the rule for that container; a pod-level finding (no
// container) concerns every container and takes the strongest effect.
func Apply(rules []Rule, w Workload, opts Options) []Finding {
	findings := Evaluate(w, opts)
	if len(findings) == 0 {
		return nil
	}
	type decided struct {
		res  Resource
		rule Rule
		ok   bool
	}
	var ds []decided
	for _, res := range w.Resources() {
		rule, ok := Decide(rules, res)
		ds = append(ds, decided{res, rule, ok})
	}
	var out []Finding
	for _, f := range findings {
		c, ok := opts.lookup(f.Check)
		if !ok {
			continue
		}
		effect := EffectIgnore
		for _, d := range ds {
			if !d.ok || (f.Container != "" && d.res.Container != f.Container) {
				continue
			}
			if e := d.rule.EffectFor(c); e.rank() > effect.rank() {
				effect = e
			}
		}
		if effect != EffectIgnore {
			f.Effect = effect
			out = append(out, f)
		}
	}
	return out
}

// ApplyHost evaluates h and keeps the findings that the rule deciding for
// the host does not ignore, with Finding.Effect set.
func ApplyHost(rules []Rule, h Host) []Finding {
	rule, ok := Decide(rules, Resource{Host: h.Name})
	if !ok {
		return nil
	}
	var out []Finding
	for _, f := range EvaluateHost(h) {
		c, _ := Lookup(f.Check)
		if e := rule.EffectFor(c); e != EffectIgnore {
			f.Effect = e
			out = append(out, f)
		}
	}
	return out
}
