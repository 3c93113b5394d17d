package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"bulwark/api"
	"bulwark/internal/compliance"
)

// Document is the policy document of type custom-compliance: every custom
// check in the shape of /api/v1/custom-compliance, as the Console stores it
// and Defenders receive it in the policy snapshot.
type Document struct {
	Rules []api.CustomComplianceCheck `json:"rules"`
}

// DecodeDocument decodes a custom-compliance document, refusing unknown
// fields and trailing data. It does not compile the checks.
func DecodeDocument(doc []byte) (Document, error) {
	var d Document
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Document{}, fmt.Errorf("decode custom compliance checks: %w", err)
	}
	if dec.More() {
		return Document{}, errors.New("decode custom compliance checks: data after the document")
	}
	return d, nil
}

// FromAPI is the check that c describes. Only Rego scripts are supported; an
// empty type means Rego.
func FromAPI(c api.CustomComplianceCheck) (Check, error) {
	ch := Check{
		ID: c.ID, Slug: c.Name, Title: c.Title, Severity: compliance.Severity(c.Severity),
		Description: c.Description, Remediation: c.Remediation, Module: c.Script,
	}
	if c.Type != "" && c.Type != api.CustomComplianceType {
		return Check{}, fmt.Errorf("%w: %s: type %q is not supported; custom checks are written in %s", ErrInvalid, ch, c.Type, api.CustomComplianceType)
	}
	return ch, nil
}

// Catalog returns the catalog entries of every check of d, disabled ones
// too, so that rules naming a disabled check stay valid. It compiles
// nothing: use it to validate policies with compliance.ParsePolicy.
func (d Document) Catalog() ([]compliance.Check, error) {
	out := make([]compliance.Check, 0, len(d.Rules))
	for _, c := range d.Rules {
		ch, err := FromAPI(c)
		if err != nil {
			return nil, err
		}
		out = append(out, ch.Check())
	}
	return out, nil
}

// Load compiles every check of d and returns the evaluator of the enabled
// ones and the catalog entries of all of them (for Options.Custom and
// ParsePolicy). A check that does not compile fails the whole document.
func (d Document) Load(ctx context.Context, cfg Config) (*Evaluator, []compliance.Check, error) {
	checks := make([]Check, 0, len(d.Rules))
	var disabled []int
	var errs []error
	for _, c := range d.Rules {
		ch, err := FromAPI(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		checks = append(checks, ch)
		if c.Disabled {
			disabled = append(disabled, c.ID)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	ev, err := Compile(ctx, checks, cfg)
	if err != nil {
		return nil, nil, err
	}
	catalog := ev.Checks()
	ev.checks = slices.DeleteFunc(ev.checks, func(c compiled) bool { return slices.Contains(disabled, c.ID) })
	return ev, catalog, nil
}
