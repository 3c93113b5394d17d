package rego

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"bulwark/internal/compliance"
)

// Metadata is what a check's module says about the check in OPA's
// METADATA comment on its package, so that a .rego file can carry its own
// ID, severity and title:
//
//	# METADATA
//	# title: Images come from our registries
//	# description: Docker Hub images bypass our image scanning.
//	# custom:
//	#   id: 9001
//	#   severity: high
//	#   remediation: Push the image to registry.acme.io.
//	package acme.no_docker_hub
//
// title and description are OPA's own fields; custom.id, custom.name,
// custom.severity and custom.remediation are Bulwark's. Other custom keys
// are left to other tools. Fields the comment leaves out are zero.
type Metadata struct {
	ID          int
	Name        string
	Title       string
	Description string
	Severity    compliance.Severity
	Remediation string
}

// ParseMetadata reads the METADATA comment of the module's package. found
// is false when there is none. The error names the line of a module that
// does not parse, or the field of the comment that has the wrong type.
func ParseMetadata(file, module string) (m Metadata, found bool, err error) {
	mod, err := ast.ParseModuleWithOpts(file, module, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		ps := problems(err)
		msgs := make([]string, len(ps))
		for i, p := range ps {
			msgs[i] = p.String()
		}
		return Metadata{}, false, errors.New(strings.Join(msgs, "; "))
	}
	if mod == nil {
		return Metadata{}, false, errors.New("the module has no package declaration")
	}
	var a *ast.Annotations
	for _, an := range mod.Annotations {
		if an.Scope == "package" {
			a = an
			break
		}
	}
	if a == nil {
		return Metadata{}, false, nil
	}
	m = Metadata{Title: a.Title, Description: a.Description}
	line := 0
	if a.Location != nil {
		line = a.Location.Row
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("line %d: METADATA: %s", line, fmt.Sprintf(format, args...))
	}
	str := func(key string) (string, error) {
		v, ok := a.Custom[key]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fail("custom.%s is %s, not a string", key, jsonKind(v))
		}
		return s, nil
	}
	if v, ok := a.Custom["id"]; ok {
		id, ok := integer(v)
		if !ok {
			return Metadata{}, true, fail("custom.id is %s, not a number from %d to %d", describeValue(v), MinID, MaxID)
		}
		m.ID = id
	}
	var sev string
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &m.Name}, {"severity", &sev}, {"remediation", &m.Remediation}} {
		if *f.dst, err = str(f.key); err != nil {
			return Metadata{}, true, err
		}
	}
	m.Severity = compliance.Severity(strings.ToLower(sev))
	return m, true, nil
}

// integer is a whole number as the METADATA YAML decodes it.
func integer(v any) (int, bool) {
	var f float64
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case float64:
		f = n
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			return 0, false
		}
		f = float64(i)
	default:
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, false
	}
	return int(f), true
}

func describeValue(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return jsonKind(v)
}
