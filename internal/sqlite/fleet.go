package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/bits"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"bulwark/internal/event"
	"bulwark/internal/inventory"
	"bulwark/internal/policy"
	"bulwark/internal/store"
)

// Event page sizes.
const (
	defaultEventLimit = 1000
	maxEventLimit     = 100000
)

const defenderColumns = `id, hostname, host_network, version, os, kernel, runtimes, capabilities,
	connected, last_seen, cert_serial, cert_not_after, revoked, revoked_at,
	spool_depth, events_dropped, stored_seq, policy_revision, created_at, sensor`

func scanDefender(s interface{ Scan(...any) error }) (inventory.Defender, error) {
	var (
		d                                      inventory.Defender
		runtimes, capabilities, sensor         string
		lastSeen, notAfter, revokedAt, created int64
		spool, dropped, storedSeq              int64
	)
	err := s.Scan(&d.ID, &d.Hostname, &d.HostNetwork, &d.Version, &d.OS, &d.Kernel, &runtimes, &capabilities,
		&d.Connected, &lastSeen, &d.CertSerial, &notAfter, &d.Revoked, &revokedAt,
		&spool, &dropped, &storedSeq, &d.PolicyRevision, &created, &sensor)
	if err != nil {
		return inventory.Defender{}, err
	}
	if d.Runtimes, err = fromJSONList(runtimes); err != nil {
		return inventory.Defender{}, fmt.Errorf("defender %s runtimes: %w", d.ID, err)
	}
	if d.Capabilities, err = fromJSONList(capabilities); err != nil {
		return inventory.Defender{}, fmt.Errorf("defender %s capabilities: %w", d.ID, err)
	}
	if sensor != "" {
		d.Sensor = new(inventory.Sensor)
		if err := json.Unmarshal([]byte(sensor), d.Sensor); err != nil {
			return inventory.Defender{}, fmt.Errorf("defender %s sensor: %w", d.ID, err)
		}
	}
	d.LastSeen, d.CertNotAfter, d.RevokedAt, d.CreatedAt = fromNanos(lastSeen), fromNanos(notAfter), fromNanos(revokedAt), fromNanos(created)
	d.SpoolDepth, d.EventsDropped, d.StoredSeq = fromCount(spool), fromCount(dropped), fromCount(storedSeq)
	return d, nil
}

func (x queries) Defender(ctx context.Context, id string) (inventory.Defender, error) {
	d, err := scanDefender(x.q.QueryRowContext(ctx, `SELECT `+defenderColumns+` FROM defenders WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return inventory.Defender{}, fmt.Errorf("defender %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return inventory.Defender{}, fmt.Errorf("get defender %s: %w", id, err)
	}
	return d, nil
}

func (x queries) Defenders(ctx context.Context) ([]inventory.Defender, error) {
	rows, err := x.q.QueryContext(ctx, `SELECT `+defenderColumns+` FROM defenders ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list defenders: %w", err)
	}
	defer rows.Close()
	var ds []inventory.Defender
	for rows.Next() {
		d, err := scanDefender(rows)
		if err != nil {
			return nil, fmt.Errorf("list defenders: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list defenders: %w", err)
	}
	return ds, nil
}

// CreateDefender stores d as given; StoredSeq is ignored, a new Defender has
// stored no event.
func (x queries) CreateDefender(ctx context.Context, d inventory.Defender) error {
	runtimes, err := toJSONList(d.Runtimes)
	if err != nil {
		return fmt.Errorf("create defender %s: %w", d.ID, err)
	}
	capabilities, err := toJSONList(d.Capabilities)
	if err != nil {
		return fmt.Errorf("create defender %s: %w", d.ID, err)
	}
	sensor := ""
	if d.Sensor != nil {
		b, err := json.Marshal(d.Sensor)
		if err != nil {
			return fmt.Errorf("create defender %s: %w", d.ID, err)
		}
		sensor = string(b)
	}
	_, err = x.q.ExecContext(ctx, `INSERT INTO defenders (`+defenderColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
		d.ID, d.Hostname, d.HostNetwork, d.Version, d.OS, d.Kernel, runtimes, capabilities,
		d.Connected, toNanos(d.LastSeen), d.CertSerial, toNanos(d.CertNotAfter), d.Revoked, toNanos(d.RevokedAt),
		toCount(d.SpoolDepth), toCount(d.EventsDropped), d.PolicyRevision, toNanos(d.CreatedAt), sensor)
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("create defender %s: %w", d.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create defender %s: %w", d.ID, err)
	}
	return nil
}

const certColumns = `serial, defender_id, issued_at, not_after, revoked_at`

func (x queries) DefenderCerts(ctx context.Context, defenderID string) ([]inventory.Cert, error) {
	// rowid breaks ties between certificates issued at the same instant in
	// insertion order.
	rows, err := x.q.QueryContext(ctx, `SELECT `+certColumns+` FROM defender_certs
		WHERE defender_id = ? ORDER BY issued_at, rowid`, defenderID)
	if err != nil {
		return nil, fmt.Errorf("list certificates of defender %s: %w", defenderID, err)
	}
	defer rows.Close()
	var certs []inventory.Cert
	for rows.Next() {
		var (
			c                         inventory.Cert
			issued, notAfter, revoked int64
		)
		if err := rows.Scan(&c.Serial, &c.DefenderID, &issued, &notAfter, &revoked); err != nil {
			return nil, fmt.Errorf("list certificates of defender %s: %w", defenderID, err)
		}
		c.IssuedAt, c.NotAfter, c.RevokedAt = fromNanos(issued), fromNanos(notAfter), fromNanos(revoked)
		certs = append(certs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list certificates of defender %s: %w", defenderID, err)
	}
	return certs, nil
}

func (x queries) RevokedSerials(ctx context.Context) ([]string, error) {
	rows, err := x.q.QueryContext(ctx, `SELECT serial FROM defender_certs WHERE revoked_at != 0 ORDER BY serial`)
	if err != nil {
		return nil, fmt.Errorf("list revoked serials: %w", err)
	}
	defer rows.Close()
	var serials []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("list revoked serials: %w", err)
		}
		serials = append(serials, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list revoked serials: %w", err)
	}
	return serials, nil
}

// AddDefenderCert stores c and makes the Defender's newest certificate (by
// IssuedAt, the later added on a tie) its current one. It returns
// store.ErrNotFound when the Defender does not exist and store.ErrConflict
// when the serial is taken.
func (x queries) AddDefenderCert(ctx context.Context, c inventory.Cert) error {
	_, err := x.q.ExecContext(ctx, `INSERT INTO defender_certs (`+certColumns+`) VALUES (?, ?, ?, ?, ?)`,
		c.Serial, c.DefenderID, toNanos(c.IssuedAt), toNanos(c.NotAfter), toNanos(c.RevokedAt))
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("add certificate %s: %w", c.Serial, store.ErrConflict)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return fmt.Errorf("add certificate %s: defender %s: %w", c.Serial, c.DefenderID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("add certificate %s: %w", c.Serial, err)
	}
	_, err = x.q.ExecContext(ctx, `UPDATE defenders SET (cert_serial, cert_not_after) = (
			SELECT serial, not_after FROM defender_certs WHERE defender_id = ?1 ORDER BY issued_at DESC, rowid DESC LIMIT 1)
		WHERE id = ?1`, c.DefenderID)
	if err != nil {
		return fmt.Errorf("add certificate %s: set current certificate of defender %s: %w", c.Serial, c.DefenderID, err)
	}
	return nil
}

// RevokeDefender marks the Defender revoked at at, and every certificate of it
// not yet revoked. Revoking again keeps the first revocation's time on the
// Defender and revokes only certificates added since.
func (x queries) RevokeDefender(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		// 0 means "not revoked" in the revoked_at columns.
		return fmt.Errorf("revoke defender %s: zero revocation time", id)
	}
	ns := at.UnixNano()
	res, err := x.q.ExecContext(ctx, `UPDATE defenders
		SET revoked = 1, revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END
		WHERE id = ?`, ns, id)
	if err != nil {
		return fmt.Errorf("revoke defender %s: %w", id, err)
	}
	if err := wantOneRow(res, "revoke defender "+id); err != nil {
		return err
	}
	if _, err := x.q.ExecContext(ctx, `UPDATE defender_certs SET revoked_at = ? WHERE defender_id = ? AND revoked_at = 0`, ns, id); err != nil {
		return fmt.Errorf("revoke certificates of defender %s: %w", id, err)
	}
	return nil
}

// PutPolicy stores doc as the policy of typ and returns the snapshot's new
// revision, one above the last.
func (x queries) PutPolicy(ctx context.Context, typ string, doc []byte) (int64, error) {
	var rev int64
	if err := x.q.QueryRowContext(ctx, `UPDATE policy_revision SET revision = revision + 1 RETURNING revision`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("put policy %s: next revision: %w", typ, err)
	}
	_, err := x.q.ExecContext(ctx, `INSERT INTO policies (type, doc, revision) VALUES (?, ?, ?)
		ON CONFLICT (type) DO UPDATE SET doc = excluded.doc, revision = excluded.revision`, typ, blob(doc), rev)
	if err != nil {
		return 0, fmt.Errorf("put policy %s: %w", typ, err)
	}
	return rev, nil
}

// PolicySnapshot reads the revision and the documents in one statement, so
// that both come from the same committed state.
func (x queries) PolicySnapshot(ctx context.Context) (policy.Snapshot, error) {
	rows, err := x.q.QueryContext(ctx, `SELECT r.revision, p.type, p.doc
		FROM policy_revision r LEFT JOIN policies p ON true ORDER BY p.type`)
	if err != nil {
		return policy.Snapshot{}, fmt.Errorf("read policy snapshot: %w", err)
	}
	defer rows.Close()
	snap := policy.Snapshot{Policies: map[string]json.RawMessage{}}
	for rows.Next() {
		var (
			typ sql.NullString
			doc []byte
		)
		if err := rows.Scan(&snap.Revision, &typ, &doc); err != nil {
			return policy.Snapshot{}, fmt.Errorf("read policy snapshot: %w", err)
		}
		if typ.Valid {
			snap.Policies[typ.String] = doc
		}
	}
	if err := rows.Err(); err != nil {
		return policy.Snapshot{}, fmt.Errorf("read policy snapshot: %w", err)
	}
	return snap, nil
}

// eventWhere returns the WHERE clause, with its arguments, that f selects.
func eventWhere(f event.Filter) (string, []any) {
	var (
		where []string
		args  []any
	)
	add := func(term string, a ...any) { where, args = append(where, term), append(args, a...) }
	if f.DefenderID != "" {
		add("defender_id = ?", f.DefenderID)
		if f.AfterSeq > 0 {
			add("seq > ?", toCount(f.AfterSeq))
		}
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if len(f.Kinds) > 0 {
		var or []string
		for _, k := range f.Kinds {
			if hi, ok := prefixEnd(k); ok && strings.HasSuffix(k, ".") {
				or, args = append(or, "(kind >= ? AND kind < ?)"), append(args, k, hi)
			} else {
				or, args = append(or, "kind = ?"), append(args, k)
			}
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	if !f.Since.IsZero() {
		add("time >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until.UnixNano())
	}
	if f.OrderByTime && f.After != nil {
		// The first term lets the planner seek the time index; the row value
		// breaks ties between events of the same nanosecond.
		ns := toNanos(f.After.Time)
		add("time >= ?", ns)
		add("(time, defender_id, seq) > (?, ?, ?)", ns, f.After.DefenderID, toCount(f.After.Seq))
	}
	if f.HostOnly {
		add("container_id IS NULL") // as written in the events_host_time index
	}
	if f.InContainer {
		add("container_id IS NOT NULL")
	}
	if f.ContainerID != "" {
		if hi, ok := prefixEnd(f.ContainerID); ok {
			add("container_id >= ? AND container_id < ?", f.ContainerID, hi)
		} else {
			add("substr(container_id, 1, ?) = ?", len(f.ContainerID), f.ContainerID)
		}
	}
	// Last: these parse the JSON of each row the terms above let through.
	if f.Image != "" {
		add("CASE WHEN json_valid(data) THEN json_extract(data, '$.container.image') END = ?", f.Image)
	}
	if f.Host != "" {
		add("CASE WHEN json_valid(data) THEN json_extract(data, '$.host') END = ?", f.Host)
	}
	if len(where) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// prefixEnd returns the least string above every string that starts with p,
// for a range that an index can seek; false when there is none (p is all
// 0xff bytes).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// Events returns the events f selects; see DB.Events.
func (x queries) Events(ctx context.Context, f event.Filter) ([]event.Event, error) {
	where, args := eventWhere(f)
	limit := f.Limit
	if limit <= 0 {
		limit = defaultEventLimit
	}
	limit = min(limit, maxEventLimit)
	args = append(args, limit)
	order := " ORDER BY defender_id, seq"
	if f.OrderByTime {
		order = " ORDER BY time, defender_id, seq"
	}
	rows, err := x.q.QueryContext(ctx, `SELECT defender_id, seq, time, kind, data FROM events`+where+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		var (
			e       event.Event
			seq, ns int64
		)
		if err := rows.Scan(&e.DefenderID, &seq, &ns, &e.Kind, &e.Data); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Seq, e.Time = fromCount(seq), fromNanos(ns)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

func (x queries) CountEvents(ctx context.Context, f event.Filter) (int64, error) {
	where, args := eventWhere(f)
	var n int64
	if err := x.q.QueryRowContext(ctx, `SELECT count(*) FROM events`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// The read methods of the fleet, on the read pool.

// Defender returns the Defender with id, or store.ErrNotFound.
func (db *DB) Defender(ctx context.Context, id string) (inventory.Defender, error) {
	return queries{q: db.read}.Defender(ctx, id)
}

// Defenders returns every Defender, ordered by ID.
func (db *DB) Defenders(ctx context.Context) ([]inventory.Defender, error) {
	return queries{q: db.read}.Defenders(ctx)
}

// DefenderCerts returns the certificates of a Defender, oldest first.
func (db *DB) DefenderCerts(ctx context.Context, defenderID string) ([]inventory.Cert, error) {
	return queries{q: db.read}.DefenderCerts(ctx, defenderID)
}

// RevokedSerials returns the serial of every revoked certificate, in order.
func (db *DB) RevokedSerials(ctx context.Context) ([]string, error) {
	return queries{q: db.read}.RevokedSerials(ctx)
}

// Events returns the events f selects, ordered by Defender and seq, or with
// f.OrderByTime by time; at most f.Limit, 1000 by default and never more
// than 100000.
func (db *DB) Events(ctx context.Context, f event.Filter) ([]event.Event, error) {
	return queries{q: db.read}.Events(ctx, f)
}

// CountEvents counts the events f selects, ignoring f.Limit.
func (db *DB) CountEvents(ctx context.Context, f event.Filter) (int64, error) {
	return queries{q: db.read}.CountEvents(ctx, f)
}

// PolicySnapshot returns every policy at the current revision.
func (db *DB) PolicySnapshot(ctx context.Context) (policy.Snapshot, error) {
	return queries{q: db.read}.PolicySnapshot(ctx)
}

// UpdateDefenderState records a Defender's live state and, when st.Host is
// set, what it says about its host. It runs on its own, outside any Update,
// and returns store.ErrNotFound when there is no such Defender.
func (db *DB) UpdateDefenderState(ctx context.Context, id string, st inventory.State) error {
	var (
		res    sql.Result
		err    error
		sensor *string // NULL keeps the stored value
	)
	if st.Sensor != nil {
		b, jerr := json.Marshal(st.Sensor)
		if jerr != nil {
			return fmt.Errorf("update defender %s: %w", id, jerr)
		}
		sensor = new(string(b))
	}
	if h := st.Host; h != nil {
		runtimes, jerr := toJSONList(h.Runtimes)
		if jerr != nil {
			return fmt.Errorf("update defender %s: %w", id, jerr)
		}
		capabilities, jerr := toJSONList(h.Capabilities)
		if jerr != nil {
			return fmt.Errorf("update defender %s: %w", id, jerr)
		}
		res, err = db.write.ExecContext(ctx, `UPDATE defenders
			SET connected = ?, last_seen = ?, spool_depth = ?, events_dropped = ?, policy_revision = ?, sensor = COALESCE(?, sensor),
				hostname = ?, host_network = ?, version = ?, os = ?, kernel = ?, runtimes = ?, capabilities = ?
			WHERE id = ?`,
			st.Connected, toNanos(st.LastSeen), toCount(st.SpoolDepth), toCount(st.EventsDropped), st.PolicyRevision, sensor,
			h.Hostname, h.HostNetwork, h.Version, h.OS, h.Kernel, runtimes, capabilities, id)
	} else {
		res, err = db.write.ExecContext(ctx, `UPDATE defenders
			SET connected = ?, last_seen = ?, spool_depth = ?, events_dropped = ?, policy_revision = ?, sensor = COALESCE(?, sensor)
			WHERE id = ?`,
			st.Connected, toNanos(st.LastSeen), toCount(st.SpoolDepth), toCount(st.EventsDropped), st.PolicyRevision, sensor, id)
	}
	if err != nil {
		return fmt.Errorf("update defender %s: %w", id, err)
	}
	return wantOneRow(res, "update defender "+id)
}

// insertRows is how many events one INSERT statement of AppendEvents carries.
// One statement per event spends most of its time crossing database/sql and
// the driver; many rows per statement amortise that.
const insertRows = 100

// insertColumns is how many values one event's row takes.
const insertColumns = 6

// containerIDCache turns the container IDs of events into the values
// AppendEvents binds, reusing the value for a repeated ID: a Defender's
// events come from a few containers, and one allocation per event would be
// a measurable part of the ingest path.
type containerIDCache map[string]any

// of returns the container ID of a runtime event's JSON, nil when none.
func (c containerIDCache) of(data []byte) any {
	id := containerIDOf(data)
	if id == nil {
		return nil
	}
	if v, ok := c[string(id)]; ok {
		return v
	}
	v := any(string(id))
	if len(c) < 1024 {
		c[string(id)] = v
	}
	return v
}

// insertEventsSQL returns the INSERT of n events.
func insertEventsSQL(n int) string {
	return `INSERT INTO events (defender_id, seq, time, kind, data, container_id) VALUES ` + //nolint:gosec // placeholders only
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ")
}

// insertSizes are the row counts of AppendEvents' prepared INSERTs:
// insertRows and every power of two below it.
func insertSizes() iter.Seq[int] {
	return func(yield func(int) bool) {
		if !yield(insertRows) {
			return
		}
		for n := 1; n < insertRows; n *= 2 {
			if !yield(n) {
				return
			}
		}
	}
}

// AppendEvents stores the events of batches in one transaction and returns,
// for each batch, its Defender's StoredSeq after the commit. An event whose
// seq is not above the Defender's highest stored seq so far (counting earlier
// events of the same call) is a duplicate and skipped; a gap is accepted. The
// batch's DefenderID is the events' Defender. When a Defender does not exist
// nothing is stored and the error wraps store.ErrNotFound. Compliance events
// also replace the current compliance results (see store.FleetIngest).
func (db *DB) AppendEvents(ctx context.Context, batches []event.Batch) (_ []uint64, err error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("append events: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()

	stored := make(map[string]int64, len(batches)) // Defender -> highest seq, as of this transaction
	changed := make(map[string]bool, len(batches))
	var (
		args         = make([]any, 0, insertColumns*insertRows)
		pending      int // rows in args
		containerIDs = containerIDCache{}
		results      []event.Event // compliance events, which also change the current results
	)
	flush := func() error {
		// insertRows rows at a time, and the call's last, shorter run in
		// runs of a power of two: each size is parsed once per DB, where a
		// statement for each length was parsed per call, and calls are
		// usually short (a Defender sends what it has every few
		// milliseconds).
		for done := 0; done < pending; {
			n := insertRows
			if left := pending - done; left < insertRows {
				n = 1 << (bits.Len(uint(left)) - 1)
			}
			if _, err := tx.StmtContext(ctx, db.inserts[n]).ExecContext(ctx, args[done*insertColumns:(done+n)*insertColumns]...); err != nil {
				return err
			}
			done += n
		}
		args, pending = args[:0], 0
		return nil
	}

	for _, b := range batches {
		last, ok := stored[b.DefenderID]
		if !ok {
			err := tx.QueryRowContext(ctx, `SELECT stored_seq FROM defenders WHERE id = ?`, b.DefenderID).Scan(&last)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("append events: defender %s: %w", b.DefenderID, store.ErrNotFound)
			}
			if err != nil {
				return nil, fmt.Errorf("append events: defender %s: %w", b.DefenderID, err)
			}
		}
		for i := range b.Events {
			e := &b.Events[i]
			if e.Seq > math.MaxInt64 {
				return nil, fmt.Errorf("append events: defender %s: seq %d out of range", b.DefenderID, e.Seq)
			}
			seq := int64(e.Seq)
			if seq <= last {
				continue // stored by an earlier call or earlier in this one
			}
			last = seq
			changed[b.DefenderID] = true
			if store.IsComplianceKind(e.Kind) {
				r := *e
				r.DefenderID = b.DefenderID // the batch names the Defender; its events may not
				results = append(results, r)
			}
			args = append(args, b.DefenderID, seq, toNanos(e.Time), e.Kind, blob(e.Data), containerIDs.of(e.Data))
			if pending++; pending == insertRows {
				if err := flush(); err != nil {
					return nil, fmt.Errorf("append events: insert: %w", err)
				}
			}
		}
		stored[b.DefenderID] = last
	}
	if err := flush(); err != nil {
		return nil, fmt.Errorf("append events: insert: %w", err)
	}
	ci := complianceIngest{tx: tx, logger: db.logger}
	for i := range results {
		if err := ci.apply(ctx, &results[i]); err != nil {
			return nil, fmt.Errorf("append events: %w", err)
		}
	}
	for id := range changed {
		if _, err := tx.ExecContext(ctx, `UPDATE defenders SET stored_seq = ? WHERE id = ?`, stored[id], id); err != nil {
			return nil, fmt.Errorf("append events: defender %s: stored seq: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("append events: commit: %w", err)
	}

	out := make([]uint64, len(batches))
	for i, b := range batches {
		out[i] = fromCount(stored[b.DefenderID])
	}
	return out, nil
}

// toJSONList encodes a list of strings for a TEXT column; nil and empty are "[]".
func toJSONList(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// fromJSONList decodes what toJSONList encoded; "[]" is nil.
func fromJSONList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// Counters are unsigned in the domain and signed 64-bit in SQLite; a value
// beyond int64 (never reached in practice) is stored as the largest.
func toCount(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

func fromCount(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
