package k8s_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

var update = flag.Bool("update", false, "rewrite the expected sections of testdata/decode/*.txt")

// A decode case is testdata/decode/<name>.txt: a comment, then sections
// that start with a line "-- <name> --":
//
//   - the manifest, named as the file Decode is given (deploy.yaml, list.json);
//   - "checks" (optional): the check slugs to run, separated by spaces;
//     default every manifest check;
//   - "pss" (optional): level and version, default "baseline latest";
//   - "want": the objects, their findings with the line of each path, and
//     the errors, rewritten by -update;
//   - "workload" (optional): the first object's Workload as JSON, rewritten
//     by -update; present where a case pins the whole mapping down.
type decodeCase struct {
	comment  string
	sections []section
}

type section struct {
	name string
	body string
}

func parseCase(t *testing.T, data string) decodeCase {
	t.Helper()
	var c decodeCase
	lines := strings.SplitAfter(data, "\n")
	cur := -1
	for _, l := range lines {
		trimmed := strings.TrimRight(l, "\n")
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") && len(trimmed) > 6 {
			c.sections = append(c.sections, section{name: trimmed[3 : len(trimmed)-3]})
			cur = len(c.sections) - 1
			continue
		}
		if cur < 0 {
			c.comment += l
			continue
		}
		c.sections[cur].body += l
	}
	if len(c.sections) == 0 {
		t.Fatal("case has no sections")
	}
	return c
}

func (c *decodeCase) get(name string) (string, bool) {
	for _, s := range c.sections {
		if s.name == name {
			return s.body, true
		}
	}
	return "", false
}

func (c *decodeCase) set(name, body string) {
	for i := range c.sections {
		if c.sections[i].name == name {
			c.sections[i].body = body
			return
		}
	}
	c.sections = append(c.sections, section{name: name, body: body})
}

func (c *decodeCase) String() string {
	var b strings.Builder
	b.WriteString(c.comment)
	for _, s := range c.sections {
		fmt.Fprintf(&b, "-- %s --\n%s", s.name, s.body)
	}
	return b.String()
}

// decodeResult is what a case pins down.
type decodeResult struct {
	Objects []objectResult `json:"objects"`
	Errors  []string       `json:"errors,omitempty"`
}

type objectResult struct {
	Object   string   `json:"object"` // "apps/v1 Deployment prod/web"
	Line     int      `json:"line"`
	Ignores  []string `json:"ignores,omitempty"`
	Findings []string `json:"findings"`
}

func TestDecodeCases(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "decode", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/decode/*.txt: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c := parseCase(t, string(data))
			input := c.sections[0]
			got, workload := runDecodeCase(t, &c, input.name, []byte(input.body))

			wantWorkload, hasWorkload := c.get("workload")
			if *update {
				c.set("want", got)
				if hasWorkload {
					c.set("workload", workload)
				}
				if err := os.WriteFile(file, []byte(c.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, ok := c.get("want")
			if !ok {
				t.Fatalf("%s has no want section; run with -update", file)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decode(%s) mismatch (-want +got):\n%s", input.name, diff)
			}
			if hasWorkload {
				if diff := cmp.Diff(wantWorkload, workload); diff != "" {
					t.Errorf("Decode(%s) workload mismatch (-want +got):\n%s", input.name, diff)
				}
			}
		})
	}
}

func runDecodeCase(t *testing.T, c *decodeCase, name string, input []byte) (want, workload string) {
	t.Helper()
	opts := compliance.Options{Checks: manifestChecks()}
	if s, ok := c.get("checks"); ok {
		opts.Checks = strings.Fields(s)
	}
	level, version := psaapi.LevelBaseline, psaapi.LatestVersion()
	if s, ok := c.get("pss"); ok {
		f := strings.Fields(s)
		if len(f) != 2 {
			t.Fatalf("pss section %q: want level and version", s)
		}
		level = psaapi.Level(f[0])
		var err error
		if version, err = k8s.ParsePSSVersion(f[1]); err != nil {
			t.Fatal(err)
		}
	}
	opts.Evaluators = []compliance.Evaluator{k8s.PSS(level, version)}

	objs, err := k8s.Decode(name, input)
	res := decodeResult{Objects: []objectResult{}}
	for _, o := range objs {
		src := o.Workload.Source
		if src.File != name || src.Kind != compliance.SourceManifest || src.Engine != compliance.EngineContainerd {
			t.Errorf("object %s: Source file %q kind %q engine %q, want %q manifest containerd", src.Object.Name, src.File, src.Kind, src.Engine, name)
		}
		or := objectResult{
			Object:   strings.TrimSpace(fmt.Sprintf("%s %s %s", src.Object.APIVersion, src.Object.Kind, qualified(src.Object))),
			Line:     src.Line,
			Findings: []string{},
		}
		ignores, err := k8s.Ignores(o)
		if err != nil {
			res.Errors = append(res.Errors, "ignores: "+err.Error())
		}
		for slug, reason := range ignores {
			or.Ignores = append(or.Ignores, slug+": "+reason)
		}
		slices.Sort(or.Ignores)
		for _, f := range compliance.Evaluate(o.Workload, opts) {
			or.Findings = append(or.Findings, findingString(o, f))
		}
		res.Objects = append(res.Objects, or)
	}
	for _, e := range unjoin(err) {
		var pe *k8s.ParseError
		if !errors.As(e, &pe) {
			t.Errorf("Decode error %v is not a *ParseError", e)
		}
		res.Errors = append(res.Errors, e.Error())
	}
	want = marshal(t, res)
	if len(objs) > 0 {
		workload = marshal(t, objs[0].Workload)
	}
	return want, workload
}

func qualified(o compliance.Object) string {
	if o.Namespace == "" {
		return o.Name
	}
	return o.Namespace + "/" + o.Name
}

// findingString is "check severity [container] path@line, …".
func findingString(o k8s.Object, f compliance.Finding) string {
	s := f.Check + " " + string(f.Severity)
	if f.Container != "" {
		s += " [" + f.Container + "]"
	}
	for i, p := range f.Paths {
		sep := " "
		if i > 0 {
			sep = ", "
		}
		s += fmt.Sprintf("%s%s@%d", sep, p, o.Line(p))
	}
	return s
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // splitting errors.Join
		return j.Unwrap()
	}
	return []error{err}
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// manifestChecks are the catalog checks evaluated on manifests, PSS
// profiles included.
func manifestChecks() []string {
	var out []string
	for _, c := range compliance.Catalog() {
		if c.Applies(compliance.ScopeManifest) {
			out = append(out, c.Slug)
		}
	}
	return out
}
