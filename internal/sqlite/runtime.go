package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"bulwark/internal/runtimepolicy"
	"bulwark/internal/store"
)

// Page sizes of models and incidents.
const (
	defaultRuntimeLimit = 100
	maxRuntimeLimit     = 1000
)

func runtimeLimit(n int) int {
	switch {
	case n <= 0:
		return defaultRuntimeLimit
	case n > maxRuntimeLimit:
		return maxRuntimeLimit
	}
	return n
}

// RuntimeModels returns the models f selects, ordered by image.
func (x queries) RuntimeModels(ctx context.Context, f store.ModelFilter) ([]runtimepolicy.Model, error) {
	var where []string
	var args []any
	if f.Image != "" {
		where, args = append(where, "image = ?"), append(args, f.Image)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	q := `SELECT doc FROM runtime_models`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY image, id LIMIT ? OFFSET ?`
	args = append(args, runtimeLimit(f.Limit), max(0, f.Offset))
	rows, err := x.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	defer rows.Close()
	out := []runtimepolicy.Model{}
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		var m runtimepolicy.Model
		if err := json.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// RuntimeModel returns the model with id, or store.ErrNotFound.
func (x queries) RuntimeModel(ctx context.Context, id string) (runtimepolicy.Model, error) {
	var doc []byte
	err := x.q.QueryRowContext(ctx, `SELECT doc FROM runtime_models WHERE id = ?`, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return runtimepolicy.Model{}, fmt.Errorf("model %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return runtimepolicy.Model{}, fmt.Errorf("get model %s: %w", id, err)
	}
	var m runtimepolicy.Model
	if err := json.Unmarshal(doc, &m); err != nil {
		return runtimepolicy.Model{}, fmt.Errorf("get model %s: %w", id, err)
	}
	return m, nil
}

// PutRuntimeModel stores m by its ID.
func (x queries) PutRuntimeModel(ctx context.Context, m runtimepolicy.Model) error {
	if m.ID == "" {
		return errors.New("put model: empty id")
	}
	doc, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("put model %s: %w", m.ID, err)
	}
	_, err = x.q.ExecContext(ctx, `INSERT INTO runtime_models (id, image, state, generation, modified, doc) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET image = excluded.image, state = excluded.state, generation = excluded.generation,
		modified = excluded.modified, doc = excluded.doc`,
		m.ID, m.Image, string(m.State), m.Generation, toNanos(m.Modified), doc)
	if err != nil {
		return fmt.Errorf("put model %s: %w", m.ID, err)
	}
	return nil
}

const incidentColumns = `id, defender_id, host, container_id, container_name, image, namespace, category, detections,
	first_time, last_time, audits, acknowledged, ack_by, ack_at`

func scanIncident(s interface{ Scan(...any) error }) (store.Incident, error) {
	var (
		inc                      store.Incident
		detections               string
		first, last, ackAt, acks int64
	)
	if err := s.Scan(&inc.ID, &inc.DefenderID, &inc.Host, &inc.ContainerID, &inc.ContainerName, &inc.Image, &inc.Namespace,
		&inc.Category, &detections, &first, &last, &inc.Audits, &acks, &inc.AckBy, &ackAt); err != nil {
		return store.Incident{}, err
	}
	if err := json.Unmarshal([]byte(detections), &inc.Detections); err != nil {
		return store.Incident{}, err
	}
	inc.First, inc.Last, inc.AckAt, inc.Acknowledged = fromNanos(first), fromNanos(last), fromNanos(ackAt), acks != 0
	return inc, nil
}

// Incidents returns the incidents f selects, newest first.
func (x queries) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	var where []string
	var args []any
	add := func(clause string, a ...any) { where, args = append(where, clause), append(args, a...) }
	if !f.Since.IsZero() {
		add("last_time >= ?", toNanos(f.Since))
	}
	if !f.Until.IsZero() {
		add("first_time < ?", toNanos(f.Until))
	}
	if f.Host != "" {
		add("host = ?", f.Host)
	}
	if f.ContainerID != "" {
		if end, ok := prefixEnd(f.ContainerID); ok {
			add("container_id >= ? AND container_id < ?", f.ContainerID, end)
		} else {
			add("container_id >= ?", f.ContainerID)
		}
	}
	if f.Category != "" {
		add("category = ?", f.Category)
	}
	if f.Acknowledged != nil {
		add("acknowledged = ?", *f.Acknowledged)
	}
	if f.HostOnly {
		add("container_id = ''")
	}
	if f.InContainer {
		add("container_id <> ''")
	}
	q := `SELECT ` + incidentColumns + ` FROM incidents`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY first_time DESC, id LIMIT ? OFFSET ?`
	args = append(args, runtimeLimit(f.Limit), max(0, f.Offset))
	rows, err := x.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer rows.Close()
	out := []store.Incident{}
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, fmt.Errorf("list incidents: %w", err)
		}
		out = append(out, inc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	return out, nil
}

// Incident returns the incident with id, or store.ErrNotFound.
func (x queries) Incident(ctx context.Context, id string) (store.Incident, error) {
	inc, err := scanIncident(x.q.QueryRowContext(ctx, `SELECT `+incidentColumns+` FROM incidents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Incident{}, fmt.Errorf("incident %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Incident{}, fmt.Errorf("get incident %s: %w", id, err)
	}
	return inc, nil
}

// LatestIncident returns the incident of a Defender's container (or host)
// with the latest last audit, or store.ErrNotFound.
func (x queries) LatestIncident(ctx context.Context, defenderID, containerID string) (store.Incident, error) {
	inc, err := scanIncident(x.q.QueryRowContext(ctx, `SELECT `+incidentColumns+` FROM incidents
		WHERE defender_id = ? AND container_id = ? ORDER BY last_time DESC, id DESC LIMIT 1`, defenderID, containerID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Incident{}, fmt.Errorf("incident of %s/%s: %w", defenderID, containerID, store.ErrNotFound)
	}
	if err != nil {
		return store.Incident{}, fmt.Errorf("latest incident of %s/%s: %w", defenderID, containerID, err)
	}
	return inc, nil
}

// PutIncident stores inc by its ID.
func (x queries) PutIncident(ctx context.Context, inc store.Incident) error {
	if inc.ID == "" {
		return errors.New("put incident: empty id")
	}
	dets := inc.Detections
	if dets == nil {
		dets = []string{}
	}
	detections, err := json.Marshal(dets)
	if err != nil {
		return fmt.Errorf("put incident %s: %w", inc.ID, err)
	}
	_, err = x.q.ExecContext(ctx, `INSERT INTO incidents (`+incidentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET defender_id = excluded.defender_id, host = excluded.host, container_id = excluded.container_id,
		container_name = excluded.container_name, image = excluded.image, namespace = excluded.namespace, category = excluded.category,
		detections = excluded.detections, first_time = excluded.first_time, last_time = excluded.last_time, audits = excluded.audits,
		acknowledged = excluded.acknowledged, ack_by = excluded.ack_by, ack_at = excluded.ack_at`,
		inc.ID, inc.DefenderID, inc.Host, inc.ContainerID, inc.ContainerName, inc.Image, inc.Namespace, inc.Category, string(detections),
		toNanos(inc.First), toNanos(inc.Last), inc.Audits, inc.Acknowledged, inc.AckBy, toNanos(inc.AckAt))
	if err != nil {
		return fmt.Errorf("put incident %s: %w", inc.ID, err)
	}
	return nil
}

// AddIncidentAudit records the audit in the incident unless it is in one.
func (x queries) AddIncidentAudit(ctx context.Context, incidentID string, a store.AuditRef) (bool, error) {
	res, err := x.q.ExecContext(ctx, `INSERT INTO incident_audits (defender_id, seq, incident_id, time) VALUES (?, ?, ?, ?)
		ON CONFLICT (defender_id, seq) DO NOTHING`, a.DefenderID, toCount(a.Seq), incidentID, toNanos(a.Time))
	if err != nil {
		return false, fmt.Errorf("add audit %s:%d to incident %s: %w", a.DefenderID, a.Seq, incidentID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("add audit %s:%d to incident %s: %w", a.DefenderID, a.Seq, incidentID, err)
	}
	return n == 1, nil
}

// IncidentAudits returns the audits of an incident, oldest first.
func (x queries) IncidentAudits(ctx context.Context, id string, limit int) ([]store.AuditRef, error) {
	rows, err := x.q.QueryContext(ctx, `SELECT defender_id, seq, time FROM incident_audits WHERE incident_id = ?
		ORDER BY time, defender_id, seq LIMIT ?`, id, runtimeLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("audits of incident %s: %w", id, err)
	}
	defer rows.Close()
	out := []store.AuditRef{}
	for rows.Next() {
		var (
			a       store.AuditRef
			seq, at int64
		)
		if err := rows.Scan(&a.DefenderID, &seq, &at); err != nil {
			return nil, fmt.Errorf("audits of incident %s: %w", id, err)
		}
		a.Seq, a.Time = fromCount(seq), fromNanos(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audits of incident %s: %w", id, err)
	}
	return out, nil
}

// The read methods of runtime defense, on the read pool.

// RuntimeModels returns the models f selects, ordered by image.
func (db *DB) RuntimeModels(ctx context.Context, f store.ModelFilter) ([]runtimepolicy.Model, error) {
	return queries{q: db.read}.RuntimeModels(ctx, f)
}

// RuntimeModel returns the model with id, or store.ErrNotFound.
func (db *DB) RuntimeModel(ctx context.Context, id string) (runtimepolicy.Model, error) {
	return queries{q: db.read}.RuntimeModel(ctx, id)
}

// Incidents returns the incidents f selects, newest first.
func (db *DB) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	return queries{q: db.read}.Incidents(ctx, f)
}

// Incident returns the incident with id, or store.ErrNotFound.
func (db *DB) Incident(ctx context.Context, id string) (store.Incident, error) {
	return queries{q: db.read}.Incident(ctx, id)
}

// LatestIncident returns a container's (or host's) latest incident.
func (db *DB) LatestIncident(ctx context.Context, defenderID, containerID string) (store.Incident, error) {
	return queries{q: db.read}.LatestIncident(ctx, defenderID, containerID)
}

// IncidentAudits returns the audits of an incident, oldest first.
func (db *DB) IncidentAudits(ctx context.Context, id string, limit int) ([]store.AuditRef, error) {
	return queries{q: db.read}.IncidentAudits(ctx, id, limit)
}
