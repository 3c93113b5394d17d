package compliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Policy is a compliance policy in Prisma's shape, as the Console's
// /api/v1/policies/compliance/{container,host} read and write it and as
// Defenders receive it: ordered rules, the first enabled rule whose
// collections match a resource decides.
type Policy struct {
	ID         string `json:"_id,omitempty"`
	PolicyType string `json:"policyType,omitempty"` // containerCompliance, hostCompliance
	Rules      []Rule `json:"rules"`
}

// Prisma's policy types of the two compliance policies.
const (
	PolicyTypeContainer = "containerCompliance"
	PolicyTypeHost      = "hostCompliance"
)

// DefaultPolicy is the policy in force before anybody sets one: the
// built-in rules.
func DefaultPolicy(policyType string) Policy {
	return Policy{ID: policyType, PolicyType: policyType, Rules: DefaultRules()}
}

// ErrInvalidPolicy marks a policy document that ParsePolicy refuses.
var ErrInvalidPolicy = errors.New("invalid compliance policy")

// ParsePolicy decodes and validates a policy document. Unknown fields,
// unnamed or duplicate rules, unknown effects and checks that are neither in
// the catalog nor among custom are refused with an error that names the rule
// and the field.
func ParsePolicy(doc []byte, custom ...Check) (Policy, error) {
	opts := Options{Custom: custom}
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrInvalidPolicy, err) //nolint:errorlint // the cause is a message for the user
	}
	if dec.More() {
		return Policy{}, fmt.Errorf("%w: data after the policy object", ErrInvalidPolicy)
	}
	if p.Rules == nil {
		return Policy{}, fmt.Errorf("%w: \"rules\" array is missing", ErrInvalidPolicy)
	}
	var problems []string
	seen := map[string]bool{}
	for i, r := range p.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		if strings.TrimSpace(r.Name) == "" {
			problems = append(problems, at+": name is empty")
		} else if seen[r.Name] {
			problems = append(problems, fmt.Sprintf("%s: a rule named %q comes earlier", at, r.Name))
		}
		seen[r.Name] = true
		if !r.Effect.valid() {
			problems = append(problems, fmt.Sprintf("%s.effect: %q is not ignore, alert or block", at, r.Effect))
		}
		for slug, e := range r.Checks {
			if _, ok := opts.lookup(slug); !ok {
				problems = append(problems, fmt.Sprintf("%s.checks: no check %q in the catalog", at, slug))
			}
			if !e.valid() {
				problems = append(problems, fmt.Sprintf("%s.checks[%q]: %q is not ignore, alert or block", at, slug, e))
			}
		}
		if r.Condition != nil {
			for j, ref := range r.Condition.Checks {
				if !ref.known(custom) {
					problems = append(problems, fmt.Sprintf("%s.condition.vulnerabilities[%d]: %s is not a check in the catalog", at, j, ref))
				}
			}
		}
	}
	if len(problems) > 0 {
		return Policy{}, fmt.Errorf("%w: %s", ErrInvalidPolicy, strings.Join(problems, "; "))
	}
	return p, nil
}

func (e Effect) valid() bool {
	switch e {
	case EffectDefault, EffectIgnore, EffectAlert, EffectBlock:
		return true
	}
	return false
}

func (r CheckRef) known(custom []Check) bool {
	return slices.ContainsFunc(catalog(), r.Matches) || slices.ContainsFunc(custom, r.Matches)
}

// String names the reference as the user wrote it: "id 5515" or "check \"net-raw\"".
func (r CheckRef) String() string {
	if r.Check != "" {
		return fmt.Sprintf("check %q", r.Check)
	}
	return fmt.Sprintf("id %d", r.ID)
}

// Blocking reports whether any enabled rule can block, which is when the
// runc shim must stand in front of runc.
func (p Policy) Blocking() bool {
	for _, r := range p.Rules {
		if r.Disabled {
			continue
		}
		if r.Effect == EffectBlock {
			return true
		}
		for _, e := range r.Checks {
			if e == EffectBlock {
				return true
			}
		}
		if r.Condition != nil {
			for _, ref := range r.Condition.Checks {
				if ref.Block {
					return true
				}
			}
		}
	}
	return false
}
