package httpapi

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"bulwark/api"
	"bulwark/internal/audit"
	"bulwark/internal/compliance"
	"bulwark/internal/store"
)

// Compliance result page sizes, and bounds on filters.
const (
	defaultComplianceLimit = 100
	maxComplianceLimit     = 1000
	maxFilterValues        = 64  // values of one filter parameter
	maxFilterValueLen      = 256 // bytes of one value
)

// compliancePolicy is one of the two compliance policies: its type in the
// policy snapshot and Prisma's name for it.
type compliancePolicy struct {
	typ    string // "compliance/container"
	prisma string // "containerCompliance"
}

var (
	containerCompliancePolicy = compliancePolicy{"compliance/container", compliance.PolicyTypeContainer}
	hostCompliancePolicy      = compliancePolicy{"compliance/host", compliance.PolicyTypeHost}
)

// getCompliancePolicy answers GET /api/v1/policies/compliance/{container,host}
// in Prisma's shape: the stored policy, or the built-in one when none was
// ever set, always with _id and policyType.
func (s *Server) getCompliancePolicy(cp compliancePolicy) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, _ principal) error {
		snap, err := s.store.PolicySnapshot(r.Context())
		if err != nil {
			return fmt.Errorf("load policy: %w", err)
		}
		w.Header().Set("X-Bulwark-Policy-Revision", strconv.FormatInt(snap.Revision, 10))
		p := compliance.DefaultPolicy(cp.prisma)
		if doc, ok := snap.Policies[cp.typ]; ok {
			// Not ParsePolicy: a stored policy stays readable when a custom
			// check it names was deleted since.
			var stored compliance.Policy
			if err := json.Unmarshal(doc, &stored); err != nil {
				// Written by an older Console through the generic endpoint:
				// show it as it is.
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(append(doc, '\n'))
				return nil //nolint:nilerr // served as stored
			}
			p = stored
			p.ID, p.PolicyType = cp.prisma, cp.prisma
		}
		if p.Rules == nil {
			p.Rules = []compliance.Rule{}
		}
		writeJSON(w, http.StatusOK, p)
		return nil
	}
}

// putCompliancePolicy answers PUT /api/v1/policies/compliance/{container,host}:
// the policy is validated with compliance.ParsePolicy (the catalog and the
// custom checks), stored with its _id and policyType, audited and pushed to
// every connected Defender.
func (s *Server) putCompliancePolicy(cp compliancePolicy) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, pr principal) error {
		var doc json.RawMessage
		if err := decodeJSON(w, r, &doc); err != nil {
			return err
		}
		// Validated inside the transaction that stores it, against the custom
		// checks stored then: a check deleted meanwhile cannot slip in.
		var rev int64
		err := s.change(r, pr, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
			custom, err := s.customChecks(ctx, tx)
			if err != nil {
				return "", err
			}
			p, err := compliance.ParsePolicy(doc, custom...)
			if err != nil {
				return "", badRequest("%v", err)
			}
			for _, f := range []struct{ name, got string }{{"policyType", p.PolicyType}, {"_id", p.ID}} {
				if f.got != "" && f.got != cp.prisma {
					return "", badRequest("%s %q does not belong at %s: want %q or none", f.name, f.got, r.URL.Path, cp.prisma)
				}
			}
			p.ID, p.PolicyType = cp.prisma, cp.prisma
			norm, err := json.Marshal(p)
			if err != nil {
				return "", fmt.Errorf("encode policy: %w", err)
			}
			names := make([]string, len(p.Rules))
			for i, rule := range p.Rules {
				names[i] = strconv.Quote(rule.Name)
			}
			rev, err = tx.PutPolicy(ctx, cp.typ, norm)
			return fmt.Sprintf("replaced %s policy (revision %d) with %d rules: %s", cp.typ, rev, len(p.Rules), strings.Join(names, ", ")), err
		})
		if err != nil {
			return err
		}
		snap, err := s.store.PolicySnapshot(r.Context())
		if err != nil {
			return fmt.Errorf("load policy: %w", err)
		}
		s.fleet.PolicyChanged(snap)
		writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
		return nil
	}
}

// complianceQuery is what the explorer's query parameters may say, per endpoint.
type complianceQuery struct {
	kind   string // store.ResourceContainer or ResourceHost: the endpoint's; "" takes ?type=
	paged  bool   // ?limit= and ?after=
	params []string
}

var (
	statsQuery      = complianceQuery{params: []string{"type", "hostname", "image", "namespace", "name", "id", "complianceIDs", "from"}}
	containersQuery = complianceQuery{kind: store.ResourceContainer, paged: true, params: []string{"hostname", "image", "namespace", "name", "id", "complianceIDs", "from", "limit", "after"}}
	hostsQuery      = complianceQuery{kind: store.ResourceHost, paged: true, params: []string{"hostname", "complianceIDs", "from", "limit", "after"}}
)

// listParam returns the values of a list parameter, given repeated or
// comma-separated.
func listParam(q url.Values, name string) ([]string, error) {
	var out []string
	for _, v := range q[name] {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				return nil, badRequest("query parameter %s has an empty value", name)
			}
			if len(part) > maxFilterValueLen {
				return nil, badRequest("query parameter %s: a value is longer than %d bytes", name, maxFilterValueLen)
			}
			out = append(out, part)
		}
	}
	if len(out) > maxFilterValues {
		return nil, badRequest("query parameter %s has more than %d values", name, maxFilterValues)
	}
	return out, nil
}

// filter reads the query of an explorer endpoint.
func (cq complianceQuery) filter(q url.Values) (store.ComplianceFilter, error) {
	for name := range q {
		if !slices.Contains(cq.params, name) {
			return store.ComplianceFilter{}, badRequest("unknown query parameter %s (known: %s)", name, strings.Join(cq.params, ", "))
		}
	}
	f := store.ComplianceFilter{Kind: cq.kind}
	if cq.kind == "" {
		switch typ := q.Get("type"); typ {
		case "", store.ResourceContainer, store.ResourceHost:
			f.Kind = typ
		default:
			return f, badRequest("query parameter type=%q must be container or host", typ)
		}
	}
	var err error
	for _, p := range []struct {
		name string
		dst  *[]string
	}{{"hostname", &f.Hosts}, {"image", &f.Images}, {"namespace", &f.Namespaces}, {"name", &f.Containers}, {"complianceIDs", &f.Checks}} {
		if *p.dst, err = listParam(q, p.name); err != nil {
			return f, err
		}
	}
	if f.ContainerID = q.Get("id"); f.ContainerID != "" && len(f.ContainerID) < minContainerPrefix {
		return f, badRequest("query parameter id=%q must be a container ID or a prefix of at least %d characters", f.ContainerID, minContainerPrefix)
	}
	if f.Since, err = parseTimeParam(q.Get("from"), "from"); err != nil {
		return f, err
	}
	if !cq.paged {
		return f, nil
	}
	if f.Limit, err = parseIntParam(q.Get("limit"), "limit", 0, maxComplianceLimit); err != nil {
		return f, err
	}
	if f.Limit == 0 {
		f.Limit = defaultComplianceLimit
	}
	if after := q.Get("after"); after != "" {
		if f.After, err = decodeComplianceCursor(after); err != nil {
			return f, err
		}
	}
	return f, nil
}

// encodeComplianceCursor makes the opaque ?after= value of a result's position.
func encodeComplianceCursor(c store.ComplianceCursor) string {
	b, _ := json.Marshal([]string{c.Host, c.ContainerID}) // strings always encode
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeComplianceCursor(s string) (*store.ComplianceCursor, error) {
	var pos []string
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &pos) != nil || len(pos) != 2 {
		return nil, badRequest("query parameter after=%q is not a cursor from the %s header", s, nextHeader)
	}
	return &store.ComplianceCursor{Host: pos[0], ContainerID: pos[1]}, nil
}

// complianceStats answers GET /api/v1/stats/compliance: per failed check,
// the failing containers, images and hosts among the current results that
// the filters select.
func (s *Server) complianceStats(w http.ResponseWriter, r *http.Request, _ principal) error {
	f, err := statsQuery.filter(r.URL.Query())
	if err != nil {
		return err
	}
	st, err := s.store.ComplianceStats(r.Context(), f)
	if err != nil {
		return fmt.Errorf("compliance stats: %w", err)
	}
	cat, err := s.checkCatalog(r.Context())
	if err != nil {
		return err
	}
	out := api.ComplianceStats{IDs: make([]api.ComplianceIDStats, 0, len(st.Checks)), Containers: st.Containers, Images: st.Images, Hosts: st.Hosts}
	for _, c := range st.Checks {
		e := api.ComplianceIDStats{
			ID: cmp.Or(c.PrismaID, c.Check), Check: c.Check, Title: c.Title, Severity: string(c.Severity), Type: c.Kind,
			FailedContainers: c.Containers, FailedImages: c.Images, FailedHosts: c.Hosts, Failed: c.Hosts,
		}
		if c.Kind == store.ResourceContainer {
			e.Failed = c.Containers
		}
		if ch, ok := cat[c.Check]; ok {
			e.Title, e.Description = cmp.Or(ch.Title, e.Title), ch.Description
		}
		out.IDs = append(out.IDs, e)
	}
	// Worst first: by severity, then by how many resources fail.
	sort.SliceStable(out.IDs, func(i, j int) bool {
		a, b := out.IDs[i], out.IDs[j]
		if ra, rb := compliance.Severity(a.Severity).Rank(), compliance.Severity(b.Severity).Rank(); ra != rb {
			return ra > rb
		}
		if a.Failed != b.Failed {
			return a.Failed > b.Failed
		}
		return a.Type+"\x00"+a.ID < b.Type+"\x00"+b.ID
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

// checkCatalog returns the catalog and the custom checks by slug.
func (s *Server) checkCatalog(ctx context.Context) (map[string]compliance.Check, error) {
	custom, err := s.customChecks(ctx, s.store)
	if err != nil {
		return nil, err
	}
	m := map[string]compliance.Check{}
	for _, c := range append(compliance.Catalog(), custom...) {
		m[c.Slug] = c
	}
	return m, nil
}

// listComplianceContainers answers GET /api/v1/containers: the current
// compliance result of each container, a page at a time.
func (s *Server) listComplianceContainers(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.listComplianceResults(w, r, containersQuery, func(res store.ComplianceResult, issues []api.ComplianceIssue, d api.ComplianceDistribution) any {
		return api.ContainerCompliance{
			ID: res.ContainerID, Hostname: res.Host, ScanTime: res.Time,
			Info: api.ContainerComplianceInfo{
				ID: res.ContainerID, Name: res.ContainerName, Image: res.Image, ImageName: res.Image, Namespace: res.Namespace, Pod: res.Pod,
				ComplianceIssues: issues, ComplianceIssuesCount: len(issues), ComplianceDistribution: d,
			},
			ComplianceSource: api.ComplianceSource{DefenderID: res.DefenderID, PolicyRevision: res.PolicyRevision, Trigger: res.Trigger},
		}
	})
}

// listComplianceHosts answers GET /api/v1/hosts: the current compliance
// result of each host, a page at a time.
func (s *Server) listComplianceHosts(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.listComplianceResults(w, r, hostsQuery, func(res store.ComplianceResult, issues []api.ComplianceIssue, d api.ComplianceDistribution) any {
		return api.HostCompliance{
			ID: res.Host, Type: store.ResourceHost, Hostname: res.Host, ScanTime: res.Time,
			ComplianceIssues: issues, ComplianceIssuesCount: len(issues), ComplianceDistribution: d,
			ComplianceSource: api.ComplianceSource{DefenderID: res.DefenderID, PolicyRevision: res.PolicyRevision, Trigger: res.Trigger},
		}
	})
}

// listComplianceResults lists results in (host, container ID) order; the
// answer's X-Bulwark-Next header is the ?after= of the next page.
func (s *Server) listComplianceResults(w http.ResponseWriter, r *http.Request, cq complianceQuery,
	render func(store.ComplianceResult, []api.ComplianceIssue, api.ComplianceDistribution) any,
) error {
	q := r.URL.Query()
	f, err := cq.filter(q)
	if err != nil {
		return err
	}
	results, err := s.store.ComplianceResults(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list compliance results: %w", err)
	}
	cat, err := s.checkCatalog(r.Context())
	if err != nil {
		return err
	}
	out := make([]any, 0, len(results))
	for _, res := range results {
		issues, d := complianceIssues(res, cat)
		out = append(out, render(res, issues, d))
	}
	next := q.Get("after")
	if n := len(results); n > 0 {
		next = encodeComplianceCursor(store.ComplianceCursor{Host: results[n-1].Host, ContainerID: results[n-1].ContainerID})
	}
	if next != "" {
		w.Header().Set(nextHeader, next)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// complianceIssues renders a result's findings and counts them by severity.
func complianceIssues(res store.ComplianceResult, cat map[string]compliance.Check) ([]api.ComplianceIssue, api.ComplianceDistribution) {
	issues := make([]api.ComplianceIssue, 0, len(res.Findings))
	var d api.ComplianceDistribution
	for _, f := range res.Findings {
		id, _ := strconv.Atoi(f.PrismaID) // 0: none
		issues = append(issues, api.ComplianceIssue{
			ID: id, Check: f.Check, Title: f.Title, Severity: string(f.Severity), Description: cat[f.Check].Description,
			Cause: f.Message, Type: res.Kind, Effect: string(f.Effect), Paths: f.Paths,
		})
		switch f.Severity {
		case compliance.SeverityCritical:
			d.Critical++
		case compliance.SeverityHigh:
			d.High++
		case compliance.SeverityMedium:
			d.Medium++
		case compliance.SeverityLow:
			d.Low++
		case compliance.SeverityInfo:
			d.Info++
		}
		d.Total++
	}
	return issues, d
}
