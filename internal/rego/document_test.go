package rego_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"bulwark/api"
	"bulwark/internal/compliance"
	"bulwark/internal/rego"
)

func TestDocumentLoad(t *testing.T) {
	hub := module(t, "no-docker-hub")
	doc, err := json.Marshal(rego.Document{Rules: []api.CustomComplianceCheck{
		{ID: 9000, Name: "no-docker-hub", Title: "Hub", Type: "rego", Script: hub, Severity: "high"},
		{ID: 9001, Name: "off", Title: "Off", Script: "package off\ndeny contains \"always\"\n", Severity: "low", Disabled: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := rego.DecodeDocument(doc)
	if err != nil {
		t.Fatalf("DecodeDocument: %v", err)
	}
	ev, catalog, err := d.Load(t.Context(), rego.Config{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var slugs []string
	for _, c := range catalog {
		slugs = append(slugs, c.Slug+"="+c.DockerID)
	}
	if got := strings.Join(slugs, ","); got != "no-docker-hub=9000,off=9001" {
		t.Errorf("Load catalog = %s, want both checks, the disabled one too", got)
	}
	for _, f := range ev.Evaluate(deployment()) {
		if f.Check == "off" {
			t.Errorf("Load evaluator evaluated the disabled check: %+v", f)
		}
	}
	if _, err := compliance.ParsePolicy([]byte(`{"rules":[{"name":"r","checks":{"off":"block"}}]}`), catalog...); err != nil {
		t.Errorf("ParsePolicy(rule naming the disabled check): %v", err)
	}
	cat, err := d.Catalog()
	if err != nil || len(cat) != 2 {
		t.Errorf("Catalog() = %v, %v; want two entries", cat, err)
	}
}

func TestDocumentErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", `{"rules":[],"extra":1}`, `unknown field "extra"`},
		{"trailing data", `{"rules":[]} {}`, "data after the document"},
		{"not json", `{"rules":`, "decode custom compliance checks"},
		{"shell script", `{"rules":[{"_id":9000,"name":"sh","title":"Sh","type":"sh","script":"exit 1","severity":"low"}]}`, `type "sh" is not supported`},
		{"compile error", `{"rules":[{"_id":9000,"name":"bad","title":"Bad","type":"rego","script":"package p\ndeny contains x if { x := }","severity":"low"}]}`, `check 9000 "bad" does not compile: line 2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := rego.DecodeDocument([]byte(tc.doc))
			if err == nil {
				_, _, err = d.Load(t.Context(), rego.Config{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeDocument+Load(%s) error = %v, want it to contain %q", tc.doc, err, tc.want)
			}
		})
	}
	_, err := rego.FromAPI(api.CustomComplianceCheck{ID: 9000, Name: "x", Type: "powershell"})
	if !errors.Is(err, rego.ErrInvalid) {
		t.Errorf("FromAPI(type powershell) error = %v, want ErrInvalid", err)
	}
}
