package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"bulwark/internal/event"
	"bulwark/internal/runtimepolicy"
	"bulwark/internal/store"
)

// runtimeIngest keeps the Console's learned models and incidents up to
// date from the runtime.model and runtime.audit events Defenders send.
//
// It runs before the events are stored, in its own transaction, and is
// idempotent: merging a model report twice changes nothing, and an audit
// joins an incident once (by its Defender and seq). So a batch the Console
// crashes on, which the Defender sends again, is neither lost nor counted
// twice. A failure here is logged and does not hold up the events: the
// Defender reports each model again as it changes.
type runtimeIngest struct {
	db     store.Store
	window time.Duration
	logger *slog.Logger
}

// incomingAudit is the part of a runtime.audit an incident needs.
type incomingAudit struct {
	ref       store.AuditRef
	host      string
	container *event.Container
	detection string
}

func (ri runtimeIngest) ingest(ctx context.Context, batches []event.Batch) {
	var models []runtimepolicy.Model
	var audits []incomingAudit
	for _, b := range batches {
		for _, e := range b.Events {
			switch e.Kind {
			case event.KindRuntimeModel:
				var m runtimepolicy.Model
				if err := json.Unmarshal(e.Data, &m); err != nil || m.Image == "" {
					ri.logger.Warn("runtime.model event does not parse", slog.String("defender", b.DefenderID), slog.Uint64("seq", e.Seq))
					continue
				}
				m.ID = runtimepolicy.ModelID(m.Image) // the Console names models, not the Defender
				m.Bound()
				models = append(models, m)
			case event.KindRuntimeAudit:
				var a event.Audit
				if err := json.Unmarshal(e.Data, &a); err != nil {
					ri.logger.Warn("runtime.audit event does not parse", slog.String("defender", b.DefenderID), slog.Uint64("seq", e.Seq))
					continue
				}
				audits = append(audits, incomingAudit{ref: store.AuditRef{DefenderID: b.DefenderID, Seq: e.Seq, Time: e.Time},
					host: a.Host, container: a.Container, detection: a.Audit.Detection})
			}
		}
	}
	if len(models) == 0 && len(audits) == 0 {
		return
	}
	slices.SortStableFunc(audits, func(a, b incomingAudit) int { return a.ref.Time.Compare(b.ref.Time) })
	err := ri.db.Update(ctx, func(w store.Writer) error {
		for _, m := range models {
			if err := mergeModel(ctx, w, m); err != nil {
				return err
			}
		}
		for _, a := range audits {
			if err := ri.addAudit(ctx, w, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		ri.logger.Error("update models and incidents", slog.Int("models", len(models)), slog.Int("audits", len(audits)), slog.Any("err", err))
	}
}

// mergeModel adds a Defender's report to the stored model of its image.
func mergeModel(ctx context.Context, w store.Writer, report runtimepolicy.Model) error {
	cur, err := w.RuntimeModel(ctx, report.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		report.Normalize()
		return w.PutRuntimeModel(ctx, report)
	case err != nil:
		return err
	}
	if !cur.Merge(report) {
		return nil
	}
	cur.Normalize()
	return w.PutRuntimeModel(ctx, cur)
}

// addAudit puts an audit into its container's open incident, or opens one.
func (ri runtimeIngest) addAudit(ctx context.Context, w store.Writer, a incomingAudit) error {
	cid := ""
	if a.container != nil {
		cid = a.container.ID
	}
	inc, err := w.LatestIncident(ctx, a.ref.DefenderID, cid)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && !runtimepolicy.Joins(inc.First, inc.Last, a.ref.Time, ri.window):
		inc = store.Incident{
			ID: a.ref.DefenderID + ":" + strconv.FormatUint(a.ref.Seq, 10), DefenderID: a.ref.DefenderID, ContainerID: cid,
			First: a.ref.Time, Last: a.ref.Time, Category: runtimepolicy.IncidentCategory(a.detection), Detections: []string{},
		}
	case err != nil:
		return err
	}
	added, err := w.AddIncidentAudit(ctx, inc.ID, a.ref)
	if err != nil || !added {
		return err
	}
	inc.Audits++
	if a.ref.Time.Before(inc.First) {
		inc.First = a.ref.Time
	}
	if a.ref.Time.After(inc.Last) {
		inc.Last = a.ref.Time
	}
	if a.host != "" {
		inc.Host = a.host
	}
	if c := a.container; c != nil {
		inc.ContainerName, inc.Image, inc.Namespace = c.Name, c.Image, c.Namespace
	}
	if a.detection != "" && !slices.Contains(inc.Detections, a.detection) {
		inc.Detections = append(inc.Detections, a.detection)
	}
	if cat := runtimepolicy.IncidentCategory(a.detection); runtimepolicy.MoreSevere(cat, inc.Category) {
		inc.Category = cat
	}
	if err := w.PutIncident(ctx, inc); err != nil {
		return fmt.Errorf("incident %s: %w", inc.ID, err)
	}
	return nil
}
