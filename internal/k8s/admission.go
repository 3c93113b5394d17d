package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
)

// PolicyTypeAdmission is the policy type, and the _id, of the admission
// controller's policy.
const PolicyTypeAdmission = "admission"

// The admission controller's modes.
const (
	// ModeAudit allows every request; what a rule would block is returned
	// as a warning.
	ModeAudit = "audit"
	// ModeEnforce denies the requests a rule blocks.
	ModeEnforce = "enforce"
)

// The Pod Security Standards levels of an admission policy. PSSNone turns
// the PSS profiles off (PSA calls this level privileged).
const (
	PSSNone       = "none"
	PSSBaseline   = "baseline"
	PSSRestricted = "restricted"
)

// AdmissionPolicy is the admission controller's policy: the document of
// policy type "admission" (GET and PUT /api/v1/policies/admission).
type AdmissionPolicy struct {
	ID string `json:"_id,omitempty"`
	// Mode is ModeAudit or ModeEnforce.
	Mode string `json:"mode"`
	// ExemptNamespaces are admitted without evaluation. The generated
	// webhook configuration also keeps them from being sent at all.
	ExemptNamespaces []string `json:"exemptNamespaces"`
	// PSSLevel and PSSVersion select the Pod Security Standards profile
	// evaluated next to the catalog's checks (findings pss-baseline and
	// pss-restricted).
	PSSLevel   string `json:"pssLevel"`
	PSSVersion string `json:"pssVersion"`
	// IgnoreAnnotations honours the bulwark.dev/ignore-check.<check>
	// annotations of the objects. Off by default: whoever may create a
	// Deployment could then switch off the checks that would deny it.
	IgnoreAnnotations bool `json:"ignoreAnnotations,omitempty"`
	// Rules are compliance rules; the first enabled rule whose collections
	// match a container (its image, name, the namespace, the object's
	// labels, the cluster) decides its findings: block denies in enforce
	// mode, alert allows with a warning.
	Rules []compliance.Rule `json:"rules"`
}

// DefaultExemptNamespaces are exempt until a policy says otherwise: the
// control plane's own namespace, whose pods must start for the cluster to
// work, the webhook included.
func DefaultExemptNamespaces() []string { return []string{"kube-system"} }

// DefaultAdmissionPolicy is the policy in force before anybody sets one:
// audit mode, kube-system exempt, the PSS baseline profile at the newest
// version, and the built-in compliance rules (alert on critical and high).
func DefaultAdmissionPolicy() AdmissionPolicy {
	return AdmissionPolicy{
		ID:               PolicyTypeAdmission,
		Mode:             ModeAudit,
		ExemptNamespaces: DefaultExemptNamespaces(),
		PSSLevel:         PSSBaseline,
		PSSVersion:       "latest",
		Rules:            compliance.DefaultRules(),
	}
}

// ErrInvalidAdmissionPolicy marks a document ParseAdmissionPolicy refuses.
var ErrInvalidAdmissionPolicy = errors.New("invalid admission policy")

// ParseAdmissionPolicy decodes and validates an admission policy document.
// A field left out takes DefaultAdmissionPolicy's value (an empty
// exemptNamespaces list exempts none). Unknown fields, trailing data, a bad
// mode, namespace, PSS level or version, and rules that
// compliance.ParsePolicy refuses (checks neither in the catalog nor among
// custom) are refused with an error that names every problem and its field.
func ParseAdmissionPolicy(doc []byte, custom ...compliance.Check) (AdmissionPolicy, error) {
	var in struct {
		ID                string             `json:"_id"`
		Mode              *string            `json:"mode"`
		ExemptNamespaces  *[]string          `json:"exemptNamespaces"`
		PSSLevel          *string            `json:"pssLevel"`
		PSSVersion        *string            `json:"pssVersion"`
		IgnoreAnnotations bool               `json:"ignoreAnnotations"`
		Rules             *[]json.RawMessage `json:"rules"`
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return AdmissionPolicy{}, fmt.Errorf("%w: %v", ErrInvalidAdmissionPolicy, err) //nolint:errorlint // the cause is a message for the user
	}
	if dec.More() {
		return AdmissionPolicy{}, fmt.Errorf("%w: data after the policy object", ErrInvalidAdmissionPolicy)
	}
	p := DefaultAdmissionPolicy()
	p.IgnoreAnnotations = in.IgnoreAnnotations
	var problems []string
	if in.ID != "" && in.ID != PolicyTypeAdmission {
		problems = append(problems, fmt.Sprintf("_id: %q is not %q", in.ID, PolicyTypeAdmission))
	}
	if in.Mode != nil {
		p.Mode = *in.Mode
		if p.Mode != ModeAudit && p.Mode != ModeEnforce {
			problems = append(problems, fmt.Sprintf("mode: %q is not audit or enforce", p.Mode))
		}
	}
	if in.ExemptNamespaces != nil {
		p.ExemptNamespaces = *in.ExemptNamespaces
		if p.ExemptNamespaces == nil {
			p.ExemptNamespaces = []string{}
		}
		for i, ns := range p.ExemptNamespaces {
			if err := ValidateNamespace(ns); err != nil {
				problems = append(problems, fmt.Sprintf("exemptNamespaces[%d]: %v", i, err))
			} else if slices.Index(p.ExemptNamespaces, ns) < i {
				problems = append(problems, fmt.Sprintf("exemptNamespaces[%d]: %q is listed twice", i, ns))
			}
		}
	}
	if in.PSSLevel != nil {
		p.PSSLevel = *in.PSSLevel
		if p.PSSLevel != PSSNone && p.PSSLevel != PSSBaseline && p.PSSLevel != PSSRestricted {
			problems = append(problems, fmt.Sprintf("pssLevel: %q is not baseline, restricted or none", p.PSSLevel))
		}
	}
	if in.PSSVersion != nil {
		p.PSSVersion = *in.PSSVersion
		if _, err := ParsePSSVersion(p.PSSVersion); err != nil {
			problems = append(problems, "pssVersion: "+err.Error())
		}
	}
	if in.Rules != nil {
		rules := *in.Rules
		if rules == nil {
			rules = []json.RawMessage{}
		}
		// compliance.ParsePolicy validates them as the compliance policies'
		// rules, and names each problem by rules[i].
		raw, err := json.Marshal(map[string]any{"rules": rules})
		if err != nil {
			return AdmissionPolicy{}, fmt.Errorf("%w: rules: %v", ErrInvalidAdmissionPolicy, err) //nolint:errorlint // message only
		}
		cp, err := compliance.ParsePolicy(raw, custom...)
		if err != nil {
			problems = append(problems, strings.TrimPrefix(err.Error(), compliance.ErrInvalidPolicy.Error()+": "))
		}
		p.Rules = cp.Rules
	}
	if len(problems) > 0 {
		return AdmissionPolicy{}, fmt.Errorf("%w: %s", ErrInvalidAdmissionPolicy, strings.Join(problems, "; "))
	}
	return p, nil
}

// Level returns the policy's PSS level for PSS (privileged for none) and
// its version; the policy must have passed ParseAdmissionPolicy.
func (p AdmissionPolicy) Level() (psaapi.Level, psaapi.Version, error) {
	v, err := ParsePSSVersion(p.PSSVersion)
	if err != nil {
		return "", psaapi.Version{}, err
	}
	switch p.PSSLevel {
	case PSSNone:
		return psaapi.LevelPrivileged, v, nil
	case PSSBaseline:
		return psaapi.LevelBaseline, v, nil
	case PSSRestricted:
		return psaapi.LevelRestricted, v, nil
	}
	return "", psaapi.Version{}, fmt.Errorf("pss level %q: want baseline, restricted or none", p.PSSLevel)
}

// ValidateNamespace reports why s cannot be a namespace's name (an RFC 1123
// label: at most 63 lowercase letters, digits and '-', starting and ending
// with a letter or digit).
func ValidateNamespace(s string) error {
	if err := dnsLabel(s); err != nil {
		return fmt.Errorf("%q is not a namespace name: %w", s, err)
	}
	return nil
}

// dnsLabel checks an RFC 1123 label.
func dnsLabel(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > 63:
		return errors.New("longer than 63 characters")
	case !alnum(s[0]) || !alnum(s[len(s)-1]):
		return errors.New("must start and end with a lowercase letter or digit")
	}
	for i := range len(s) {
		if !alnum(s[i]) && s[i] != '-' {
			return errors.New("only lowercase letters, digits and '-' are allowed")
		}
	}
	return nil
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
