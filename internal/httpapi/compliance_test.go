package httpapi

import (
	"encoding/json"
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

// TestCompliancePolicyCustomChecks: a compliance policy may name a custom
// check, by ID or slug, once it is stored, and not before.
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
	fleet := &pushRecorder{}
	s, err := New(Config{SigningKey: make([]byte, 32), BcryptCost: 4}, db, fleet, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	put := func(path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPut, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("admin", "admin-password")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	const (
		byID   = `{"rules":[{"name":"registry","condition":{"vulnerabilities":[{"id":9000,"block":true}]}}]}`
		bySlug = `{"rules":[{"name":"registry","checks":{"no-docker-hub":"alert"}}]}`
	)
	for body, want := range map[string]string{
		byID:   "rules[0].condition.vulnerabilities[0]: id 9000 is not a check",
		bySlug: `rules[0].checks: no check "no-docker-hub"`,
	} {
		rec := put("/api/v1/policies/compliance/container", body)
		var e struct{ Err string }
		if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Err, want) {
			t.Errorf("PUT %s before the custom check exists = %d %s, want 400 mentioning %q", body, rec.Code, rec.Body, want)
		}
	}
	if len(fleet.pushed) != 0 {
		t.Fatalf("refused policies pushed %d snapshots", len(fleet.pushed))
	}

	check := `{"name":"no-docker-hub","severity":"high","script":"package hub\ndeny contains \"from docker.io\" if startswith(input.runtime.image.value, \"docker.io/\")\n"}`
	if rec := put("/api/v1/custom-compliance", check); rec.Code != http.StatusOK {
		t.Fatalf("PUT /api/v1/custom-compliance = %d %s", rec.Code, rec.Body)
	}
	for _, body := range []string{byID, bySlug} {
		fleet.pushed = nil
		if rec := put("/api/v1/policies/compliance/container", body); rec.Code != http.StatusOK {
			t.Fatalf("PUT %s = %d %s, want 200 once the custom check exists", body, rec.Code, rec.Body)
		}
		if len(fleet.pushed) != 1 {
			t.Fatalf("PUT %s pushed %d snapshots, want 1", body, len(fleet.pushed))
		}
		p, err := compliance.ParsePolicy(fleet.pushed[0].Policies["compliance/container"], compliance.Check{Slug: "no-docker-hub", DockerID: "9000", CRIID: "9000"})
		if err != nil || p.PolicyType != compliance.PolicyTypeContainer || p.ID != compliance.PolicyTypeContainer || len(p.Rules) != 1 || p.Rules[0].Name != "registry" {
			t.Errorf("pushed compliance/container = %s (%v), want the registry rule with _id and policyType", fleet.pushed[0].Policies["compliance/container"], err)
		}
	}
}
