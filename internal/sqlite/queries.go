package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/store"
)

// Audit page sizes.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// querier is what queries needs from *sql.DB and *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queries runs the store's statements on the read pool or, as the Writer an
// Update hands out, inside its transaction.
type queries struct {
	q querier
}

var _ store.Writer = queries{}

const userColumns = `username, role, auth_type, password_hash, created_at, last_modified, password_changed_at`

func scanUser(s interface{ Scan(...any) error }) (auth.User, error) {
	var (
		u                          auth.User
		created, modified, changed int64
	)
	if err := s.Scan(&u.Username, &u.Role, &u.AuthType, &u.PasswordHash, &created, &modified, &changed); err != nil {
		return auth.User{}, err
	}
	u.CreatedAt, u.LastModified, u.PasswordChangedAt = fromNanos(created), fromNanos(modified), fromNanos(changed)
	return u, nil
}

func (x queries) User(ctx context.Context, username string) (auth.User, error) {
	u, err := scanUser(x.q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.User{}, fmt.Errorf("user %s: %w", username, store.ErrNotFound)
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("get user %s: %w", username, err)
	}
	return u, nil
}

func (x queries) Users(ctx context.Context) ([]auth.User, error) {
	rows, err := x.q.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var users []auth.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

func (x queries) CreateUser(ctx context.Context, u auth.User) error {
	_, err := x.q.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		u.Username, string(u.Role), string(u.AuthType), u.PasswordHash,
		toNanos(u.CreatedAt), toNanos(u.LastModified), toNanos(u.PasswordChangedAt))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("create user %s: %w", u.Username, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create user %s: %w", u.Username, err)
	}
	return nil
}

// UpdateUser replaces every field of the user but its name and CreatedAt,
// which never change.
func (x queries) UpdateUser(ctx context.Context, u auth.User) error {
	res, err := x.q.ExecContext(ctx, `UPDATE users
		SET role = ?, auth_type = ?, password_hash = ?, last_modified = ?, password_changed_at = ?
		WHERE username = ?`,
		string(u.Role), string(u.AuthType), u.PasswordHash, toNanos(u.LastModified), toNanos(u.PasswordChangedAt), u.Username)
	if err != nil {
		return fmt.Errorf("update user %s: %w", u.Username, err)
	}
	return wantOneRow(res, "update user "+u.Username)
}

// DeleteUser deletes the user and, by cascade, their access keys.
func (x queries) DeleteUser(ctx context.Context, username string) error {
	res, err := x.q.ExecContext(ctx, `DELETE FROM users WHERE username = ?`, username)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", username, err)
	}
	return wantOneRow(res, "delete user "+username)
}

const keyColumns = `id, username, role, name, secret_hash, created_at, expires_at, last_used_at`

func scanKey(s interface{ Scan(...any) error }) (auth.AccessKey, error) {
	var (
		k                      auth.AccessKey
		created, expires, used int64
	)
	if err := s.Scan(&k.ID, &k.Username, &k.Role, &k.Name, &k.SecretHash, &created, &expires, &used); err != nil {
		return auth.AccessKey{}, err
	}
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt = fromNanos(created), fromNanos(expires), fromNanos(used)
	return k, nil
}

func (x queries) AccessKey(ctx context.Context, id string) (auth.AccessKey, error) {
	k, err := scanKey(x.q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM access_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.AccessKey{}, fmt.Errorf("access key %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return auth.AccessKey{}, fmt.Errorf("get access key %s: %w", id, err)
	}
	return k, nil
}

func (x queries) AccessKeys(ctx context.Context, username string) ([]auth.AccessKey, error) {
	query, args := `SELECT `+keyColumns+` FROM access_keys ORDER BY username, id`, []any(nil)
	if username != "" {
		query, args = `SELECT `+keyColumns+` FROM access_keys WHERE username = ? ORDER BY id`, []any{username}
	}
	rows, err := x.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	defer rows.Close()
	var keys []auth.AccessKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list access keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	return keys, nil
}

// CreateAccessKey stores k. It returns store.ErrConflict when the ID is taken
// and store.ErrNotFound when the owner does not exist.
func (x queries) CreateAccessKey(ctx context.Context, k auth.AccessKey) error {
	_, err := x.q.ExecContext(ctx, `INSERT INTO access_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Username, string(k.Role), k.Name, k.SecretHash,
		toNanos(k.CreatedAt), toNanos(k.ExpiresAt), toNanos(k.LastUsedAt))
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("create access key %s: %w", k.ID, store.ErrConflict)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return fmt.Errorf("create access key %s: owner %s: %w", k.ID, k.Username, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("create access key %s: %w", k.ID, err)
	}
	return nil
}

func (x queries) DeleteAccessKey(ctx context.Context, id string) error {
	res, err := x.q.ExecContext(ctx, `DELETE FROM access_keys WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete access key %s: %w", id, err)
	}
	return wantOneRow(res, "delete access key "+id)
}

// AppendAudit stores a and returns the ID it was given; a.ID is ignored.
func (x queries) AppendAudit(ctx context.Context, a audit.Mgmt) (int64, error) {
	var id int64
	err := x.q.QueryRowContext(ctx, `INSERT INTO audits_mgmt (time, username, type, method, api, status, source_ip, diff)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		toNanos(a.Time), a.Username, a.Type, a.Method, a.API, a.Status, a.SourceIP, a.Diff).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append audit: %w", err)
	}
	return id, nil
}

func (x queries) Audits(ctx context.Context, f audit.Filter) ([]audit.Mgmt, error) {
	var (
		where []string
		args  []any
	)
	if f.Username != "" {
		where, args = append(where, "username = ?"), append(args, f.Username)
	}
	if f.Type != "" {
		where, args = append(where, "type = ?"), append(args, f.Type)
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
	offset := max(f.Offset, 0)

	var query strings.Builder
	query.WriteString(`SELECT id, time, username, type, method, api, status, source_ip, diff FROM audits_mgmt`)
	if len(where) > 0 {
		query.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	// id breaks ties between records of the same nanosecond in insertion order.
	query.WriteString(` ORDER BY time DESC, id DESC LIMIT ? OFFSET ?`)
	args = append(args, limit, offset)

	rows, err := x.q.QueryContext(ctx, query.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list audits: %w", err)
	}
	defer rows.Close()
	var out []audit.Mgmt
	for rows.Next() {
		var (
			a  audit.Mgmt
			ns int64
		)
		if err := rows.Scan(&a.ID, &ns, &a.Username, &a.Type, &a.Method, &a.API, &a.Status, &a.SourceIP, &a.Diff); err != nil {
			return nil, fmt.Errorf("list audits: %w", err)
		}
		a.Time = fromNanos(ns)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audits: %w", err)
	}
	return out, nil
}

func (x queries) Setting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := x.q.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("setting %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get setting %s: %w", key, err)
	}
	if v == nil {
		v = []byte{} // an empty value is set, not absent
	}
	return v, nil
}

func (x queries) PutSetting(ctx context.Context, key string, value []byte) error {
	_, err := x.q.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, blob(value))
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

func (x queries) PutSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	res, err := x.q.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO NOTHING`, key, blob(value))
	if err != nil {
		return false, fmt.Errorf("put setting %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("put setting %s: %w", key, err)
	}
	return n == 1, nil
}

// blob keeps a nil value from being bound as NULL.
func blob(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// wantOneRow returns store.ErrNotFound when res changed no row.
func wantOneRow(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// isConstraint reports whether err is a SQLite constraint violation with one
// of the extended result codes.
func isConstraint(err error, codes ...int) bool {
	var se *sqlitedriver.Error
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.Code() == c {
			return true
		}
	}
	return false
}

// Times are stored as unix nanoseconds; the zero time is 0 so that "never"
// survives the round trip.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
