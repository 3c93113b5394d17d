package admission

import (
	"strings"
	"testing"
	"unicode/utf8"

	"bulwark/internal/compliance"
)

func TestBound(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg…"},
		// A cut inside a rune moves back to its start.
		{"ééééé", 8, "éé…"},
		{"日本語の文字", 9, "日本…"},
	}
	for _, tc := range tests {
		got := bound(tc.s, tc.n)
		if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("bound(%q, %d) = %q, want %q (valid UTF-8, at most %d bytes)", tc.s, tc.n, got, tc.want, tc.n)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		f    compliance.Finding
		want string
	}{
		{compliance.Finding{Check: "host-pid", PrismaID: "5515", Title: "Do not share the host's process namespace", Paths: []string{"spec.hostPID"}},
			"5515 - Do not share the host's process namespace: spec.hostPID"},
		{compliance.Finding{Check: "pss-baseline", Title: "Pod violates the Pod Security Standards baseline profile", Paths: []string{"spec.hostPID", "spec.hostNetwork"}},
			"pss-baseline - Pod violates the Pod Security Standards baseline profile: spec.hostPID, spec.hostNetwork"},
		{compliance.Finding{Check: "x", Title: "No paths"}, "x - No paths"},
	}
	for _, tc := range tests {
		if got := describe(tc.f); got != tc.want {
			t.Errorf("describe(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestBoundWarnings(t *testing.T) {
	var ws []string
	for range 30 {
		ws = append(ws, strings.Repeat("w", 300))
	}
	got := boundWarnings(ws)
	if len(got) != maxWarnings || got[maxWarnings-1] != "and 11 more failed checks; see Bulwark's admission audit" {
		t.Fatalf("boundWarnings(30 warnings) = %d warnings ending %q", len(got), got[len(got)-1])
	}
	for _, w := range got {
		if len(w) > maxWarningLen {
			t.Errorf("a warning of %d bytes", len(w))
		}
	}
	if got := boundWarnings([]string{"a", "b"}); len(got) != 2 {
		t.Errorf("boundWarnings of 2 = %q", got)
	}
}

func TestClusterOf(t *testing.T) {
	tests := []struct {
		path, cluster string
		ok            bool
	}{
		{"/v1/admission", "", true},
		{"/v1/admission/", "", true},
		{"/v1/admission/prod-east", "prod-east", true},
		{"/v1/admission/a/b", "", false},
		{"/v1/admission/a b", "", false},
		{"/v1/admissions", "", false},
		{"/v1/admission/" + strings.Repeat("a", 254), "", false},
		{"/", "", false},
	}
	for _, tc := range tests {
		cluster, ok := clusterOf(tc.path)
		if cluster != tc.cluster || ok != tc.ok {
			t.Errorf("clusterOf(%q) = %q, %v; want %q, %v", tc.path, cluster, ok, tc.cluster, tc.ok)
		}
	}
}
