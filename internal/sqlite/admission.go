package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"bulwark/internal/audit"
	"bulwark/internal/compliance"
)

const admissionColumns = `id, time, uid, cluster, namespace, name, kind, resource, operation, username, user_uid, user_groups,
	effect, mode, dry_run, policy_revision, rule_name, message, findings`

// AppendAdmissionAudits stores the records in one transaction on the write
// connection, outside any Update.
func (db *DB) AppendAdmissionAudits(ctx context.Context, recs []audit.Admission) (err error) {
	if len(recs) == 0 {
		return nil
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append admission audits: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO admission_audits (time, uid, cluster, namespace, name, kind, resource, operation,
		username, user_uid, user_groups, effect, mode, dry_run, policy_revision, rule_name, message, findings)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("append admission audits: %w", err)
	}
	defer stmt.Close()
	for i := range recs {
		a := &recs[i]
		fs := a.Findings
		if fs == nil {
			fs = []compliance.Finding{}
		}
		findings, err := json.Marshal(fs)
		if err != nil {
			return fmt.Errorf("append admission audits: findings: %w", err)
		}
		if _, err := stmt.ExecContext(ctx, toNanos(a.Time), a.UID, a.Cluster, a.Namespace, a.Name, a.Kind, a.Resource, a.Operation,
			a.Username, a.UserUID, a.UserGroups, a.Effect, a.Mode, a.DryRun, a.PolicyRevision, a.RuleName, a.Message, findings); err != nil {
			return fmt.Errorf("append admission audits: insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append admission audits: commit: %w", err)
	}
	return nil
}

// PruneAdmissionAudits deletes all but the newest keep records. Records are
// only appended and pruned oldest first, so their ids are contiguous and the
// delete walks only the rows it removes.
func (db *DB) PruneAdmissionAudits(ctx context.Context, keep int) (int64, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM admission_audits
		WHERE id <= (SELECT max(id) FROM admission_audits) - ?`, max(keep, 0))
	if err != nil {
		return 0, fmt.Errorf("prune admission audits: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune admission audits: %w", err)
	}
	return n, nil
}

// AdmissionAudits returns matching records, newest first.
func (db *DB) AdmissionAudits(ctx context.Context, f audit.AdmissionFilter) ([]audit.Admission, error) {
	return queries{q: db.read}.AdmissionAudits(ctx, f)
}

func (x queries) AdmissionAudits(ctx context.Context, f audit.AdmissionFilter) ([]audit.Admission, error) {
	var (
		where []string
		args  []any
	)
	for _, in := range []struct {
		column string
		values []string
	}{{"namespace", f.Namespaces}, {"operation", f.Operations}, {"effect", f.Effects}, {"kind", f.Kinds}, {"cluster", f.Clusters}} {
		if len(in.values) == 0 {
			continue
		}
		where = append(where, in.column+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(in.values)), ", ")+")")
		for _, v := range in.values {
			args = append(args, v)
		}
	}
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, f.Until.UnixNano())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	limit = min(limit, maxAuditLimit)

	var query strings.Builder
	query.WriteString(`SELECT ` + admissionColumns + ` FROM admission_audits`)
	if len(where) > 0 {
		query.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	// id breaks ties between records of the same nanosecond in insertion order.
	query.WriteString(` ORDER BY time DESC, id DESC LIMIT ? OFFSET ?`)
	args = append(args, limit, max(f.Offset, 0))

	rows, err := x.q.QueryContext(ctx, query.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list admission audits: %w", err)
	}
	defer rows.Close()
	var out []audit.Admission
	for rows.Next() {
		var (
			a        audit.Admission
			ns       int64
			findings []byte
		)
		if err := rows.Scan(&a.ID, &ns, &a.UID, &a.Cluster, &a.Namespace, &a.Name, &a.Kind, &a.Resource, &a.Operation,
			&a.Username, &a.UserUID, &a.UserGroups, &a.Effect, &a.Mode, &a.DryRun, &a.PolicyRevision, &a.RuleName, &a.Message, &findings); err != nil {
			return nil, fmt.Errorf("list admission audits: %w", err)
		}
		a.Time = fromNanos(ns)
		if err := json.Unmarshal(findings, &a.Findings); err != nil {
			return nil, fmt.Errorf("list admission audits: record %d: findings: %w", a.ID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list admission audits: %w", err)
	}
	return out, nil
}
