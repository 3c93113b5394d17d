package compliance_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"bulwark/internal/compliance"
)

func TestParsePolicyPrismaShape(t *testing.T) {
	// The document of Prisma's "PUT /policies/compliance/container" example,
	// with a second rule that names a check without a Prisma ID by slug.
	doc := `{
	  "rules": [
	    {"name": "my-rule", "effect": "alert", "collections": [{"name": "All", "images": ["*"], "hosts": ["*"], "accountIDs": ["*"],
	      "appIDs": ["*"], "codeRepos": ["*"], "functions": ["*"], "color": "#3FA2F7", "description": "System - all resources collection",
	      "owner": "system", "modified": "2026-11-30T00:00:00Z", "system": true, "prisma": false}],
	     "condition": {"vulnerabilities": [{"id": 531, "block": false, "minSeverity": 1}, {"id": 5515, "block": true}, {"check": "net-raw"}]}},
	    {"name": "rest", "owner": "admin", "modified": "2026-11-30T00:00:00Z", "notes": "kept"}
	  ],
	  "policyType": "containerCompliance"
	}`
	p, err := compliance.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatalf("ParsePolicy(Prisma example) error: %v", err)
	}
	if p.PolicyType != compliance.PolicyTypeContainer || len(p.Rules) != 2 {
		t.Fatalf("ParsePolicy = %+v, want a containerCompliance policy with 2 rules", p)
	}
	r := p.Rules[0]
	tests := []struct {
		slug string
		want compliance.Effect
	}{
		{"runtime-socket", compliance.EffectAlert}, // 531, Docker ID
		{"host-pid", compliance.EffectBlock},       // 5515, CRI ID
		{"net-raw", compliance.EffectAlert},        // by slug
		{"privileged", compliance.EffectIgnore},    // not listed
	}
	for _, tc := range tests {
		c, ok := compliance.Lookup(tc.slug)
		if !ok {
			t.Fatalf("Lookup(%q) found nothing", tc.slug)
		}
		if got := r.EffectFor(c); got != tc.want {
			t.Errorf("rule %q EffectFor(%s) = %q, want %q", r.Name, tc.slug, got, tc.want)
		}
	}
	if !p.Blocking() {
		t.Errorf("Blocking() = false for a policy with a block check")
	}
	p.Rules[0].Disabled = true
	if p.Blocking() {
		t.Errorf("Blocking() = true though the only blocking rule is disabled")
	}
}

func TestParsePolicyRefuses(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"no rules", `{"policyType":"containerCompliance"}`, `"rules" array is missing`},
		{"unknown field", `{"rules":[{"name":"a","colour":"red"}]}`, `unknown field "colour"`},
		{"empty name", `{"rules":[{"name":" "}]}`, "rules[0]: name is empty"},
		{"duplicate name", `{"rules":[{"name":"a"},{"name":"a"}]}`, `rules[1]: a rule named "a" comes earlier`},
		{"bad effect", `{"rules":[{"name":"a","effect":"prevent"}]}`, `rules[0].effect: "prevent" is not ignore, alert or block`},
		{"unknown slug", `{"rules":[{"name":"a","checks":{"no-such":"alert"}}]}`, `no check "no-such"`},
		{"unknown id", `{"rules":[{"name":"a","condition":{"vulnerabilities":[{"id":99999}]}}]}`, "vulnerabilities[0]: id 99999 is not a check"},
		{"trailing data", `{"rules":[]} {}`, "data after the policy object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compliance.ParsePolicy([]byte(tc.doc))
			if !errors.Is(err, compliance.ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePolicy(%s) error = %v, want ErrInvalidPolicy mentioning %q", tc.doc, err, tc.want)
			}
		})
	}
}

func TestApplyHost(t *testing.T) {
	h := compliance.Host{Name: "node-1", Docker: &compliance.Docker{}}
	all := compliance.EvaluateHost(h)
	if len(all) == 0 {
		t.Fatalf("EvaluateHost(default docker) found nothing; the test needs a failing host")
	}
	rules := []compliance.Rule{
		{Name: "other hosts", Collections: []compliance.Collection{{Hosts: []string{"node-2"}}}, Effect: compliance.EffectBlock},
		{Name: "icc only", Condition: &compliance.Condition{Checks: []compliance.CheckRef{{Check: "docker-icc"}}}},
	}
	got := compliance.ApplyHost(rules, h)
	if len(got) != 1 || got[0].Check != "docker-icc" || got[0].Effect != compliance.EffectAlert {
		t.Errorf("ApplyHost(icc only) = %v, want one docker-icc alert", got)
	}
	if got := compliance.ApplyHost(rules[:1], h); got != nil {
		t.Errorf("ApplyHost(no rule for the host) = %v, want nil", got)
	}
}

// fixedEvaluator reports one finding of its check on every workload.
type fixedEvaluator struct{ check compliance.Check }

func (e fixedEvaluator) Evaluate(compliance.Workload) []compliance.Finding {
	return []compliance.Finding{{Check: e.check.Slug, PrismaID: e.check.DockerID, Severity: e.check.Severity, Title: e.check.Title}}
}

func TestApplyCustomChecks(t *testing.T) {
	custom := compliance.Check{Slug: "acme-no-debug", DockerID: "9001", Severity: compliance.SeverityLow, Title: "No debug images"}
	w := defenderDaemonSet("example/agent:1", "agent")
	opts := compliance.Options{Evaluators: []compliance.Evaluator{fixedEvaluator{custom}}, Custom: []compliance.Check{custom}}

	p, err := compliance.ParsePolicy([]byte(`{"rules":[{"name":"custom","condition":{"vulnerabilities":[{"id":9001,"block":true}]}}]}`), custom)
	if err != nil {
		t.Fatalf("ParsePolicy(rule naming custom check 9001) error: %v", err)
	}
	got := compliance.Apply(p.Rules, w, opts)
	if len(got) != 1 || got[0].Check != custom.Slug || got[0].Effect != compliance.EffectBlock {
		t.Errorf("Apply(custom rule) = %v, want one blocking %s finding", got, custom.Slug)
	}
	if _, err := compliance.ParsePolicy([]byte(`{"rules":[{"name":"custom","condition":{"vulnerabilities":[{"id":9001}]}}]}`)); err == nil {
		t.Errorf("ParsePolicy(rule naming 9001) without the custom check succeeded")
	}
	opts.Skip = []string{custom.Slug}
	if got := compliance.Evaluate(w, opts); slices.ContainsFunc(got, func(f compliance.Finding) bool { return f.Check == custom.Slug }) {
		t.Errorf("Evaluate(Skip %s) still reports it: %v", custom.Slug, got)
	}
}
