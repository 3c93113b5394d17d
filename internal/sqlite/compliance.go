package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/store"
)

// Compliance result page sizes.
const (
	defaultComplianceLimit = 1000
	maxComplianceLimit     = 100000
)

// complianceIngest applies the compliance events of one AppendEvents call
// to the current results, inside its transaction.
type complianceIngest struct {
	tx        *sql.Tx
	logger    *slog.Logger
	hostnames map[string]string // Defender ID → host name, looked up once
}

// apply replaces the current result of e's container or host with the one
// e reports, unless the stored one is newer. A malformed event is logged and
// skipped; only a database error is returned.
func (ci *complianceIngest) apply(ctx context.Context, e *event.Event) error {
	r, err := store.ComplianceResultOf(*e)
	if errors.Is(err, store.ErrComplianceEvent) {
		ci.logger.WarnContext(ctx, "compliance event changes no result", slog.String("defender", e.DefenderID), slog.Any("err", err))
		return nil
	}
	if err != nil {
		return err
	}
	if r.Host == "" {
		if r.Host, err = ci.hostname(ctx, e.DefenderID); err != nil {
			return err
		}
	}
	if r.Host == "" {
		ci.logger.WarnContext(ctx, "compliance event changes no result", slog.String("defender", e.DefenderID),
			slog.Uint64("seq", e.Seq), slog.String("err", "neither the event nor its Defender names the host"))
		return nil
	}
	findings, err := json.Marshal(r.Findings)
	if err != nil {
		return fmt.Errorf("compliance result of %s seq %d: %w", e.DefenderID, e.Seq, err)
	}
	// The WHERE of the upsert keeps a newer stored result: two Defenders
	// may report the same host (a reinstall), and their events are not
	// ordered with each other.
	res, err := ci.tx.ExecContext(ctx, `INSERT INTO compliance_results
			(host, container_id, container_name, image, pod, namespace, defender_id, seq, time, policy_revision, reason, findings)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (host, container_id) DO UPDATE SET
			container_name = excluded.container_name, image = excluded.image, pod = excluded.pod, namespace = excluded.namespace,
			defender_id = excluded.defender_id, seq = excluded.seq, time = excluded.time,
			policy_revision = excluded.policy_revision, reason = excluded.reason, findings = excluded.findings
		WHERE excluded.time >= compliance_results.time`,
		r.Host, r.ContainerID, r.ContainerName, r.Image, r.Pod, r.Namespace, r.DefenderID, toCount(r.Seq), toNanos(r.Time),
		r.PolicyRevision, r.Trigger, findings)
	if err != nil {
		return fmt.Errorf("compliance result of %s seq %d: %w", e.DefenderID, e.Seq, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // nil: a newer result is stored
	}
	if _, err := ci.tx.ExecContext(ctx, `DELETE FROM compliance_findings WHERE host = ? AND container_id = ?`, r.Host, r.ContainerID); err != nil {
		return fmt.Errorf("compliance result of %s seq %d: %w", e.DefenderID, e.Seq, err)
	}
	const rowsPerInsert = 100
	for start := 0; start < len(r.Findings); start += rowsPerInsert {
		part := r.Findings[start:min(start+rowsPerInsert, len(r.Findings))]
		args := make([]any, 0, 7*len(part))
		for i, f := range part {
			args = append(args, r.Host, r.ContainerID, start+i, f.Check, f.PrismaID, string(f.Severity), f.Title)
		}
		q := `INSERT INTO compliance_findings (host, container_id, n, check_slug, prisma_id, severity, title) VALUES ` + //nolint:gosec // placeholders only
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", len(part)), ", ")
		if _, err := ci.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("compliance findings of %s seq %d: %w", e.DefenderID, e.Seq, err)
		}
	}
	return nil
}

func (ci *complianceIngest) hostname(ctx context.Context, defenderID string) (string, error) {
	if h, ok := ci.hostnames[defenderID]; ok {
		return h, nil
	}
	var h string
	if err := ci.tx.QueryRowContext(ctx, `SELECT hostname FROM defenders WHERE id = ?`, defenderID).Scan(&h); err != nil {
		return "", fmt.Errorf("hostname of defender %s: %w", defenderID, err)
	}
	if ci.hostnames == nil {
		ci.hostnames = map[string]string{}
	}
	ci.hostnames[defenderID] = h
	return h, nil
}

// sqliteGlob turns a collection glob ("*" any string, "?" one character,
// the rest literal) into a GLOB pattern: the same, except that "[" opens a
// character class there and must be written "[[]".
func sqliteGlob(g string) string { return strings.ReplaceAll(g, "[", "[[]") }

// complianceWhere returns the WHERE clause, with its arguments, that f
// selects from compliance_results r.
func complianceWhere(f store.ComplianceFilter) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	add := func(term string, a ...any) { where, args = append(where, term), append(args, a...) }
	switch f.Kind {
	case "":
	case store.ResourceContainer:
		add("r.container_id != ''")
	case store.ResourceHost:
		add("r.container_id = ''")
	default:
		return "", nil, fmt.Errorf("compliance filter: unknown kind %q", f.Kind)
	}
	globs := func(column string, gs []string) {
		if len(gs) == 0 {
			return
		}
		var or []string
		for _, g := range gs {
			or, args = append(or, column+" GLOB ?"), append(args, sqliteGlob(g))
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	globs("r.host", f.Hosts)
	globs("r.image", f.Images)
	globs("r.namespace", f.Namespaces)
	globs("r.container_name", f.Containers)
	if f.ContainerID != "" {
		add("r.container_id != '' AND substr(r.container_id, 1, ?) = ?", len(f.ContainerID), f.ContainerID)
	}
	if !f.Since.IsZero() {
		add("r.time >= ?", f.Since.UnixNano())
	}
	if f.After != nil {
		add("(r.host, r.container_id) > (?, ?)", f.After.Host, f.After.ContainerID)
	}
	if len(f.Checks) > 0 {
		in, cargs := checkIn(f.Checks)
		add(`EXISTS (SELECT 1 FROM compliance_findings f
			WHERE f.host = r.host AND f.container_id = r.container_id AND `+in+`)`, cargs...)
	}
	if len(where) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(where, " AND "), args, nil
}

// checkIn is the condition on compliance_findings f that selects findings
// of any of checks, by slug or Prisma ID.
func checkIn(checks []string) (string, []any) {
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(checks)), ", ")
	args := make([]any, 0, 2*len(checks))
	for _, c := range checks {
		args = append(args, c)
	}
	for _, c := range checks {
		args = append(args, c)
	}
	return "(f.check_slug IN (" + marks + ") OR f.prisma_id IN (" + marks + "))", args
}

const complianceColumns = `r.host, r.container_id, r.container_name, r.image, r.pod, r.namespace,
	r.defender_id, r.seq, r.time, r.policy_revision, r.reason, r.findings`

// ComplianceResults returns the current results f selects, ordered by host
// and container ID; at most f.Limit, 1000 by default and never more than
// 100000.
func (db *DB) ComplianceResults(ctx context.Context, f store.ComplianceFilter) ([]store.ComplianceResult, error) {
	return queries{q: db.read}.ComplianceResults(ctx, f)
}

// ComplianceStats counts the current results f selects per failed check.
func (db *DB) ComplianceStats(ctx context.Context, f store.ComplianceFilter) (store.ComplianceStats, error) {
	return queries{q: db.read}.ComplianceStats(ctx, f)
}

func (x queries) ComplianceResults(ctx context.Context, f store.ComplianceFilter) ([]store.ComplianceResult, error) {
	where, args, err := complianceWhere(f)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultComplianceLimit
	}
	args = append(args, min(limit, maxComplianceLimit))
	rows, err := x.q.QueryContext(ctx, `SELECT `+complianceColumns+` FROM compliance_results r`+where+
		` ORDER BY r.host, r.container_id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list compliance results: %w", err)
	}
	defer rows.Close()
	var out []store.ComplianceResult
	for rows.Next() {
		var (
			r            store.ComplianceResult
			seq, ns      int64
			findingsJSON []byte
		)
		if err := rows.Scan(&r.Host, &r.ContainerID, &r.ContainerName, &r.Image, &r.Pod, &r.Namespace,
			&r.DefenderID, &seq, &ns, &r.PolicyRevision, &r.Trigger, &findingsJSON); err != nil {
			return nil, fmt.Errorf("list compliance results: %w", err)
		}
		if err := json.Unmarshal(findingsJSON, &r.Findings); err != nil {
			return nil, fmt.Errorf("list compliance results: findings of %s %s: %w", r.Host, r.ContainerID, err)
		}
		r.Kind = store.ResourceContainer
		if r.ContainerID == "" {
			r.Kind = store.ResourceHost
		}
		r.Seq, r.Time = fromCount(seq), fromNanos(ns)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list compliance results: %w", err)
	}
	return out, nil
}

// severityRank orders severities in SQL as compliance.Severity.Rank does.
const severityRank = `CASE f.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 WHEN 'info' THEN 0 ELSE -1 END`

// containerKey is a container's identity across hosts as one value, for
// count(DISTINCT): the host's length makes the concatenation unambiguous.
const containerKey = `length(r.host) || ':' || r.host || r.container_id`

func (x queries) ComplianceStats(ctx context.Context, f store.ComplianceFilter) (store.ComplianceStats, error) {
	f.After, f.Limit = nil, 0
	checks := f.Checks
	f.Checks = nil
	where, args, err := complianceWhere(f)
	if err != nil {
		return store.ComplianceStats{}, err
	}
	var out store.ComplianceStats
	err = x.q.QueryRowContext(ctx, `SELECT
			count(CASE WHEN r.container_id != '' THEN 1 END),
			count(DISTINCT CASE WHEN r.container_id != '' AND r.image != '' THEN r.image END),
			count(DISTINCT r.host)
		FROM compliance_results r`+where, args...).Scan(&out.Containers, &out.Images, &out.Hosts)
	if err != nil {
		return store.ComplianceStats{}, fmt.Errorf("compliance stats: %w", err)
	}

	join := where
	if len(checks) > 0 {
		in, cargs := checkIn(checks)
		if join == "" {
			join = " WHERE " + in
		} else {
			join += " AND " + in
		}
		args = append(args, cargs...)
	}
	rows, err := x.q.QueryContext(ctx, `SELECT r.container_id = '' AS host_check, f.check_slug, f.prisma_id,
			max(`+severityRank+`), max(f.title),
			count(DISTINCT CASE WHEN r.container_id != '' THEN `+containerKey+` END),
			count(DISTINCT CASE WHEN r.container_id != '' AND r.image != '' THEN r.image END),
			count(DISTINCT r.host)
		FROM compliance_findings f JOIN compliance_results r ON r.host = f.host AND r.container_id = f.container_id`+join+`
		GROUP BY host_check, f.check_slug, f.prisma_id
		ORDER BY host_check, f.check_slug, f.prisma_id`, args...)
	if err != nil {
		return store.ComplianceStats{}, fmt.Errorf("compliance stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s      store.CheckStat
			isHost bool
			rank   int
		)
		if err := rows.Scan(&isHost, &s.Check, &s.PrismaID, &rank, &s.Title, &s.Containers, &s.Images, &s.Hosts); err != nil {
			return store.ComplianceStats{}, fmt.Errorf("compliance stats: %w", err)
		}
		s.Kind = store.ResourceContainer
		if isHost {
			s.Kind = store.ResourceHost
		}
		s.Severity = severityOfRank(rank)
		out.Checks = append(out.Checks, s)
	}
	if err := rows.Err(); err != nil {
		return store.ComplianceStats{}, fmt.Errorf("compliance stats: %w", err)
	}
	return out, nil
}

func severityOfRank(rank int) compliance.Severity {
	for _, s := range []compliance.Severity{compliance.SeverityCritical, compliance.SeverityHigh, compliance.SeverityMedium, compliance.SeverityLow, compliance.SeverityInfo} {
		if s.Rank() == rank {
			return s
		}
	}
	return ""
}
