package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"bulwark/internal/audit"
	"bulwark/internal/runtimepolicy"
	"bulwark/internal/store"
)

// maxOverridesBytes bounds the model overrides in the policy snapshot,
// which every Defender receives: edited models are carried in full.
const maxOverridesBytes = 1 << 20

// listModels answers GET /api/v1/profiles/container: the learned models,
// by image, with ?image=, ?state=, ?limit= and ?offset= (Prisma's paging).
func (s *Server) listModels(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	f := store.ModelFilter{Image: q.Get("image"), State: runtimepolicy.ModelState(q.Get("state"))}
	switch f.State {
	case "", runtimepolicy.StateLearning, runtimepolicy.StateRelearning, runtimepolicy.StateActive, runtimepolicy.StateManualActive:
	default:
		return badRequest("query parameter state=%q must be learning, manualRelearning, active or manualActive", f.State)
	}
	var err error
	if f.Limit, err = parseIntParam(q.Get("limit"), "limit", 0, 1000); err != nil {
		return err
	}
	if f.Offset, err = parseIntParam(q.Get("offset"), "offset", 0, 1<<30); err != nil {
		return err
	}
	ms, err := s.store.RuntimeModels(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list models: %w", err)
	}
	writeJSON(w, http.StatusOK, ms)
	return nil
}

// getModel answers GET /api/v1/profiles/container/{id}.
func (s *Server) getModel(w http.ResponseWriter, r *http.Request, _ principal) error {
	m, err := s.store.RuntimeModel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

// putModel answers PUT /api/v1/profiles/container/{id}: the model's lists
// are replaced with the body's, the model stops learning (manualActive),
// and every Defender adopts it.
func (s *Server) putModel(w http.ResponseWriter, r *http.Request, p principal) error {
	var body json.RawMessage
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	edit, err := runtimepolicy.ParseModelEdit(body)
	if err != nil {
		return badRequest("%v", err)
	}
	id := r.PathValue("id")
	var m runtimepolicy.Model
	err = s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		var err error
		if m, err = tx.RuntimeModel(ctx, id); err != nil {
			return "", err
		}
		m.Apply(edit, s.cfg.Now())
		if err := tx.PutRuntimeModel(ctx, m); err != nil {
			return "", err
		}
		rev, err := putOverrides(ctx, tx, []runtimepolicy.Model{m}, false)
		return fmt.Sprintf("edited the model of %s (generation %d, policy revision %d)", m.Image, m.Generation, rev), err
	})
	if err != nil {
		return err
	}
	if err := s.pushPolicy(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

// relearnModel answers POST /api/v1/profiles/container/{id}/learn.
func (s *Server) relearnModel(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.relearn(w, r, p, r.PathValue("id"))
}

// relearnAll answers POST /api/v1/profiles/container/learn (Prisma): every
// model learns again.
func (s *Server) relearnAll(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.relearn(w, r, p, "")
}

// relearn forgets what the model with id (every model, for "") learned and
// has every Defender learn it again from now.
func (s *Server) relearn(w http.ResponseWriter, r *http.Request, p principal, id string) error {
	now := s.cfg.Now()
	var models []runtimepolicy.Model
	err := s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		if id != "" {
			m, err := tx.RuntimeModel(ctx, id)
			if err != nil {
				return "", err
			}
			models = []runtimepolicy.Model{m}
		} else {
			for off := 0; ; off += 1000 {
				page, err := tx.RuntimeModels(ctx, store.ModelFilter{Limit: 1000, Offset: off})
				if err != nil {
					return "", err
				}
				models = append(models, page...)
				if len(page) < 1000 {
					break
				}
			}
		}
		for i := range models {
			m := &models[i]
			m.Relearn(now, 0, m.Generation+1)
			// The Defenders set when learning ends, by their own window.
			m.LearningEnds = time.Time{}
			if err := tx.PutRuntimeModel(ctx, *m); err != nil {
				return "", err
			}
		}
		rev, err := putOverrides(ctx, tx, models, true)
		if id != "" && len(models) == 1 {
			return fmt.Sprintf("relearn the model of %s (policy revision %d)", models[0].Image, rev), err
		}
		return fmt.Sprintf("relearn %d models (policy revision %d)", len(models), rev), err
	})
	if err != nil {
		return err
	}
	if err := s.pushPolicy(r.Context()); err != nil {
		return err
	}
	if id != "" {
		writeJSON(w, http.StatusOK, models[0])
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]int{"relearning": len(models)})
	return nil
}

// putOverrides records the Console's changes to models in the policy
// snapshot (runtimepolicy.OverridesType), replacing earlier changes to the
// same images, and returns the new revision.
func putOverrides(ctx context.Context, tx store.Writer, models []runtimepolicy.Model, relearn bool) (int64, error) {
	snap, err := tx.PolicySnapshot(ctx)
	if err != nil {
		return 0, err
	}
	var ov runtimepolicy.Overrides
	if raw, ok := snap.Policies[runtimepolicy.OverridesType]; ok {
		if err := json.Unmarshal(raw, &ov); err != nil {
			return 0, fmt.Errorf("stored model overrides: %w", err)
		}
	}
	for _, m := range models {
		o := runtimepolicy.Override{ID: m.ID, Image: m.Image, Generation: m.Generation, Relearn: relearn}
		if !relearn {
			c := m
			c.Hosts = nil
			o.Model = &c
		}
		if i := slices.IndexFunc(ov.Models, func(x runtimepolicy.Override) bool { return x.Image == m.Image }); i >= 0 {
			ov.Models[i] = o
		} else {
			ov.Models = append(ov.Models, o)
		}
	}
	doc, err := json.Marshal(ov)
	if err != nil {
		return 0, err
	}
	if len(doc) > maxOverridesBytes {
		return 0, badRequest("the edited models would take %d bytes in the policy every Defender receives, over the %d-byte limit: relearn some instead of editing them", len(doc), maxOverridesBytes)
	}
	return tx.PutPolicy(ctx, runtimepolicy.OverridesType, doc)
}
