package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"bulwark/api"
	"bulwark/internal/compliance"
	"bulwark/internal/policy"
	"bulwark/internal/rego"
	"bulwark/internal/store"
)

// snapshotReader answers PolicySnapshot; any other call panics.
type snapshotReader struct {
	store.Reader
	snap policy.Snapshot
}

func (r snapshotReader) PolicySnapshot(context.Context) (policy.Snapshot, error) { return r.snap, nil }

func TestCustomChecksForParsePolicy(t *testing.T) {
	s, err := New(Config{SigningKey: make([]byte, 32)}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	empty := snapshotReader{snap: policy.Snapshot{Policies: map[string]json.RawMessage{}}}
	if got, err := s.customChecks(t.Context(), empty); err != nil || len(got) != 0 {
		t.Errorf("customChecks(no document) = %v, %v; want none", got, err)
	}
	doc, _ := json.Marshal(rego.Document{Rules: []api.CustomComplianceCheck{
		{ID: 9000, Name: "acme-a", Title: "A", Type: "rego", Script: "package a\ndeny contains 1 if false", Severity: "high"},
		{ID: 9001, Name: "acme-b", Title: "B", Type: "rego", Script: "package b\ndeny contains 1 if false", Severity: "low", Disabled: true},
	}})
	rd := snapshotReader{snap: policy.Snapshot{Revision: 3, Policies: map[string]json.RawMessage{policy.TypeCustomCompliance: doc}}}
	custom, err := s.customChecks(t.Context(), rd)
	if err != nil {
		t.Fatalf("customChecks: %v", err)
	}
	if _, err := compliance.ParsePolicy([]byte(`{"rules":[{"name":"r","condition":{"vulnerabilities":[{"id":9000}]},"checks":{"acme-b":"block"}}]}`), custom...); err != nil {
		t.Errorf("ParsePolicy(rule naming 9000 and the disabled acme-b) with customChecks: %v", err)
	}
	if _, err := compliance.ParsePolicy([]byte(`{"rules":[{"name":"r","condition":{"vulnerabilities":[{"id":9002}]}}]}`), custom...); err == nil {
		t.Errorf("ParsePolicy(rule naming 9002, which does not exist) succeeded")
	}
}

func TestNextCustomID(t *testing.T) {
	ids := func(ns ...int) rego.Document {
		var d rego.Document
		for _, n := range ns {
			d.Rules = append(d.Rules, api.CustomComplianceCheck{ID: n})
		}
		return d
	}
	tests := []struct {
		name string
		doc  rego.Document
		want int
	}{
		{"none", ids(), 9000},
		{"after the highest", ids(9000, 9005), 9006},
		{"a gap is not reused", ids(9001), 9002},
		{"the lowest free once the range is used up", ids(9000, 9001, 9999), 9002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := nextCustomID(tc.doc); err != nil || got != tc.want {
				t.Errorf("nextCustomID(%s) = %d, %v; want %d", tc.name, got, err, tc.want)
			}
		})
	}
	var full []int
	for id := rego.MinID; id <= rego.MaxID; id++ {
		full = append(full, id)
	}
	if got, err := nextCustomID(ids(full...)); err == nil {
		t.Errorf("nextCustomID(every id used) = %d, want a conflict", got)
	}
}
