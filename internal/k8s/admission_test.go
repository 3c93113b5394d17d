package k8s_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"sigs.k8s.io/yaml"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

func TestParseAdmissionPolicy(t *testing.T) {
	def := k8s.DefaultAdmissionPolicy()
	with := func(f func(*k8s.AdmissionPolicy)) k8s.AdmissionPolicy {
		p := k8s.DefaultAdmissionPolicy()
		f(&p)
		return p
	}
	blockPriv := compliance.Rule{Name: "block privileged", Effect: compliance.EffectBlock,
		Collections: []compliance.Collection{{Name: "prod", Namespaces: []string{"prod*"}}}}
	tests := []struct {
		name string
		doc  string
		want k8s.AdmissionPolicy
	}{
		{"empty object: the defaults", `{}`, def},
		{"the defaults written out", `{"_id":"admission","mode":"audit","exemptNamespaces":["kube-system"],"pssLevel":"baseline","pssVersion":"latest"}`, def},
		{"enforce, restricted at v1.30", `{"mode":"enforce","pssLevel":"restricted","pssVersion":"v1.30"}`, with(func(p *k8s.AdmissionPolicy) {
			p.Mode, p.PSSLevel, p.PSSVersion = k8s.ModeEnforce, k8s.PSSRestricted, "v1.30"
		})},
		{"no exempt namespaces", `{"exemptNamespaces":[]}`, with(func(p *k8s.AdmissionPolicy) { p.ExemptNamespaces = []string{} })},
		{"null exempt namespaces keep the default", `{"exemptNamespaces":null}`, def},
		{"rules replace the built-in ones", `{"rules":[{"name":"block privileged","effect":"block","collections":[{"name":"prod","namespaces":["prod*"]}]}]}`,
			with(func(p *k8s.AdmissionPolicy) { p.Rules = []compliance.Rule{blockPriv} })},
		{"no rules", `{"rules":[]}`, with(func(p *k8s.AdmissionPolicy) { p.Rules = []compliance.Rule{} })},
		{"PSS off, annotations honoured", `{"pssLevel":"none","ignoreAnnotations":true}`, with(func(p *k8s.AdmissionPolicy) {
			p.PSSLevel, p.IgnoreAnnotations = k8s.PSSNone, true
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k8s.ParseAdmissionPolicy([]byte(tc.doc))
			if err != nil {
				t.Fatalf("ParseAdmissionPolicy(%s): %v", tc.doc, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseAdmissionPolicy(%s) mismatch (-want +got):\n%s", tc.doc, diff)
			}
		})
	}
}

func TestParseAdmissionPolicyRefuses(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // parts of the message, each required
	}{
		{"not JSON", `{"mode":`, []string{"invalid admission policy"}},
		{"not an object", `[]`, []string{"cannot unmarshal array"}},
		{"unknown field", `{"mode":"audit","enforce":true}`, []string{`unknown field "enforce"`}},
		{"trailing data", `{} {}`, []string{"data after the policy object"}},
		{"bad mode", `{"mode":"block"}`, []string{`mode: "block" is not audit or enforce`}},
		{"mode of the wrong type", `{"mode":1}`, []string{"mode"}},
		{"bad namespace", `{"exemptNamespaces":["kube-system","Prod"]}`, []string{`exemptNamespaces[1]: "Prod" is not a namespace name`}},
		{"empty namespace", `{"exemptNamespaces":[""]}`, []string{`exemptNamespaces[0]: "" is not a namespace name: empty`}},
		{"namespace twice", `{"exemptNamespaces":["a","b","a"]}`, []string{`exemptNamespaces[2]: "a" is listed twice`}},
		{"long namespace", `{"exemptNamespaces":["` + strings.Repeat("a", 64) + `"]}`, []string{"longer than 63"}},
		{"bad level", `{"pssLevel":"privileged"}`, []string{`pssLevel: "privileged" is not baseline, restricted or none`}},
		{"bad version", `{"pssVersion":"1.30"}`, []string{`pssVersion: pod security standards version "1.30"`}},
		{"wrong _id", `{"_id":"compliance"}`, []string{`_id: "compliance" is not "admission"`}},
		{"unknown check", `{"rules":[{"name":"r","checks":{"no-such-check":"block"}}]}`, []string{`rules[0].checks: no check "no-such-check"`}},
		{"bad effect", `{"rules":[{"name":"r","effect":"deny"}]}`, []string{`rules[0].effect: "deny" is not ignore, alert or block`}},
		{"unnamed rule", `{"rules":[{"effect":"block"}]}`, []string{"rules[0]: name is empty"}},
		{"every problem at once", `{"mode":"x","pssLevel":"y","exemptNamespaces":["A"]}`, []string{"mode:", "pssLevel:", "exemptNamespaces[0]:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k8s.ParseAdmissionPolicy([]byte(tc.doc))
			if !errors.Is(err, k8s.ErrInvalidAdmissionPolicy) {
				t.Fatalf("ParseAdmissionPolicy(%s) = %v, want ErrInvalidAdmissionPolicy", tc.doc, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseAdmissionPolicy(%s) = %q, want it to say %q", tc.doc, err, w)
				}
			}
		})
	}
}

func TestParseAdmissionPolicyCustomChecks(t *testing.T) {
	doc := []byte(`{"rules":[{"name":"r","checks":{"no-dockerhub":"block"}}]}`)
	if _, err := k8s.ParseAdmissionPolicy(doc); err == nil {
		t.Fatal("ParseAdmissionPolicy without the custom check = nil error, want one naming it")
	}
	custom := compliance.Check{Slug: "no-dockerhub", Severity: compliance.SeverityHigh, Title: "No Docker Hub"}
	p, err := k8s.ParseAdmissionPolicy(doc, custom)
	if err != nil {
		t.Fatalf("ParseAdmissionPolicy with the custom check: %v", err)
	}
	if got := p.Rules[0].Checks["no-dockerhub"]; got != compliance.EffectBlock {
		t.Errorf("rule's effect on the custom check = %q, want block", got)
	}
}

func TestAdmissionPolicyLevel(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  psaapi.Level
	}{{"none", psaapi.LevelPrivileged}, {"baseline", psaapi.LevelBaseline}, {"restricted", psaapi.LevelRestricted}} {
		p := k8s.DefaultAdmissionPolicy()
		p.PSSLevel, p.PSSVersion = tc.level, "v1.31"
		level, version, err := p.Level()
		if err != nil || level != tc.want || version.String() != "v1.31" {
			t.Errorf("Level() of %s at v1.31 = %s, %s, %v; want %s, v1.31", tc.level, level, version, err, tc.want)
		}
	}
	p := k8s.DefaultAdmissionPolicy()
	p.PSSLevel = "other"
	if _, _, err := p.Level(); err == nil {
		t.Error("Level() of an unknown level = nil error")
	}
}

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestValidatingWebhookConfiguration(t *testing.T) {
	cfg, err := k8s.ValidatingWebhookConfiguration(k8s.WebhookOptions{
		Service: "bulwark-admission", Namespace: "bulwark", CABundle: []byte(testCA),
		ExemptNamespaces: []string{"kube-system", "bulwark", "monitoring"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// What kubectl would apply: through YAML and back into the API type.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got admissionregv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(out, &got); err != nil {
		t.Fatalf("decode the generated YAML strictly: %v\n%s", err, out)
	}
	path, port, timeout := "/v1/admission", int32(443), int32(10)
	ignore, equivalent, none, scope := admissionregv1.Ignore, admissionregv1.Equivalent, admissionregv1.SideEffectClassNone, admissionregv1.NamespacedScope
	ops := []admissionregv1.OperationType{"CREATE", "UPDATE"}
	want := admissionregv1.ValidatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: "bulwark-admission",
			Labels: map[string]string{"app.kubernetes.io/name": "bulwark", "app.kubernetes.io/component": "admission"}},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name: "workloads.admission.bulwark.dev",
			ClientConfig: admissionregv1.WebhookClientConfig{
				Service:  &admissionregv1.ServiceReference{Namespace: "bulwark", Name: "bulwark-admission", Path: &path, Port: &port},
				CABundle: []byte(testCA),
			},
			Rules: []admissionregv1.RuleWithOperations{
				{Operations: ops, Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Scope: &scope,
					Resources: []string{"pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"}}},
				{Operations: ops, Rule: admissionregv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Scope: &scope,
					Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}}},
				{Operations: ops, Rule: admissionregv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Scope: &scope,
					Resources: []string{"jobs", "cronjobs"}}},
			},
			FailurePolicy: &ignore,
			MatchPolicy:   &equivalent,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"bulwark", "kube-system", "monitoring"},
			}}},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ValidatingWebhookConfiguration mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(out), "caBundle: LS0tLS1CRUdJTi") {
		t.Errorf("the YAML's caBundle is not the base64 of the PEM:\n%s", out)
	}
}

func TestValidatingWebhookConfigurationOptions(t *testing.T) {
	ca := []byte(testCA)
	tests := []struct {
		name      string
		opts      k8s.WebhookOptions
		url, path string // the client config's
		failure   admissionregv1.FailurePolicyType
		exempt    []string
	}{
		{"url gets the path", k8s.WebhookOptions{URL: "https://console.example:8085", CABundle: ca},
			"https://console.example:8085/v1/admission", "", admissionregv1.Ignore, nil},
		{"url with the path", k8s.WebhookOptions{URL: "https://10.0.0.5:8085/v1/admission/", CABundle: ca, FailurePolicy: "Fail"},
			"https://10.0.0.5:8085/v1/admission", "", admissionregv1.Fail, nil},
		{"url and cluster", k8s.WebhookOptions{URL: "https://console.example:8085", CABundle: ca, Cluster: "prod-east", ExemptNamespaces: []string{"kube-system"}},
			"https://console.example:8085/v1/admission/prod-east", "", admissionregv1.Ignore, []string{"kube-system"}},
		{"service and cluster", k8s.WebhookOptions{Service: "adm", Namespace: "sec", Port: 8443, CABundle: ca, Cluster: "c1", FailurePolicy: "Ignore"},
			"", "/v1/admission/c1", admissionregv1.Ignore, []string{"sec"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := k8s.ValidatingWebhookConfiguration(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			wh := cfg.Webhooks[0]
			if got := deref(wh.ClientConfig.URL); got != tc.url {
				t.Errorf("url = %q, want %q", got, tc.url)
			}
			if s := wh.ClientConfig.Service; s != nil && deref(s.Path) != tc.path {
				t.Errorf("service path = %q, want %q", deref(s.Path), tc.path)
			}
			if *wh.FailurePolicy != tc.failure {
				t.Errorf("failurePolicy = %s, want %s", *wh.FailurePolicy, tc.failure)
			}
			var exempt []string
			if wh.NamespaceSelector != nil {
				exempt = wh.NamespaceSelector.MatchExpressions[0].Values
			}
			if diff := cmp.Diff(tc.exempt, exempt); diff != "" {
				t.Errorf("exempt namespaces mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func TestValidatingWebhookConfigurationRefuses(t *testing.T) {
	ca := []byte(testCA)
	tests := []struct {
		name string
		opts k8s.WebhookOptions
		want string
	}{
		{"neither service nor url", k8s.WebhookOptions{CABundle: ca}, "give a service"},
		{"both", k8s.WebhookOptions{Service: "a", Namespace: "b", URL: "https://x", CABundle: ca}, "not both"},
		{"no namespace", k8s.WebhookOptions{Service: "a", CABundle: ca}, "namespace of the service: empty"},
		{"bad service", k8s.WebhookOptions{Service: "A_b", Namespace: "b", CABundle: ca}, `service "A_b"`},
		{"bad port", k8s.WebhookOptions{Service: "a", Namespace: "b", Port: -1, CABundle: ca}, "port -1"},
		{"http url", k8s.WebhookOptions{URL: "http://x:80", CABundle: ca}, "scheme must be https"},
		{"url with a query", k8s.WebhookOptions{URL: "https://x/?a=b", CABundle: ca}, "query"},
		{"url with another path", k8s.WebhookOptions{URL: "https://x/validate", CABundle: ca}, "path must be empty or /v1/admission"},
		{"url without host", k8s.WebhookOptions{URL: "https:///v1/admission", CABundle: ca}, "no host"},
		{"url and namespace", k8s.WebhookOptions{URL: "https://x", Namespace: "b", CABundle: ca}, "belong to a service"},
		{"no CA", k8s.WebhookOptions{URL: "https://x"}, "caBundle: empty"},
		{"bad failure policy", k8s.WebhookOptions{URL: "https://x", CABundle: ca, FailurePolicy: "fail"}, `failure policy "fail"`},
		{"bad cluster", k8s.WebhookOptions{URL: "https://x", CABundle: ca, Cluster: "a/b"}, `cluster "a/b"`},
		{"bad exempt namespace", k8s.WebhookOptions{URL: "https://x", CABundle: ca, ExemptNamespaces: []string{"-x"}}, `"-x" is not a namespace name`},
		{"timeout", k8s.WebhookOptions{URL: "https://x", CABundle: ca, TimeoutSeconds: 31}, "timeout 31s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k8s.ValidatingWebhookConfiguration(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ValidatingWebhookConfiguration(%+v) = %v, want an error saying %q", tc.opts, err, tc.want)
			}
		})
	}
}

func FuzzParseAdmissionPolicy(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"mode":"enforce","exemptNamespaces":["a","b"],"pssLevel":"restricted","pssVersion":"v1.30"}`,
		`{"rules":[{"name":"r","effect":"block","checks":{"privileged":"alert"},"collections":[{"name":"c","namespaces":["*"]}]}]}`,
		`{"rules":[{"name":"r","condition":{"vulnerabilities":[{"id":5054,"block":true}]}}]}`,
		`{"exemptNamespaces":null,"rules":null}`, `{"mode":"x"}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := k8s.ParseAdmissionPolicy(doc)
		if err != nil {
			if !errors.Is(err, k8s.ErrInvalidAdmissionPolicy) {
				t.Fatalf("ParseAdmissionPolicy(%q) = %v, not ErrInvalidAdmissionPolicy", doc, err)
			}
			return
		}
		if p.Mode != k8s.ModeAudit && p.Mode != k8s.ModeEnforce {
			t.Fatalf("ParseAdmissionPolicy(%q) accepted mode %q", doc, p.Mode)
		}
		if _, _, err := p.Level(); err != nil {
			t.Fatalf("ParseAdmissionPolicy(%q) accepted a policy whose Level() fails: %v", doc, err)
		}
		for _, ns := range p.ExemptNamespaces {
			if k8s.ValidateNamespace(ns) != nil {
				t.Fatalf("ParseAdmissionPolicy(%q) accepted namespace %q", doc, ns)
			}
		}
	})
}
