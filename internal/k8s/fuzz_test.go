package k8s_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

// seeds are the manifests of the decode cases and the fixtures.
func seeds(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	files, _ := filepath.Glob(filepath.Join("testdata", "decode", "*.txt"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		_, body, _ := strings.Cut(string(data), "\n-- ")
		_, body, _ = strings.Cut(body, " --\n")
		body, _, _ = strings.Cut(body, "\n-- ")
		out = append(out, []byte(body))
	}
	data, err := os.ReadFile(filepath.Join("testdata", "defender-daemonset.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return append(out, data,
		[]byte("a: &a [*a]"),
		[]byte("kind: List\nitems: [{kind: List, items: [{kind: List, items: [{kind: List}]}]}]"),
		[]byte(`{"kind":"List","apiVersion":"v1","items":[{"apiVersion":"v1","kind":"Pod","spec":{"volumes":[{"name":"x"}]}}]}`),
		[]byte("apiVersion: v1\nkind: Pod\nspec:\n  <<: {hostPID: true}\n  containers: [{name: a, <<: {image: b}}]"),
	)
}

// evaluate runs every manifest check and both PSS levels on the objects and
// resolves the line of every path, so that the fuzzers reach the mapping
// and the rebuilt pod spec too.
func evaluate(t *testing.T, objs []k8s.Object) {
	opts := compliance.Options{Evaluators: []compliance.Evaluator{k8s.PSS(psaapi.LevelRestricted, psaapi.LatestVersion())}}
	for _, o := range objs {
		for _, f := range compliance.Evaluate(o.Workload, opts) {
			for _, p := range f.Paths {
				if l := o.Line(p); l < 0 {
					t.Fatalf("Line(%q) = %d", p, l)
				}
			}
		}
		var pe *k8s.ParseError
		if _, err := k8s.Ignores(o); err != nil && (!errors.As(err, &pe) || !strings.Contains(err.Error(), k8s.IgnoreAnnotation)) {
			t.Fatalf("Ignores error %q is not a ParseError naming the annotation", err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := k8s.Decode("fuzz.yaml", data)
		for _, e := range unjoin(err) {
			var pe *k8s.ParseError
			if !errors.As(e, &pe) {
				t.Fatalf("Decode error %v (%T) is not a *ParseError", e, e)
			}
		}
		evaluate(t, objs)
	})
}

func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"hostPID":true,"containers":[{"name":"a","image":"a:1"}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"a","securityContext":{"privileged":true}}]}}}}`,
		`{"apiVersion":"batch/v1","kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"hostNetwork":true}}}}}}`,
		`{"apiVersion":"v1","kind":"PodTemplate","template":{"spec":{"volumes":[{"name":"h","hostPath":{"path":"/"}}]}}}`,
		`{"apiVersion":"v1","kind":"Service"}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"ports":[{"hostPort":"80"}]}]}}`,
		`[1,2]`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		obj, err := k8s.DecodeObject(raw)
		sameAsDecodeObjectOf(t, raw, obj, err)
		if err != nil {
			var pe *k8s.ParseError
			if !errors.As(err, &pe) && !errors.Is(err, k8s.ErrNotWorkload) {
				t.Fatalf("DecodeObject error %v (%T) is neither a *ParseError nor ErrNotWorkload", err, err)
			}
			return
		}
		evaluate(t, []k8s.Object{obj})
	})
}
