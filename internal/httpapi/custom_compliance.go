package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"bulwark/api"
	"bulwark/internal/audit"
	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
	"bulwark/internal/policy"
	"bulwark/internal/rego"
	"bulwark/internal/store"
)

// maxCustomDocBytes bounds the custom-compliance document, which travels to
// every Defender inside the policy snapshot.
const maxCustomDocBytes = 1 << 20

// compliancePolicyTypes are the policies whose rules may name custom checks.
func compliancePolicyTypes() []string { return []string{"compliance/container", "compliance/host"} }

// customChecks returns the catalog entries of the stored custom compliance
// checks, disabled ones too: pass them to compliance.ParsePolicy when
// validating a compliance policy, and to compliance.Options.Custom. Inside
// Server.change, pass the transaction, so that a policy is checked against
// the custom checks it is stored with.
func (s *Server) customChecks(ctx context.Context, rd store.Reader) ([]compliance.Check, error) {
	doc, err := customDocument(ctx, rd)
	if err != nil {
		return nil, err
	}
	return doc.Catalog()
}

// customDocument reads the stored custom-compliance document.
func customDocument(ctx context.Context, rd store.Reader) (rego.Document, error) {
	snap, err := rd.PolicySnapshot(ctx)
	if err != nil {
		return rego.Document{}, fmt.Errorf("load policy: %w", err)
	}
	return customDocumentOf(snap)
}

func customDocumentOf(snap policy.Snapshot) (rego.Document, error) {
	raw, ok := snap.Policies[policy.TypeCustomCompliance]
	if !ok {
		return rego.Document{}, nil
	}
	return rego.DecodeDocument(raw)
}

// listCustomCompliance answers GET /api/v1/custom-compliance: every custom
// check, by ID.
func (s *Server) listCustomCompliance(w http.ResponseWriter, r *http.Request, _ principal) error {
	doc, err := customDocument(r.Context(), s.store)
	if err != nil {
		return err
	}
	out := doc.Rules
	if out == nil {
		out = []api.CustomComplianceCheck{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// putCustomCompliance answers PUT /api/v1/custom-compliance: it creates the
// check (the next free ID from 9000 when _id is 0) or replaces the one with
// its _id, after compiling its script, and pushes the new snapshot to the
// Defenders.
func (s *Server) putCustomCompliance(w http.ResponseWriter, r *http.Request, p principal) error {
	var in api.CustomComplianceCheck
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Type == "" {
		in.Type = api.CustomComplianceType
	}
	if in.Title == "" {
		in.Title = in.Name
	}
	in.Owner, in.Modified, in.PreviousName = p.username, s.cfg.Now().UTC(), ""
	if in.ID != 0 && (in.ID < rego.MinID || in.ID > rego.MaxID) {
		return badRequest("_id %d is outside the custom check range %d-%d (0 picks the next free one)", in.ID, rego.MinID, rego.MaxID)
	}

	// Compile outside the transaction: it does not depend on the other
	// checks, and the store's writer should not wait for it. A new check's
	// ID is the one it will most likely get, for the messages.
	probe := in
	if probe.ID == 0 {
		doc, err := customDocument(r.Context(), s.store)
		if err != nil {
			return err
		}
		if probe.ID, err = nextCustomID(doc); err != nil {
			return err
		}
	}
	if err := compileCustom(r.Context(), probe); err != nil {
		return err
	}

	err := s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		snap, err := tx.PolicySnapshot(ctx)
		if err != nil {
			return "", fmt.Errorf("load policy: %w", err)
		}
		doc, err := customDocumentOf(snap)
		if err != nil {
			return "", err
		}
		if in.ID == 0 {
			if in.ID, err = nextCustomID(doc); err != nil {
				return "", err
			}
		}
		if i := slices.IndexFunc(doc.Rules, func(c api.CustomComplianceCheck) bool { return c.Name == in.Name && c.ID != in.ID }); i >= 0 {
			return "", &conflictError{msg: fmt.Sprintf("name %q is taken by custom check %d", in.Name, doc.Rules[i].ID)}
		}
		before := doc
		doc.Rules = slices.Clone(doc.Rules)
		verb := "created"
		var old api.CustomComplianceCheck
		if i := slices.IndexFunc(doc.Rules, func(c api.CustomComplianceCheck) bool { return c.ID == in.ID }); i >= 0 {
			verb, old = "updated", doc.Rules[i]
			if old.Name != in.Name {
				in.PreviousName = old.Name
			}
			doc.Rules[i] = in
		} else {
			doc.Rules = append(doc.Rules, in)
			slices.SortFunc(doc.Rules, func(a, b api.CustomComplianceCheck) int { return a.ID - b.ID })
		}
		rev, err := s.putCustomDocument(ctx, tx, snap, before, doc)
		if err != nil {
			return "", err
		}
		what := fmt.Sprintf("%s custom compliance check %d %q", verb, in.ID, in.Name)
		if verb == "updated" {
			what += customDiff(old, in)
		}
		return fmt.Sprintf("%s (revision %d)", what, rev), nil
	})
	if err != nil {
		return err
	}
	if err := s.pushPolicy(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, in)
	return nil
}

// deleteCustomCompliance answers DELETE /api/v1/custom-compliance/{id}. A
// check that a compliance rule names cannot be deleted.
func (s *Server) deleteCustomCompliance(w http.ResponseWriter, r *http.Request, p principal) error {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		return badRequest("custom check id %q is not a number", r.PathValue("id"))
	}
	err = s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		snap, err := tx.PolicySnapshot(ctx)
		if err != nil {
			return "", fmt.Errorf("load policy: %w", err)
		}
		doc, err := customDocumentOf(snap)
		if err != nil {
			return "", err
		}
		i := slices.IndexFunc(doc.Rules, func(c api.CustomComplianceCheck) bool { return c.ID == id })
		if i < 0 {
			return "", fmt.Errorf("custom compliance check %d: %w", id, store.ErrNotFound)
		}
		gone := doc.Rules[i]
		after := rego.Document{Rules: slices.Delete(slices.Clone(doc.Rules), i, i+1)}
		rev, err := s.putCustomDocument(ctx, tx, snap, doc, after)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("deleted custom compliance check %d %q (revision %d)", id, gone.Name, rev), nil
	})
	if err != nil {
		return err
	}
	if err := s.pushPolicy(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// putCustomDocument stores after in place of before, unless a compliance
// policy that is valid with before's checks would not be with after's (a
// rule names a check that is deleted or renamed).
func (s *Server) putCustomDocument(ctx context.Context, tx store.Writer, snap policy.Snapshot, before, after rego.Document) (int64, error) {
	was, err := before.Catalog()
	if err != nil {
		return 0, err
	}
	will, err := after.Catalog()
	if err != nil {
		return 0, badRequest("%v", err)
	}
	for _, typ := range append(compliancePolicyTypes(), k8s.PolicyTypeAdmission) {
		pdoc, ok := snap.Policies[typ]
		if !ok {
			continue
		}
		parse := func(custom []compliance.Check) error {
			if typ == k8s.PolicyTypeAdmission {
				_, err := k8s.ParseAdmissionPolicy(pdoc, custom...)
				return err
			}
			_, err := compliance.ParsePolicy(pdoc, custom...)
			return err
		}
		if parse(was) != nil {
			continue // not valid before either: not this change's doing
		}
		if err := parse(will); err != nil {
			return 0, &conflictError{msg: fmt.Sprintf("the %s policy names this custom check; change the policy first (%v)", typ, err)}
		}
	}
	raw, err := json.Marshal(after)
	if err != nil {
		return 0, fmt.Errorf("encode custom compliance checks: %w", err)
	}
	if len(raw) > maxCustomDocBytes {
		return 0, badRequest("the custom compliance checks would take %d bytes; at most %d fit in the policy sent to Defenders", len(raw), maxCustomDocBytes)
	}
	return tx.PutPolicy(ctx, policy.TypeCustomCompliance, raw)
}

// pushPolicy sends the committed snapshot to every connected Defender.
func (s *Server) pushPolicy(ctx context.Context) error {
	snap, err := s.store.PolicySnapshot(ctx)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	s.fleet.PolicyChanged(snap)
	return nil
}

// compileCustom compiles one check; what is wrong with it is a bad request.
func compileCustom(ctx context.Context, c api.CustomComplianceCheck) error {
	ch, err := rego.FromAPI(c)
	if err == nil {
		_, err = rego.Compile(ctx, []rego.Check{ch}, rego.Config{})
	}
	var ce *rego.CompileError
	if errors.As(err, &ce) || errors.Is(err, rego.ErrInvalid) {
		return badRequest("%v", err)
	}
	return err
}

// nextCustomID is one past the highest ID in use, or the lowest free one
// when that is past the range.
func nextCustomID(doc rego.Document) (int, error) {
	used := map[int]bool{}
	next := rego.MinID
	for _, c := range doc.Rules {
		used[c.ID] = true
		next = max(next, c.ID+1)
	}
	if next <= rego.MaxID {
		return next, nil
	}
	for id := rego.MinID; id <= rego.MaxID; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, &conflictError{msg: fmt.Sprintf("every custom check id from %d to %d is in use", rego.MinID, rego.MaxID)}
}

// customDiff names what an update changed, for the audit record.
func customDiff(old, c api.CustomComplianceCheck) string {
	var ch []string
	short := func(field, a, b string) {
		if a != b {
			ch = append(ch, fmt.Sprintf("%s %q→%q", field, a, b))
		}
	}
	short("name", old.Name, c.Name)
	short("title", old.Title, c.Title)
	short("severity", old.Severity, c.Severity)
	if old.Disabled != c.Disabled {
		ch = append(ch, fmt.Sprintf("disabled %t→%t", old.Disabled, c.Disabled))
	}
	for _, f := range []struct {
		name string
		a, b string
	}{{"script", old.Script, c.Script}, {"description", old.Description, c.Description}, {"remediation", old.Remediation, c.Remediation}, {"notes", old.Notes, c.Notes}} {
		if f.a != f.b {
			ch = append(ch, f.name)
		}
	}
	if len(ch) == 0 {
		return ": no change"
	}
	return ": " + strings.Join(ch, ", ")
}
