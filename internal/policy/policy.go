// Package policy holds Bulwark's policies. Today: the versioned snapshot of
// every policy type that the Console pushes to Defenders; the rule engine
// that evaluates them comes with the compliance and runtime issues.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Types are the policy types the Console stores, by their API path under
// /api/v1/policies/.
func Types() []string {
	return []string{
		"runtime/container", "runtime/host",
		"compliance/container", "compliance/host",
		"vulnerability/images", "vulnerability/host",
		"firewall/app/container", "cnns/container", "admission",
		TypeCustomCompliance,
	}
}

// TypeCustomCompliance is the policy type that holds the custom compliance
// checks (`{"rules": [check…]}`, each in the shape of
// /api/v1/custom-compliance), so that they travel to Defenders in the
// snapshot with the policies that name them. The Console writes it only
// through /api/v1/custom-compliance, which compiles each check.
const TypeCustomCompliance = "custom-compliance"

// Snapshot is every policy at one revision. Revisions start at 1 and grow by
// one with every change; 0 means no policy was ever set.
type Snapshot struct {
	Revision int64
	Policies map[string]json.RawMessage
}

// ValidType reports an error unless typ is a known policy type.
func ValidType(typ string) error {
	if !slices.Contains(Types(), typ) {
		return fmt.Errorf("%w: unknown policy type %q (known: %s)", ErrInvalid, typ, strings.Join(Types(), ", "))
	}
	return nil
}

// ErrInvalid marks a policy the Console refuses.
var ErrInvalid = errors.New("invalid policy")

// Validate checks a policy document: a JSON object with a "rules" array
// whose rules are objects with unique, non-empty names.
func Validate(doc []byte) error {
	var d struct {
		Rules []map[string]json.RawMessage `json:"rules"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err) //nolint:errorlint // message only
	}
	if d.Rules == nil {
		return fmt.Errorf("%w: \"rules\" array is missing", ErrInvalid)
	}
	seen := map[string]bool{}
	for i, r := range d.Rules {
		var name string
		if raw, ok := r["name"]; !ok || json.Unmarshal(raw, &name) != nil || strings.TrimSpace(name) == "" {
			return fmt.Errorf("%w: rule %d has no name", ErrInvalid, i)
		}
		if seen[name] {
			return fmt.Errorf("%w: two rules are named %q", ErrInvalid, name)
		}
		seen[name] = true
	}
	return nil
}
