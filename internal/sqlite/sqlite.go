// Package sqlite keeps the Console's state in an embedded SQLite database. It
// implements store.Store over modernc.org/sqlite (pure Go, no cgo).
//
// Writes go through a single connection whose transactions begin with BEGIN
// IMMEDIATE, so concurrent Updates queue in Go rather than failing with
// SQLITE_BUSY; reads use a separate pool that, in WAL mode, never waits for
// the writer. The write connection runs with synchronous=FULL: a write is
// acknowledged only once the WAL is on disk.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"bulwark/internal/audit"
	"bulwark/internal/auth"
	"bulwark/internal/store"
)

var _ store.Store = (*DB)(nil)

// busyTimeout bounds how long a connection waits for a lock another process
// (or a checkpoint) holds before reporting SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// DB is an open SQLite database. Its methods are safe for concurrent use.
type DB struct {
	write  *sql.DB // one connection: every write transaction is serialised here
	read   *sql.DB
	path   string
	logger *slog.Logger

	// inserts[n] is AppendEvents' INSERT of n rows (insertRows and the
	// powers of two below it), prepared on write at Open: preparing in a
	// transaction would wait for write's only connection, which it holds.
	inserts map[int]*sql.Stmt
}

// Open opens the database at path, creating it with mode 0600 when it does not
// exist, and brings its schema up to date. It refuses a database written by a
// newer Bulwark.
func Open(ctx context.Context, path string, logger *slog.Logger) (_ *DB, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// SQLite would create the file with the umask's mode; credentials hashes
	// and the token signing key live here, so create it private first. The
	// -wal and -shm files inherit the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the operator chooses the path
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}

	db := &DB{path: abs, logger: logger}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()

	if db.write, err = sql.Open("sqlite", dsn(abs, true)); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	db.write.SetConnMaxIdleTime(0)
	if err := checkPragmas(ctx, db.write); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	if err := migrate(ctx, db.write, logger); err != nil {
		return nil, fmt.Errorf("migrate database %s: %w", abs, err)
	}
	db.inserts = map[int]*sql.Stmt{}
	for n := range insertSizes() {
		if db.inserts[n], err = db.write.PrepareContext(ctx, insertEventsSQL(n)); err != nil {
			return nil, fmt.Errorf("open database %s: prepare: %w", abs, err)
		}
	}

	// The read pool opens after the write connection has switched the file to
	// WAL, which is persistent, so readers need not (and must not race to) set it.
	if db.read, err = sql.Open("sqlite", dsn(abs, false)); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.read.SetMaxOpenConns(n)
	db.read.SetMaxIdleConns(n)
	if err := db.read.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	return db, nil
}

// dsn returns the driver's name for the database at path. Every connection
// gets a busy timeout and enforced foreign keys; the write connection also sets
// WAL, synchronous=FULL and BEGIN IMMEDIATE for transactions, and the readers
// are query-only so that a bug cannot write around the single writer.
func dsn(path string, write bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "on")
	q.Set("_synchronous", "FULL")
	if write {
		q.Set("_journal_mode", "WAL")
		q.Set("_txlock", "immediate")
	} else {
		q.Set("_query_only", "on")
	}
	// A file: URI, with the path escaped, so that '?' or '#' in a directory
	// name cannot be taken for the start of the parameters.
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// checkPragmas confirms that the write connection runs as dsn asked: SQLite
// answers a journal_mode it cannot honour (on some network file systems) with
// the old mode rather than an error.
func checkPragmas(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
	} {
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
			return fmt.Errorf("pragma %s: %w", p.name, err)
		}
		if got != p.want {
			return fmt.Errorf("pragma %s is %q, want %q", p.name, got, p.want)
		}
	}
	return nil
}

// Close closes the database. Readers close first so that the writer's
// connection is the last one and checkpoints the WAL into the database file.
func (db *DB) Close() error {
	var errs []error
	for _, st := range db.inserts {
		errs = append(errs, st.Close())
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close database %s: %w", db.path, err)
	}
	return nil
}

// Update runs fn in one write transaction and commits it when fn returns nil.
// When fn returns an error or panics, nothing it wrote is kept. Updates run one
// at a time; fn must not call Update itself, which would wait forever.
func (db *DB) Update(ctx context.Context, fn func(w store.Writer) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin update: %w", err)
	}
	done := false
	defer func() {
		if !done {
			// Reached on an error and on a panic, which continues unwinding.
			_ = tx.Rollback()
		}
	}()
	if err := fn(queries{q: tx}); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit update: %w", err)
	}
	return nil
}

// TouchAccessKey sets the key's last use to at, in unix nanoseconds. It runs on
// its own, outside any Update, and returns store.ErrNotFound when there is no
// such key.
func (db *DB) TouchAccessKey(ctx context.Context, id string, at int64) error {
	res, err := db.write.ExecContext(ctx, `UPDATE access_keys SET last_used_at = ? WHERE id = ?`, at, id)
	if err != nil {
		return fmt.Errorf("touch access key %s: %w", id, err)
	}
	return wantOneRow(res, "touch access key "+id)
}

// The read methods use the read pool; each is one statement and so sees one
// committed state.

// User returns the user named username, or store.ErrNotFound.
func (db *DB) User(ctx context.Context, username string) (auth.User, error) {
	return queries{q: db.read}.User(ctx, username)
}

// Users returns every user, ordered by username.
func (db *DB) Users(ctx context.Context) ([]auth.User, error) {
	return queries{q: db.read}.Users(ctx)
}

// AccessKey returns the key with id, or store.ErrNotFound.
func (db *DB) AccessKey(ctx context.Context, id string) (auth.AccessKey, error) {
	return queries{q: db.read}.AccessKey(ctx, id)
}

// AccessKeys returns the keys of username, or every key when username is "",
// ordered by owner and ID.
func (db *DB) AccessKeys(ctx context.Context, username string) ([]auth.AccessKey, error) {
	return queries{q: db.read}.AccessKeys(ctx, username)
}

// Audits returns the records f selects, newest first.
func (db *DB) Audits(ctx context.Context, f audit.Filter) ([]audit.Mgmt, error) {
	return queries{q: db.read}.Audits(ctx, f)
}

// Setting returns the value stored under key, or store.ErrNotFound.
func (db *DB) Setting(ctx context.Context, key string) ([]byte, error) {
	return queries{q: db.read}.Setting(ctx, key)
}
