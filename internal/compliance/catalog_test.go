package compliance_test

import (
	"strconv"
	"testing"

	"bulwark/internal/compliance"
)

func TestCatalog(t *testing.T) {
	slugs := map[string]bool{}
	ids := map[string]string{}
	var host int
	for _, c := range compliance.Catalog() {
		if slugs[c.Slug] {
			t.Errorf("slug %q twice", c.Slug)
		}
		slugs[c.Slug] = true
		if c.Title == "" || c.Description == "" || c.Remediation == "" || len(c.References) == 0 || len(c.AppliesTo) == 0 {
			t.Errorf("check %q lacks a title, description, remediation, references or applies-to", c.Slug)
		}
		if c.Severity.Rank() < 0 {
			t.Errorf("check %q severity %q", c.Slug, c.Severity)
		}
		for _, id := range []string{c.DockerID, c.CRIID} {
			if id == "" {
				continue
			}
			if _, err := strconv.Atoi(id); err != nil {
				t.Errorf("check %q ID %q is not a number", c.Slug, id)
			}
			if other, ok := ids[id]; ok && other != c.Slug {
				t.Errorf("ID %s on %q and %q", id, other, c.Slug)
			}
			ids[id] = c.Slug
		}
		if c.Applies(compliance.ScopeHost) && !c.External {
			host++
		}
	}
	if host != 12 {
		t.Errorf("%d host checks, want the 12 of checks.md", host)
	}
	for _, s := range []string{"host-network", "host-pid", "privileged", "windows-hostprocess", "pss-baseline", "pss-restricted"} {
		if !slugs[s] {
			t.Errorf("catalog lacks %q", s)
		}
	}
}

func TestPrismaID(t *testing.T) {
	tests := []struct {
		slug      string
		cri       bool
		want      string
		wantTitle string
	}{
		{"host-network", false, "59", "59 - Do not share the host's network namespace"},
		{"host-network", true, "5059", "5059 - Do not share the host's network namespace"},
		{"host-pid", false, "515", "515 - Do not share the host's process namespace"},
		{"host-pid", true, "5515", "5515 - Do not share the host's process namespace"},
		{"privileged", true, "5054", "5054 - Do not use privileged containers"},
		{"caps-drop-all", true, "", "Containers must drop ALL capabilities and add only NET_BIND_SERVICE"},
	}
	for _, tc := range tests {
		c, ok := compliance.Lookup(tc.slug)
		if !ok {
			t.Fatalf("Lookup(%q) not found", tc.slug)
		}
		if got := c.PrismaID(tc.cri); got != tc.want {
			t.Errorf("%s.PrismaID(%v) = %q, want %q", tc.slug, tc.cri, got, tc.want)
		}
		f := compliance.Finding{PrismaID: c.PrismaID(tc.cri), Title: c.Title}
		if got := f.String(); got != tc.wantTitle {
			t.Errorf("Finding.String() = %q, want %q", got, tc.wantTitle)
		}
	}
}

func TestRuntimeIsCRI(t *testing.T) {
	tests := []struct {
		src  compliance.Source
		want bool
	}{
		{compliance.Source{Kind: compliance.SourceManifest}, true},
		{compliance.Source{Kind: compliance.SourceDocker, Engine: compliance.EngineDocker}, false},
		{compliance.Source{Kind: compliance.SourceOCI, Engine: compliance.EngineContainerd}, true},
		{compliance.Source{Kind: compliance.SourceOCI, Engine: compliance.EngineCRIO}, true},
		{compliance.Source{Kind: compliance.SourceOCI, Engine: compliance.EngineDocker}, false},
		{compliance.Source{Kind: compliance.SourceImage}, false},
	}
	for _, tc := range tests {
		if got := (compliance.Workload{Source: tc.src}).RuntimeIsCRI(); got != tc.want {
			t.Errorf("RuntimeIsCRI(%+v) = %v, want %v", tc.src, got, tc.want)
		}
	}
}

func TestContainerPath(t *testing.T) {
	tests := []struct {
		pod  string
		kind compliance.ContainerKind
		i    int
		want string
	}{
		{"", compliance.ContainerRegular, 0, "spec.containers[0]"},
		{"spec.template.spec", compliance.ContainerInit, 1, "spec.template.spec.initContainers[1]"},
		{"spec.jobTemplate.spec.template.spec", compliance.ContainerEphemeral, 0, "spec.jobTemplate.spec.template.spec.ephemeralContainers[0]"},
	}
	for _, tc := range tests {
		if got := compliance.ContainerPath(tc.pod, tc.kind, tc.i); got != tc.want {
			t.Errorf("ContainerPath(%q, %q, %d) = %q, want %q", tc.pod, tc.kind, tc.i, got, tc.want)
		}
	}
}

// TestEvaluateAllChecks runs every check on one hardened and one careless
// pod: the hardened one passes all manifest checks but the informational
// host-userns, the careless one fails many.
func TestEvaluateAllChecks(t *testing.T) {
	hardened := compliance.Workload{
		Source: compliance.Source{Kind: compliance.SourceManifest},
		Pod: &compliance.Pod{
			HostUsers:                    new(false),
			AutomountServiceAccountToken: new(false),
			SecurityContext: compliance.PodSecurityContext{
				RunAsNonRoot: new(true), RunAsUser: new(int64(1000)), RunAsGroup: new(int64(1000)),
				SeccompProfile: &compliance.Profile{Type: "RuntimeDefault"},
			},
			Containers: []compliance.Container{{
				Name: "app", Image: "registry.example/app@sha256:0123",
				SecurityContext: compliance.SecurityContext{
					AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
					CapabilitiesDrop: []string{"ALL"},
				},
				Resources:      compliance.Resources{Limits: map[string]string{"cpu": "1", "memory": "1Gi"}},
				LivenessProbe:  &compliance.Handler{},
				ReadinessProbe: &compliance.Handler{},
			}},
		},
	}
	if got := compliance.Evaluate(hardened, compliance.Options{}); len(got) != 0 {
		t.Errorf("Evaluate(hardened) = %v, want no findings", got)
	}
	if got := compliance.Evaluate(hardened, compliance.Options{Skip: []string{"host-userns"}}); len(got) != 0 {
		t.Errorf("Evaluate(hardened, skip) = %v, want no findings", got)
	}

	careless := defenderDaemonSet("nginx", "web")
	got := compliance.Evaluate(careless, compliance.Options{})
	seen := map[string]bool{}
	for _, f := range got {
		seen[f.Check] = true
	}
	for _, s := range []string{"host-network", "host-pid", "caps-added", "net-raw", "run-as-root", "image-tag", "memory-limit"} {
		if !seen[s] {
			t.Errorf("Evaluate(careless) has no %q finding: %v", s, got)
		}
	}
	if seen["pss-baseline"] || seen["host-uts"] {
		t.Errorf("Evaluate(careless) reports an external check or host-uts on a manifest: %v", got)
	}
}
