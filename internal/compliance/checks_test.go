package compliance_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
)

var update = flag.Bool("update", false, "rewrite the expected findings in testdata/checks")

// checkFile is testdata/checks/<slug>.json: cases that run one check on a
// workload or a host, with the findings they must produce.
type checkFile struct {
	Check string      `json:"check"`
	Cases []checkCase `json:"cases"`
}

type checkCase struct {
	Name     string          `json:"name"`
	Workload json.RawMessage `json:"workload,omitempty"`
	Host     json.RawMessage `json:"host,omitempty"`
	Want     []wantFinding   `json:"want"`
}

// wantFinding is the part of a Finding a case pins down.
type wantFinding struct {
	Check     string   `json:"check"`
	PrismaID  string   `json:"prismaId,omitempty"`
	Severity  string   `json:"severity"`
	Container string   `json:"container,omitempty"`
	Paths     []string `json:"paths"`
}

func TestChecks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "checks", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/checks/*.json: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			cf := readCheckFile(t, file)
			if want := strings.TrimSuffix(filepath.Base(file), ".json"); cf.Check != want {
				t.Fatalf("%s: check %q, want %q (the file's name)", file, cf.Check, want)
			}
			for i := range cf.Cases {
				tc := &cf.Cases[i]
				t.Run(tc.Name, func(t *testing.T) {
					got := runCase(t, cf.Check, tc)
					if *update {
						tc.Want = got
						return
					}
					if diff := cmp.Diff(tc.Want, got); diff != "" {
						t.Errorf("Evaluate(%s) mismatch (-want +got):\n%s", tc.Name, diff)
					}
				})
			}
			if *update {
				writeCheckFile(t, file, cf)
			}
		})
	}
}

func runCase(t *testing.T, slug string, tc *checkCase) []wantFinding {
	t.Helper()
	var fs []compliance.Finding
	switch {
	case tc.Workload != nil:
		var w compliance.Workload
		decodeStrict(t, tc.Workload, &w)
		fs = compliance.Evaluate(w, compliance.Options{Checks: []string{slug}})
	case tc.Host != nil:
		var h compliance.Host
		decodeStrict(t, tc.Host, &h)
		for _, f := range compliance.EvaluateHost(h) {
			if f.Check == slug {
				fs = append(fs, f)
			}
		}
	default:
		t.Fatalf("case %q has neither workload nor host", tc.Name)
	}
	got := []wantFinding{}
	for _, f := range fs {
		if f.Check != slug {
			t.Errorf("Evaluate with only %q returned a %q finding", slug, f.Check)
		}
		if f.Title == "" || f.Message == "" {
			t.Errorf("finding %+v has no title or message", f)
		}
		got = append(got, wantFinding{f.Check, f.PrismaID, string(f.Severity), f.Container, f.Paths})
	}
	return got
}

func decodeStrict(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
}

func readCheckFile(t *testing.T, file string) checkFile {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cf checkFile
	decodeStrict(t, data, &cf)
	return cf
}

func writeCheckFile(t *testing.T, file string, cf checkFile) {
	t.Helper()
	data, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEveryCheckHasCases keeps the promise of one pass and one fail case
// per evaluated check.
func TestEveryCheckHasCases(t *testing.T) {
	for _, c := range compliance.Catalog() {
		if c.External {
			continue
		}
		file := filepath.Join("testdata", "checks", c.Slug+".json")
		if _, err := os.Stat(file); err != nil {
			t.Errorf("check %q has no %s", c.Slug, file)
			continue
		}
		cf := readCheckFile(t, file)
		var pass, fail bool
		for _, tc := range cf.Cases {
			if len(tc.Want) == 0 {
				pass = true
			} else {
				fail = true
			}
		}
		if !pass || !fail {
			t.Errorf("%s: pass case %v, fail case %v; want both", file, pass, fail)
		}
	}
}
