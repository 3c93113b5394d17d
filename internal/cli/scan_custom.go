package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"bulwark/api"
	"bulwark/internal/compliance"
	"bulwark/internal/rego"
)

// customSidecar is a .rego file's metadata in a file of the same name
// ending .yaml, .yml or .json.
type customSidecar struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Title       string `json:"title"`
	Severity    string `json:"severity"`
	Description string `json:"description"`
	Remediation string `json:"remediation"`
}

// customCheck is a custom check and the file it came from.
type customCheck struct {
	rego.Check
	file string
	// autoID: the file gave no ID; one is picked once every file is read.
	autoID bool
}

// loadCustomChecks reads the --custom-checks: directories of .rego files,
// .rego files and exported JSON documents. It compiles every enabled check
// and returns the evaluator and the checks' catalog entries. A check that
// cannot be read or compiled is an error naming its file.
func loadCustomChecks(ctx context.Context, paths []string) (*rego.Evaluator, []compliance.Check, error) {
	var checks []customCheck
	var problems []string
	fail := func(file string, err error) { problems = append(problems, file+": "+err.Error()) }
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			fail(p, cause(err))
		case fi.IsDir():
			ents, err := os.ReadDir(p)
			if err != nil {
				fail(p, cause(err))
				continue
			}
			n := 0
			for _, e := range ents {
				name := e.Name()
				if e.IsDir() || !strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, "_test.rego") {
					continue
				}
				n++
				c, err := readRegoCheck(filepath.Join(p, name))
				if err != nil {
					fail(filepath.Join(p, name), err)
					continue
				}
				checks = append(checks, c)
			}
			if n == 0 {
				fail(p, errors.New("no *.rego files"))
			}
		case strings.HasSuffix(p, ".rego"):
			c, err := readRegoCheck(p)
			if err != nil {
				fail(p, err)
				continue
			}
			checks = append(checks, c)
		default:
			cs, err := readCustomDocument(p)
			if err != nil {
				fail(p, err)
				continue
			}
			checks = append(checks, cs...)
		}
	}
	if len(problems) == 0 {
		problems = assignIDs(checks)
	}
	if len(problems) == 0 {
		for _, c := range checks {
			if err := c.Validate(); err != nil {
				fail(c.file, err)
			}
		}
	}
	if len(problems) > 0 {
		return nil, nil, customError(problems)
	}
	plain := make([]rego.Check, len(checks))
	for i, c := range checks {
		plain[i] = c.Check
	}
	ev, err := rego.Compile(ctx, plain, rego.Config{})
	if err != nil {
		for _, e := range unjoin(err) {
			file := "--custom-checks"
			var ce *rego.CompileError
			if errors.As(e, &ce) {
				if i := slices.IndexFunc(checks, func(c customCheck) bool { return c.ID == ce.ID }); i >= 0 {
					file = checks[i].file
				}
			}
			fail(file, e)
		}
		return nil, nil, customError(problems)
	}
	return ev, ev.Checks(), nil
}

func customError(problems []string) error {
	return &codeError{code: exitUsage, msg: "custom checks: " + strings.Join(problems, "\n  ")}
}

// readRegoCheck reads a .rego file and its metadata: a METADATA comment on
// its package, or a sidecar file.
func readRegoCheck(path string) (customCheck, error) {
	module, err := readSmall(path, rego.MaxModuleBytes)
	if err != nil {
		return customCheck{}, err
	}
	base := strings.TrimSuffix(filepath.Base(path), ".rego")
	c := customCheck{file: path, Check: rego.Check{Slug: base, Module: string(module)}}
	meta, found, err := rego.ParseMetadata(path, string(module))
	if err != nil {
		return customCheck{}, err
	}
	sidecar := ""
	for _, ext := range []string{".yaml", ".yml", ".json"} {
		if p := strings.TrimSuffix(path, ".rego") + ext; fileExists(p) {
			sidecar = p
			break
		}
	}
	switch {
	case sidecar != "" && found:
		return customCheck{}, fmt.Errorf("has a METADATA comment and a sidecar %s: give the check's metadata in one place", filepath.Base(sidecar))
	case sidecar != "":
		raw, err := readSmall(sidecar, 1<<20)
		if err != nil {
			return customCheck{}, err
		}
		var s customSidecar
		if err := yaml.UnmarshalStrict(raw, &s); err != nil {
			return customCheck{}, fmt.Errorf("%s: %w", filepath.Base(sidecar), err)
		}
		meta = rego.Metadata{ID: s.ID, Name: s.Name, Title: s.Title, Severity: compliance.Severity(strings.ToLower(s.Severity)),
			Description: s.Description, Remediation: s.Remediation}
	case !found:
		return customCheck{}, fmt.Errorf("no metadata: give the check's severity (and id, title) in a METADATA comment on its package, or in %s.yaml", base)
	}
	if meta.Severity == "" {
		return customCheck{}, errors.New("no severity: set custom.severity in its METADATA comment (or severity in its sidecar file)")
	}
	c.ID, c.autoID = meta.ID, meta.ID == 0
	if meta.Name != "" {
		c.Slug = meta.Name
	}
	c.Title, c.Severity, c.Description, c.Remediation = meta.Title, meta.Severity, meta.Description, meta.Remediation
	if strings.TrimSpace(c.Title) == "" {
		c.Title = c.Slug
	}
	return c, nil
}

// readCustomDocument reads exported custom checks: the array that
// `bulwarkctl custom-compliance list -o json` prints, one check as `get -o
// json` prints it, or the policy document {"rules": [...]}. Disabled checks
// are left out.
func readCustomDocument(path string) ([]customCheck, error) {
	raw, err := readManifest(path)
	if err != nil {
		return nil, err
	}
	var doc rego.Document
	trimmed := bytes.TrimSpace(raw)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		err = decodeStrict(trimmed, &doc.Rules)
	case len(trimmed) > 0 && trimmed[0] == '{':
		var probe map[string]json.RawMessage
		if err = json.Unmarshal(trimmed, &probe); err != nil {
			break
		}
		if _, ok := probe["rules"]; ok {
			doc, err = rego.DecodeDocument(trimmed)
		} else {
			var one api.CustomComplianceCheck
			err = decodeStrict(trimmed, &one)
			doc.Rules = []api.CustomComplianceCheck{one}
		}
	default:
		return nil, errors.New("not a .rego file nor exported custom checks (JSON)")
	}
	if err != nil {
		return nil, err
	}
	var out []customCheck
	for _, a := range doc.Rules {
		if a.Disabled {
			continue
		}
		c, err := rego.FromAPI(a)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(c.Title) == "" {
			c.Title = c.Slug
		}
		out = append(out, customCheck{Check: c, file: path, autoID: c.ID == 0})
	}
	return out, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// assignIDs gives the checks without an ID the next free ones from
// rego.MinID, in order, and reports IDs and names given twice.
func assignIDs(checks []customCheck) []string {
	var problems []string
	ids, names := map[int]string{}, map[string]string{}
	for _, c := range checks {
		if c.autoID {
			continue
		}
		if other, ok := ids[c.ID]; ok {
			problems = append(problems, fmt.Sprintf("%s: id %d is also %s's", c.file, c.ID, other))
		}
		ids[c.ID] = c.file
	}
	next := rego.MinID
	for i := range checks {
		c := &checks[i]
		if c.autoID {
			for ids[next] != "" {
				next++
			}
			c.ID = next
			ids[next] = c.file
		}
		if other, ok := names[c.Slug]; ok {
			problems = append(problems, fmt.Sprintf("%s: name %q is also %s's", c.file, c.Slug, other))
		}
		names[c.Slug] = c.file
	}
	return problems
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, cause(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}
