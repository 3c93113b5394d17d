package admission

import (
	"context"
	"fmt"
	"log/slog"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
	"bulwark/internal/policy"
	"bulwark/internal/rego"
)

// compiled is an admission policy ready to evaluate: read once per policy
// revision and shared by every request, which only read it.
type compiled struct {
	revision int64
	policy   k8s.AdmissionPolicy
	exempt   map[string]bool
	// opts carry the PSS evaluator, the custom checks' evaluator and their
	// catalog entries.
	opts compliance.Options
	// checks are the catalog's and the custom checks by slug.
	checks map[string]compliance.Check
}

// compile builds the policy of a snapshot. A stored document that does not
// parse (written by an older Console) or custom checks that do not compile
// are errors: the caller keeps the policy it has. A snapshot without an
// admission policy gets the default one.
func compile(ctx context.Context, snap policy.Snapshot, logger *slog.Logger) (*compiled, error) {
	c := &compiled{revision: snap.Revision}
	if raw, ok := snap.Policies[policy.TypeCustomCompliance]; ok && len(raw) > 0 && string(raw) != "null" {
		doc, err := rego.DecodeDocument(raw)
		if err != nil {
			return nil, fmt.Errorf("custom compliance checks: %w", err)
		}
		ev, custom, err := doc.Load(ctx, rego.Config{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("custom compliance checks: %w", err)
		}
		c.opts.Custom = custom
		if len(ev.Checks()) > 0 {
			c.opts.Evaluators = append(c.opts.Evaluators, ev)
		}
	}
	c.policy = k8s.DefaultAdmissionPolicy()
	if raw, ok := snap.Policies[k8s.PolicyTypeAdmission]; ok {
		p, err := k8s.ParseAdmissionPolicy(raw, c.opts.Custom...)
		if err != nil {
			return nil, err
		}
		c.policy = p
	}
	level, version, err := c.policy.Level()
	if err != nil {
		return nil, err
	}
	// PSS first: its findings then come right after the catalog's own.
	c.opts.Evaluators = append([]compliance.Evaluator{k8s.PSS(level, version)}, c.opts.Evaluators...)
	c.checks = make(map[string]compliance.Check)
	for _, ch := range append(compliance.Catalog(), c.opts.Custom...) {
		if _, dup := c.checks[ch.Slug]; !dup {
			c.checks[ch.Slug] = ch
		}
	}
	c.exempt = make(map[string]bool, len(c.policy.ExemptNamespaces))
	for _, ns := range c.policy.ExemptNamespaces {
		c.exempt[ns] = true
	}
	return c, nil
}

// load reads the store's policy and compiles it when its revision is not
// the one in force.
func (h *Webhook) load(ctx context.Context) error {
	snap, err := h.store.PolicySnapshot(ctx)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	h.PolicyChanged(ctx, snap)
	return nil
}

// PolicyChanged puts the snapshot's admission policy in force unless its
// revision is the one in force or older. The Console calls it after a
// policy change it committed, so that the change applies at once; changes
// made through other Console replicas arrive with the periodic check of Run.
//
// A policy that does not compile leaves the one in force (the built-in
// policy when there was none), and is logged once per revision.
func (h *Webhook) PolicyChanged(ctx context.Context, snap policy.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.policy.Load()
	if cur != nil && snap.Revision <= cur.revision || snap.Revision == h.badRevision {
		return
	}
	c, err := compile(ctx, snap, h.logger)
	if err != nil {
		h.badRevision = snap.Revision
		keep := "the built-in policy"
		if cur != nil {
			keep = fmt.Sprintf("revision %d", cur.revision)
		}
		h.logger.ErrorContext(ctx, "admission policy refused; keeping "+keep, slog.Int64("revision", snap.Revision), slog.Any("err", err))
		if cur == nil {
			c, _ = compile(ctx, policy.Snapshot{}, h.logger) // cannot fail
			c.revision = snap.Revision
			h.policy.Store(c)
		}
		return
	}
	h.policy.Store(c)
	h.logger.InfoContext(ctx, "admission policy in force", slog.Int64("revision", c.revision), slog.String("mode", c.policy.Mode),
		slog.String("pss", c.policy.PSSLevel+"@"+c.policy.PSSVersion), slog.Int("rules", len(c.policy.Rules)))
}
