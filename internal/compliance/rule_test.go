package compliance_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
)

// defenderDaemonSet is Bulwark's own Defender as a DaemonSet on a
// containerd cluster: hostPID and hostNetwork on purpose.
func defenderDaemonSet(image, container string) compliance.Workload {
	return compliance.Workload{
		Source: compliance.Source{
			Kind:   compliance.SourceManifest,
			Engine: compliance.EngineContainerd,
			Object: compliance.Object{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "bulwark-defender", Namespace: "bulwark"},
		},
		Pod: &compliance.Pod{
			Path:        "spec.template.spec",
			HostPID:     new(true),
			HostNetwork: new(true),
			Containers: []compliance.Container{{
				Name:  container,
				Image: image,
				SecurityContext: compliance.SecurityContext{
					CapabilitiesAdd: []string{"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "AUDIT_CONTROL", "MKNOD", "SETFCAP"},
				},
			}},
		},
	}
}

// defenderOCI is the same Defender as containerd runs it.
func defenderOCI() compliance.Workload {
	return compliance.Workload{
		Source: compliance.Source{Kind: compliance.SourceOCI, Engine: compliance.EngineContainerd},
		Runtime: &compliance.Runtime{
			Name:  "bulwark-defender",
			Image: compliance.Fact[string]{Value: "ghcr.io/acme/bulwark-defender:1.0.0", Key: "annotations"},
			HostNamespaces: []compliance.HostNamespace{
				{Type: compliance.NamespacePID, Key: "linux.namespaces"},
				{Type: compliance.NamespaceNetwork, Key: "linux.namespaces"},
			},
		},
	}
}

func hostNamespaceFindings(fs []compliance.Finding) []string {
	var out []string
	for _, f := range fs {
		if slices.Contains([]string{"host-network", "host-pid", "host-ipc", "host-uts", "host-userns"}, f.Check) {
			out = append(out, f.String())
		}
	}
	return out
}

func TestSeedDefenderDaemonSet(t *testing.T) {
	want := []string{
		"5059 - Do not share the host's network namespace",
		"5515 - Do not share the host's process namespace",
	}
	workloads := map[string]compliance.Workload{
		"manifest":   defenderDaemonSet("registry.example/bulwark/defender:1.0.0", "defender"),
		"containerd": defenderOCI(),
	}
	for name, w := range workloads {
		t.Run(name, func(t *testing.T) {
			disabled := compliance.DefaultRules()
			if disabled[0].Name != compliance.RuleIgnoreBulwark {
				t.Fatalf("DefaultRules()[0] = %q, want %q first", disabled[0].Name, compliance.RuleIgnoreBulwark)
			}
			disabled[0].Disabled = true
			got := hostNamespaceFindings(compliance.Apply(disabled, w, compliance.Options{}))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Apply(default rule disabled) host-namespace findings (-want +got):\n%s", diff)
			}

			if got := compliance.Apply(compliance.DefaultRules(), w, compliance.Options{}); len(got) != 0 {
				t.Errorf("Apply(default rules) = %v, want nothing for Bulwark's Defender", got)
			}
		})
	}
}

func TestDefaultRulesStillReportOthers(t *testing.T) {
	w := defenderDaemonSet("docker.io/library/node-exporter:1.8", "exporter")
	got := hostNamespaceFindings(compliance.Apply(compliance.DefaultRules(), w, compliance.Options{}))
	want := []string{
		"5059 - Do not share the host's network namespace",
		"5515 - Do not share the host's process namespace",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply(default rules, other DaemonSet) (-want +got):\n%s", diff)
	}
}

func TestApplyEffects(t *testing.T) {
	w := defenderDaemonSet("example/agent:1", "agent")
	rules := []compliance.Rule{{
		Name:   "block host pid only",
		Effect: compliance.EffectIgnore,
		Checks: map[string]compliance.Effect{"host-pid": compliance.EffectBlock, "caps-added": compliance.EffectAlert},
	}}
	var got []string
	for _, f := range compliance.Apply(rules, w, compliance.Options{}) {
		got = append(got, f.Check+"="+string(f.Effect))
	}
	want := []string{"host-pid=block", "caps-added=alert"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply effects (-want +got):\n%s", diff)
	}

	if got := compliance.Apply(nil, w, compliance.Options{}); len(got) != 0 {
		t.Errorf("Apply(no rules) = %v, want nothing: no rule decides", got)
	}
}

func TestDecideFirstMatch(t *testing.T) {
	rules := []compliance.Rule{
		{Name: "disabled", Disabled: true, Collections: []compliance.Collection{{Images: []string{"*"}}}},
		{Name: "prod web", Collections: []compliance.Collection{{Namespaces: []string{"prod"}, Images: []string{"*/web:*"}}}},
		{Name: "prod", Collections: []compliance.Collection{{Namespaces: []string{"prod"}}}},
		{Name: "team a", Collections: []compliance.Collection{{Labels: []string{"team:a*"}}, {Hosts: []string{"node-?"}}}},
		{Name: "everything"},
	}
	tests := []struct {
		name   string
		res    compliance.Resource
		want   string
		wantOK bool
	}{
		{"first of two matching rules", compliance.Resource{Namespace: "prod", Image: "registry.example/acme/web:1.2"}, "prod web", true},
		{"second rule when the first's image differs", compliance.Resource{Namespace: "prod", Image: "redis:7"}, "prod", true},
		{"label glob", compliance.Resource{Namespace: "dev", Labels: map[string]string{"team": "alpha"}}, "team a", true},
		{"any collection of a rule", compliance.Resource{Namespace: "dev", Host: "node-7"}, "team a", true},
		{"no collections match everything", compliance.Resource{Namespace: "dev", Host: "node-17"}, "everything", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := compliance.Decide(rules, tc.res)
			if got.Name != tc.want || ok != tc.wantOK {
				t.Errorf("Decide(%+v) = %q, %v, want %q, %v", tc.res, got.Name, ok, tc.want, tc.wantOK)
			}
		})
	}
	if _, ok := compliance.Decide(rules[:3], compliance.Resource{Namespace: "dev"}); ok {
		t.Errorf("Decide(no matching rule) ok = true, want false")
	}
}

func TestCollectionMatches(t *testing.T) {
	res := compliance.Resource{
		Image: "ghcr.io/acme/bulwark/defender:1.0", Container: "bulwark-defender", Host: "node-1",
		Namespace: "bulwark", Cluster: "prod-eu", Labels: map[string]string{"app": "defender", "tier": "system"},
	}
	tests := []struct {
		name string
		c    compliance.Collection
		want bool
	}{
		{"empty collection is all", compliance.Collection{}, true},
		{"star crosses slashes", compliance.Collection{Images: []string{"*bulwark/defender*"}}, true},
		{"one of several globs", compliance.Collection{Images: []string{"nginx*", "ghcr.io/*"}}, true},
		{"every dimension must match", compliance.Collection{Images: []string{"*"}, Namespaces: []string{"kube-system"}}, false},
		{"container glob", compliance.Collection{Containers: []string{"bulwark-defender*"}}, true},
		{"host ?", compliance.Collection{Hosts: []string{"node-?"}}, true},
		{"cluster", compliance.Collection{Clusters: []string{"prod-*"}}, true},
		{"cluster mismatch", compliance.Collection{Clusters: []string{"dev-*"}}, false},
		{"label key:value", compliance.Collection{Labels: []string{"tier:sys*"}}, true},
		{"label value mismatch", compliance.Collection{Labels: []string{"app:web"}}, false},
		{"label star", compliance.Collection{Labels: []string{"*"}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Matches(res); got != tc.want {
				t.Errorf("%+v.Matches(%+v) = %v, want %v", tc.c, res, got, tc.want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "a/b/c", true},
		{"", "", true},
		{"", "a", false},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*bulwark-defender*", "registry.example:5000/x/bulwark-defender:1", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b", "xxaxxbxxc", false},
		{"prod", "production", false},
	}
	for _, tc := range tests {
		if got := compliance.Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}
