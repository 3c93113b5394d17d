package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"bulwark/internal/audit"
	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
	"bulwark/internal/store"
)

// Admission audit page sizes.
const (
	defaultAdmissionAuditLimit = 100
	maxAdmissionAuditLimit     = 1000
)

// storedAdmissionPolicy returns the admission policy of the store's snapshot
// as it reads back: the built-in one before any PUT. A stored document that
// no longer validates (a custom check it named is gone) is still shown.
func storedAdmissionPolicy(ctx context.Context, rd store.Reader) (k8s.AdmissionPolicy, int64, error) {
	snap, err := rd.PolicySnapshot(ctx)
	if err != nil {
		return k8s.AdmissionPolicy{}, 0, fmt.Errorf("load policy: %w", err)
	}
	p := k8s.DefaultAdmissionPolicy()
	if doc, ok := snap.Policies[k8s.PolicyTypeAdmission]; ok {
		if err := json.Unmarshal(doc, &p); err != nil {
			return k8s.AdmissionPolicy{}, 0, fmt.Errorf("stored admission policy: %w", err)
		}
	}
	p.ID = k8s.PolicyTypeAdmission
	if p.Rules == nil {
		p.Rules = []compliance.Rule{}
	}
	if p.ExemptNamespaces == nil {
		p.ExemptNamespaces = []string{}
	}
	return p, snap.Revision, nil
}

// getAdmissionPolicy answers GET /api/v1/policies/admission.
func (s *Server) getAdmissionPolicy(w http.ResponseWriter, r *http.Request, _ principal) error {
	p, rev, err := storedAdmissionPolicy(r.Context(), s.store)
	if err != nil {
		return err
	}
	w.Header().Set("X-Bulwark-Policy-Revision", strconv.FormatInt(rev, 10))
	writeJSON(w, http.StatusOK, p)
	return nil
}

// putAdmissionPolicy answers PUT /api/v1/policies/admission: the document
// is validated with k8s.ParseAdmissionPolicy against the catalog and the
// stored custom checks, stored with the defaults filled in, audited, and
// pushed to the admission controller and the Defenders.
func (s *Server) putAdmissionPolicy(w http.ResponseWriter, r *http.Request, pr principal) error {
	var doc json.RawMessage
	if err := decodeJSON(w, r, &doc); err != nil {
		return err
	}
	var rev int64
	err := s.change(r, pr, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		custom, err := s.customChecks(ctx, tx)
		if err != nil {
			return "", err
		}
		p, err := k8s.ParseAdmissionPolicy(doc, custom...)
		if err != nil {
			return "", badRequest("%v", err)
		}
		p.ID = k8s.PolicyTypeAdmission
		norm, err := json.Marshal(p)
		if err != nil {
			return "", fmt.Errorf("encode policy: %w", err)
		}
		names := make([]string, len(p.Rules))
		for i, rule := range p.Rules {
			names[i] = strconv.Quote(rule.Name)
		}
		rev, err = tx.PutPolicy(ctx, k8s.PolicyTypeAdmission, norm)
		return fmt.Sprintf("replaced admission policy (revision %d): mode %s, exempt namespaces [%s], PSS %s at %s, %d rules: %s",
			rev, p.Mode, strings.Join(p.ExemptNamespaces, ", "), p.PSSLevel, p.PSSVersion, len(p.Rules), strings.Join(names, ", ")), err
	})
	if err != nil {
		return err
	}
	if err := s.pushPolicy(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
	return nil
}

// webhookParams are the query parameters of GET /api/v1/admission/webhook.
var webhookParams = []string{"service", "namespace", "port", "url", "cluster", "failurePolicy", "name", "timeoutSeconds", "format"}

// getAdmissionWebhook answers GET /api/v1/admission/webhook: the
// ValidatingWebhookConfiguration that sends a cluster's workloads to this
// Console's admission listener, as JSON or (format=yaml) YAML, with the
// Console CA as caBundle and the policy's exempt namespaces left out.
func (s *Server) getAdmissionWebhook(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	for name := range q {
		if !slices.Contains(webhookParams, name) {
			return badRequest("unknown query parameter %s (known: %s)", name, strings.Join(webhookParams, ", "))
		}
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "yaml" {
		return badRequest("query parameter format=%q must be json or yaml", format)
	}
	if !s.cfg.AdmissionEnabled {
		return &conflictError{msg: "the admission controller is off on this Console; start it with --admission-addr (BULWARK_ADMISSION_ADDR) before pointing a cluster at it"}
	}
	port, err := parseIntParam(q.Get("port"), "port", 1, 65535)
	if err != nil {
		return err
	}
	timeout, err := parseIntParam(q.Get("timeoutSeconds"), "timeoutSeconds", 1, 30)
	if err != nil {
		return err
	}
	p, _, err := storedAdmissionPolicy(r.Context(), s.store)
	if err != nil {
		return err
	}
	cfg, err := k8s.ValidatingWebhookConfiguration(k8s.WebhookOptions{
		Name: q.Get("name"), Service: q.Get("service"), Namespace: q.Get("namespace"), Port: int32(port), //nolint:gosec // 1..65535
		URL: q.Get("url"), Cluster: q.Get("cluster"), CABundle: s.fleet.CACertPEM(), FailurePolicy: q.Get("failurePolicy"),
		ExemptNamespaces: p.ExemptNamespaces, TimeoutSeconds: int32(timeout), //nolint:gosec // 1..30
	})
	if err != nil {
		return badRequest("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if format != "yaml" {
		writeJSON(w, http.StatusOK, cfg)
		return nil
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode webhook configuration: %w", err)
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(out)
	return nil
}

// admissionAuditParams are the query parameters of GET /api/v1/audits/admission.
var admissionAuditParams = []string{"namespace", "operation", "effect", "kind", "cluster", "from", "to", "limit", "offset"}

// listAdmissionAudits answers GET /api/v1/audits/admission: the admission
// controller's decisions, newest first, in Prisma's shape with Bulwark's
// findings.
func (s *Server) listAdmissionAudits(w http.ResponseWriter, r *http.Request, _ principal) error {
	f, err := admissionFilter(r.URL.Query())
	if err != nil {
		return err
	}
	recs, err := s.store.AdmissionAudits(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list admission audits: %w", err)
	}
	if recs == nil {
		recs = []audit.Admission{}
	}
	writeJSON(w, http.StatusOK, recs)
	return nil
}

func admissionFilter(q url.Values) (audit.AdmissionFilter, error) {
	var f audit.AdmissionFilter
	for name := range q {
		if !slices.Contains(admissionAuditParams, name) {
			return f, badRequest("unknown query parameter %s (known: %s)", name, strings.Join(admissionAuditParams, ", "))
		}
	}
	var err error
	for _, p := range []struct {
		name  string
		dst   *[]string
		known []string
	}{
		{"namespace", &f.Namespaces, nil},
		{"operation", &f.Operations, []string{"CREATE", "UPDATE"}},
		{"effect", &f.Effects, []string{audit.EffectAllow, audit.EffectAlert, audit.EffectBlock}},
		{"kind", &f.Kinds, nil},
		{"cluster", &f.Clusters, nil},
	} {
		if *p.dst, err = listParam(q, p.name); err != nil {
			return f, err
		}
		for _, v := range *p.dst {
			if p.known != nil && !slices.Contains(p.known, v) {
				return f, badRequest("query parameter %s=%q must be one of %s", p.name, v, strings.Join(p.known, ", "))
			}
		}
	}
	if f.Since, err = parseTimeParam(q.Get("from"), "from"); err != nil {
		return f, err
	}
	if f.Until, err = parseTimeParam(q.Get("to"), "to"); err != nil {
		return f, err
	}
	if f.Limit, err = parseIntParam(q.Get("limit"), "limit", 0, maxAdmissionAuditLimit); err != nil {
		return f, err
	}
	if f.Limit == 0 {
		f.Limit = defaultAdmissionAuditLimit
	}
	if f.Offset, err = parseIntParam(q.Get("offset"), "offset", 0, 1<<30); err != nil {
		return f, err
	}
	return f, nil
}
