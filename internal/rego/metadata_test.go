package rego_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
	"bulwark/internal/rego"
)

func TestParseMetadata(t *testing.T) {
	tests := []struct {
		name    string
		module  string
		want    rego.Metadata
		found   bool
		wantErr string
	}{
		{
			name: "every field",
			module: `# METADATA
# title: Images come from our registries
# description: Docker Hub images bypass our image scanning.
# custom:
#   id: 9001
#   name: no-hub
#   severity: HIGH
#   remediation: Push the image to registry.acme.io.
#   other-tool: ignored
package acme.no_docker_hub

deny contains "x" if false
`,
			want: rego.Metadata{ID: 9001, Name: "no-hub", Title: "Images come from our registries",
				Description: "Docker Hub images bypass our image scanning.", Severity: compliance.SeverityHigh,
				Remediation: "Push the image to registry.acme.io."},
			found: true,
		},
		{
			name:   "only a severity",
			module: "# METADATA\n# custom:\n#   severity: low\npackage p\n\ndeny contains \"x\" if false\n",
			want:   rego.Metadata{Severity: compliance.SeverityLow}, found: true,
		},
		{
			name:   "an ordinary comment is no metadata",
			module: "# Images come from our registries.\npackage p\n\ndeny contains \"x\" if false\n",
		},
		{
			name:   "metadata of a rule is not the check's",
			module: "package p\n\n# METADATA\n# title: a rule\ndeny contains \"x\" if false\n",
		},
		{
			name:    "an ID that is not a number",
			module:  "# METADATA\n# custom:\n#   id: nine-thousand\npackage p\n",
			found:   true,
			wantErr: `line 1: METADATA: custom.id is "nine-thousand", not a number from 9000 to 9999`,
		},
		{
			name:    "a fractional ID",
			module:  "# METADATA\n# custom:\n#   id: 9000.5\npackage p\n",
			found:   true,
			wantErr: "custom.id is a number, not a number from 9000 to 9999",
		},
		{
			name:    "a severity that is not a string",
			module:  "# METADATA\n# custom:\n#   severity: [high]\npackage p\n",
			found:   true,
			wantErr: "custom.severity is an array, not a string",
		},
		{
			name:    "metadata that is not YAML",
			module:  "# METADATA\n# custom: [unclosed\npackage p\n",
			wantErr: "line 2, column 1: rego_parse_error: yaml:",
		},
		{
			name:    "a module that does not parse",
			module:  "package p\n\ndeny contains x if {\n",
			wantErr: "rego_parse_error",
		},
		{
			name:    "no package",
			module:  "# just a comment\n",
			wantErr: "empty module",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := rego.ParseMetadata("check.rego", tc.module)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMetadata() error = %v, want one containing %q", err, tc.wantErr)
				}
				if found != tc.found {
					t.Errorf("ParseMetadata() found = %v, want %v", found, tc.found)
				}
				return
			case err != nil:
				t.Fatalf("ParseMetadata() error = %v", err)
			}
			if found != tc.found {
				t.Errorf("ParseMetadata() found = %v, want %v", found, tc.found)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseMetadata() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseMetadata(f *testing.F) {
	for _, s := range []string{
		"# METADATA\n# title: t\n# custom:\n#   id: 9001\n#   severity: high\npackage p\n\ndeny contains \"x\" if false\n",
		"# METADATA\n# custom:\n#   id: 1e300\npackage p\n",
		"# METADATA\n# custom: {id: [1], name: {a: b}}\npackage p\n",
		"package p\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, module string) {
		m, found, err := rego.ParseMetadata("fuzz.rego", module)
		if err != nil && m != (rego.Metadata{}) {
			t.Errorf("ParseMetadata(%q) = %+v with error %v: want no metadata with an error", module, m, err)
		}
		if !found && m != (rego.Metadata{}) {
			t.Errorf("ParseMetadata(%q) = %+v, found false", module, m)
		}
	})
}
