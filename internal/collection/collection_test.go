package collection_test

import (
	"testing"

	"bulwark/internal/collection"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "x", false},
		{"*", "", true},
		{"*", "a/b/c", true},
		{"nginx:*", "nginx:1.25", true},
		{"nginx:*", "redis:7", false},
		{"*/nginx*", "docker.io/library/nginx:1", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*b*b", "abxbxb", true},
		{"*b*b", "abxbx", false},
		{"/usr/*/x", "/usr/local/bin/x", true},
	}
	for _, tc := range tests {
		if got := collection.Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestMatches(t *testing.T) {
	web := collection.Resource{Image: "registry.local/web:1", Container: "web-0", Host: "node-a", Namespace: "prod", Labels: map[string]string{"app": "web"}}
	host := collection.Resource{Host: "node-a"}
	tests := []struct {
		name string
		c    collection.Collection
		r    collection.Resource
		want bool
	}{
		{"empty matches all", collection.Collection{Name: "All"}, web, true},
		{"image glob", collection.Collection{Images: []string{"*/web:*"}}, web, true},
		{"image glob misses a host", collection.Collection{Images: []string{"*/web:*"}}, host, false},
		{"star image matches a host's empty image", collection.Collection{Images: []string{"*"}}, host, true},
		{"every list must match", collection.Collection{Images: []string{"*"}, Namespaces: []string{"dev"}}, web, false},
		{"label key:value", collection.Collection{Labels: []string{"app:w*"}}, web, true},
		{"label key only", collection.Collection{Labels: []string{"app"}}, web, true},
		{"label mismatch", collection.Collection{Labels: []string{"app:db"}}, web, false},
		{"any host", collection.Collection{Hosts: []string{"node-b", "node-?"}}, host, true},
		{"Prisma's cloud scopes at *", collection.Collection{Images: []string{"*"}, AccountIDs: []string{"*"}, AppIDs: []string{"*"}, CodeRepos: []string{"*"}, Functions: []string{"*"}}, web, true},
		{"a cloud account no container has", collection.Collection{AccountIDs: []string{"123456789012"}}, web, false},
		{"a function no container is", collection.Collection{Functions: []string{"billing-*"}}, web, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Matches(tc.r); got != tc.want {
				t.Errorf("%+v.Matches(%+v) = %v, want %v", tc.c, tc.r, got, tc.want)
			}
		})
	}
	if !collection.Any(nil, host) {
		t.Error("Any(nil, host) = false, want true: no collections scope everything")
	}
	if collection.Any([]collection.Collection{{Hosts: []string{"node-b"}}}, host) {
		t.Error("Any([node-b], node-a) = true, want false")
	}
}
