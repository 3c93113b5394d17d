// Package store defines what the Console keeps and how it asks for it. The
// SQLite and PostgreSQL adapters implement Store; storetest checks that they
// behave the same.
package store

import (
	"context"
	"errors"

	"bulwark/internal/audit"
	"bulwark/internal/auth"
)

// Errors every adapter returns for the same situations.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// Reader answers queries. Reads never see a half-applied Update.
type Reader interface {
	User(ctx context.Context, username string) (auth.User, error)
	Users(ctx context.Context) ([]auth.User, error)
	AccessKey(ctx context.Context, id string) (auth.AccessKey, error)
	// AccessKeys lists the keys of username, or every key when username is "".
	AccessKeys(ctx context.Context, username string) ([]auth.AccessKey, error)
	// Audits returns matching records, newest first.
	Audits(ctx context.Context, f audit.Filter) ([]audit.Mgmt, error)
	// Setting returns a Console setting by key, ErrNotFound when unset.
	Setting(ctx context.Context, key string) ([]byte, error)
	FleetReader
	RuntimeReader
	AdmissionReader
}

// Writer changes the store inside one transaction.
type Writer interface {
	Reader
	CreateUser(ctx context.Context, u auth.User) error // ErrConflict when the username exists
	UpdateUser(ctx context.Context, u auth.User) error // ErrNotFound when absent
	DeleteUser(ctx context.Context, username string) error
	CreateAccessKey(ctx context.Context, k auth.AccessKey) error
	DeleteAccessKey(ctx context.Context, id string) error
	// AppendAudit stores a record and returns its ID.
	AppendAudit(ctx context.Context, a audit.Mgmt) (int64, error)
	PutSetting(ctx context.Context, key string, value []byte) error
	// PutSettingIfAbsent stores value unless key is set; it reports whether it stored.
	PutSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error)
	FleetWriter
	RuntimeWriter
}

// Store is the Console's persistent state.
type Store interface {
	Reader
	// Update runs fn in one serialisable transaction: all of fn's writes are
	// committed together when it returns nil, none when it returns an error.
	Update(ctx context.Context, fn func(w Writer) error) error
	// TouchAccessKey records a use of a key without an audit record; it is
	// best-effort bookkeeping and may be coalesced.
	TouchAccessKey(ctx context.Context, id string, at int64) error
	FleetIngest
	AdmissionIngest
	Close() error
}
