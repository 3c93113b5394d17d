package k8s

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestYAMLMatchesKubectl converts documents with the YAML 1.1 corners that
// change meaning (booleans, octal, timestamps, merges, keys that are not
// strings) and compares the JSON with sigs.k8s.io/yaml's, which kubectl
// sends to the API server.
func TestYAMLMatchesKubectl(t *testing.T) {
	docs := []string{
		"a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\ng: Y\nh: N\ni: True\nj: FALSE\nk: YES\nl: Off",
		"a: 'yes'\nb: \"on\"\nc: |\n  yes\nd: >\n  no\n",
		"a: ~\nb: null\nc: Null\nd:\ne: NULL\nf: ''",
		"a: 0777\nb: 0x1F\nc: 0o17\nd: 0b101\ne: -0b11\nf: 1_000\ng: +12\nh: -7\ni: 9223372036854775807\nj: 18446744073709551615\nk: 99999999999999999999",
		"a: 1.5\nb: .5\nc: 1e3\nd: -1.5E-3\ne: 1.\nf: 6.02e+23\ng: 1_0.5",
		"a: 2024-01-02\nb: 2024-01-02T03:04:05Z\nc: 2024-1-2 3:4:5\nd: 2024-01-02t03:04:05.123+02:00\ne: '2024-01-02'\nf: 2024-13-45",
		"a: !!str 123\nb: !!int \"42\"\nc: !!float 3\nd: !!bool \"true\"\ne: !!null ''\nf: !custom text\ng: !!binary aGVsbG8=",
		"yes: 1\n2: b\n1.5: c\ntrue: d\n0x10: e",
		"base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nn:\n  y: 3\n  <<: *b\no:\n  <<: [*b, {x: 9, z: 9}]\n",
		"a: 1\na: 2\nb: [1, {c: d}, [e]]",
		"a: \"tab\\tnew\\nline \\u00e9 \\\"q\\\" \\\\ \\x01\"\nb: plain text, with a colon:inside\nc: <<\nd: '<<'",
		"a: -a\nb: +\nc: .\nd: -.\ne: 0.0.1\nf: 1-2\ng: 1:20\nh: 0b\ni: 0x",
		"list: [yes, no, 1, 1.0, ~, a]\nnested: {a: {b: {c: [on]}}}",
		"a: 1e400\nb: -1e400",
	}
	for _, doc := range docs {
		want, wantErr := sigsyaml.YAMLToJSON([]byte(doc))
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
			t.Fatalf("yaml.v3 cannot parse %q: %v", doc, err)
		}
		got, gotErr := toJSON(&n)
		if (wantErr != nil) != (gotErr != nil) {
			t.Errorf("toJSON(%q) error %v, sigs.k8s.io/yaml error %v", doc, gotErr, wantErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		var w, g any
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got.data, &g); err != nil {
			t.Fatalf("toJSON(%q) = %s, not JSON: %v", doc, got.data, err)
		}
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("toJSON(%q) differs from sigs.k8s.io/yaml (-kubectl +ours):\n%s", doc, diff)
		}
	}
}

func TestYAMLConversionErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
		line            int
	}{
		{"alias loop", "a: &x [1, *x]", "refers to itself", 1},
		{"billion laughs", billionLaughs(), "expands to more than", 0},
		{"NaN", "a: 1\nb: .nan", "not representable in JSON", 2},
		{"sequence key", "? [a]\n: 1", "must be a scalar", 1},
		{"null key", "~: 1", "is not a string", 1},
		{"bad merge", "a:\n  <<: 3", "takes a mapping", 2},
		{"bad tag", "a: !!int abc", "cannot read", 1},
		{"bad binary", "a: !!binary '%%%'", "not base64", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tc.doc), &n); err != nil {
				t.Fatalf("yaml.v3: %v", err)
			}
			_, err := toJSON(&n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("toJSON(%q) error = %v, want one containing %q", tc.name, err, tc.want)
			}
			if ye, ok := err.(*yamlError); tc.line > 0 && (!ok || ye.line != tc.line) { //nolint:errorlint // the converter returns it bare
				t.Errorf("toJSON(%q) error at line %v, want %d", tc.name, err, tc.line)
			}
		})
	}
}

// billionLaughs is ten levels of ten aliases each: 10^10 values expanded.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 10; i++ {
		prev := "*a" + string(rune('0'+i-1))
		if i == 10 {
			b.WriteString("top: [")
		} else {
			b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		}
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(prev)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		in   string
		want []segment
	}{
		{"spec.containers[1].image", []segment{{key: "spec", index: -1}, {key: "containers", index: -1}, {index: 1}, {key: "image", index: -1}}},
		{`metadata.annotations["a.b/c[0]"]`, []segment{{key: "metadata", index: -1}, {key: "annotations", index: -1}, {key: "a.b/c[0]", index: -1}}},
		{"a[x]", []segment{{key: "a", index: -1}}},
		{"", nil},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, splitPath(tc.in), cmp.AllowUnexported(segment{})); diff != "" {
			t.Errorf("splitPath(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
