package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bulwark/internal/auth"
	"bulwark/internal/compliance"
	"bulwark/internal/credential"
	"bulwark/internal/policy"
	"bulwark/internal/sqlite"
	"bulwark/internal/store"
)

// pushRecorder is the Fleet of these tests: it records the snapshots pushed.
type pushRecorder struct {
	Fleet  // the other methods are not called
	pushed []policy.Snapshot
}

func (p *pushRecorder) PolicyChanged(snap policy.Snapshot) { p.pushed = append(p.pushed, snap) }

// TestCompliancePolicyCustomChecks: the seam for custom checks. A policy may
// name a check that Config.ComplianceChecks supplies, and only then.
func TestCompliancePolicyCustomChecks(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "bulwark.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	hash, err := credential.HashPassword("admin-password", 4)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = db.Update(t.Context(), func(w store.Writer) error {
		return w.CreateUser(t.Context(), auth.User{Username: "admin", Role: auth.RoleAdmin, AuthType: auth.AuthBasic, PasswordHash: hash, CreatedAt: now, LastModified: now, PasswordChangedAt: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	custom := compliance.Check{Slug: "no-docker-hub", DockerID: "9001", CRIID: "9001", Severity: compliance.SeverityHigh, Title: "Images come from our registry", AppliesTo: []compliance.Scope{compliance.ScopeRuntime}}
	var checksErr error
	supply := func(context.Context) ([]compliance.Check, error) { return []compliance.Check{custom}, checksErr }

	const (
		byID   = `{"rules":[{"name":"registry","condition":{"vulnerabilities":[{"id":9001,"block":true}]}}]}`
		bySlug = `{"rules":[{"name":"registry","checks":{"no-docker-hub":"alert"}}]}`
	)
	tests := []struct {
		name       string
		checks     func(context.Context) ([]compliance.Check, error)
		checksErr  error
		body       string
		wantStatus int
		wantErr    string
	}{
		{"custom ID without the seam", nil, nil, byID, 400, "rules[0].condition.vulnerabilities[0]: id 9001 is not a check"},
		{"custom slug without the seam", nil, nil, bySlug, 400, `rules[0].checks: no check "no-docker-hub"`},
		{"custom ID", supply, nil, byID, 200, ""},
		{"custom slug", supply, nil, bySlug, 200, ""},
		{"the seam fails", supply, errors.New("store down"), byID, 500, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checksErr = tc.checksErr
			fleet := &pushRecorder{}
			s, err := New(Config{SigningKey: make([]byte, 32), BcryptCost: 4, ComplianceChecks: tc.checks}, db, fleet, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPut, "/api/v1/policies/compliance/container", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth("admin", "admin-password")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("PUT %s = %d %s, want %d", tc.body, rec.Code, rec.Body, tc.wantStatus)
			}
			if tc.wantStatus != 200 {
				var e struct{ Err string }
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Err, tc.wantErr) {
					t.Errorf("PUT %s: err = %q (%v), want it to contain %q", tc.body, e.Err, err, tc.wantErr)
				}
				if len(fleet.pushed) != 0 {
					t.Errorf("PUT %s refused, yet pushed %d snapshots", tc.body, len(fleet.pushed))
				}
				return
			}
			if len(fleet.pushed) != 1 {
				t.Fatalf("PUT %s pushed %d snapshots, want 1", tc.body, len(fleet.pushed))
			}
			p, err := compliance.ParsePolicy(fleet.pushed[0].Policies["compliance/container"], custom)
			if err != nil || p.PolicyType != compliance.PolicyTypeContainer || p.ID != compliance.PolicyTypeContainer || len(p.Rules) != 1 || p.Rules[0].Name != "registry" {
				t.Errorf("pushed compliance/container = %s (%v), want the registry rule with _id and policyType", fleet.pushed[0].Policies["compliance/container"], err)
			}
		})
	}
}
