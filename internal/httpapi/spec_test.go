package httpapi

import (
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"bulwark/api"
)

// TestSpecMatchesRoutes keeps the OpenAPI document and the router in step:
// the same endpoints, each with the same permission.
func TestSpecMatchesRoutes(t *testing.T) {
	s, err := New(Config{SigningKey: make([]byte, 32), OpenAPI: api.OpenAPI()}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for _, rt := range s.routes {
		perm := string(rt.perm)
		if perm == "" {
			perm = "public"
		}
		code = append(code, rt.method+" "+strings.ReplaceAll(rt.path, "...}", "}")+" "+perm)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Permission string `yaml:"x-bulwark-permission"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatalf("parse api/openapi.yaml: %v", err)
	}
	var spec []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if op.Permission == "" {
				t.Errorf("%s %s: no x-bulwark-permission in the spec", strings.ToUpper(method), path)
			}
			spec = append(spec, strings.ToUpper(method)+" "+path+" "+op.Permission)
		}
	}
	sort.Strings(code)
	sort.Strings(spec)
	if diff := cmp.Diff(spec, code); diff != "" {
		t.Errorf("api/openapi.yaml and the router disagree (-spec +code):\n%s", diff)
	}
}

// TestEmbeddedSpecIsTheFile guards against a stale embed.
func TestEmbeddedSpecIsTheFile(t *testing.T) {
	file, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != string(api.OpenAPI()) {
		t.Error("api.OpenAPI() differs from api/openapi.yaml")
	}
}
