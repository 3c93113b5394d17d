package store

import (
	"context"
	"time"

	"bulwark/internal/event"
	"bulwark/internal/inventory"
	"bulwark/internal/policy"
)

// FleetReader answers queries about Defenders, their events and policies.
type FleetReader interface {
	Defender(ctx context.Context, id string) (inventory.Defender, error)
	Defenders(ctx context.Context) ([]inventory.Defender, error)
	DefenderCerts(ctx context.Context, defenderID string) ([]inventory.Cert, error)
	// RevokedSerials lists the serials of every revoked certificate.
	RevokedSerials(ctx context.Context) ([]string, error)
	// Events returns matching events ordered by (defender, seq).
	Events(ctx context.Context, f event.Filter) ([]event.Event, error)
	CountEvents(ctx context.Context, f event.Filter) (int64, error)
	// PolicySnapshot returns every policy at the current revision
	// (revision 0 and no policies when none was ever set).
	PolicySnapshot(ctx context.Context) (policy.Snapshot, error)
	ComplianceReader
}

// FleetWriter changes Defenders and policies inside Update.
type FleetWriter interface {
	CreateDefender(ctx context.Context, d inventory.Defender) error // ErrConflict when the ID exists
	AddDefenderCert(ctx context.Context, c inventory.Cert) error    // also sets the Defender's CertSerial/NotAfter
	// RevokeDefender marks the Defender and every certificate it has as revoked.
	RevokeDefender(ctx context.Context, id string, at time.Time) error
	// PutPolicy stores the document of one policy type and returns the new
	// revision of the whole snapshot.
	PutPolicy(ctx context.Context, typ string, doc []byte) (int64, error)
}

// FleetIngest takes the Defender channel's high-rate writes. They commit on
// their own, outside Update, and write no audit record.
type FleetIngest interface {
	// AppendEvents stores batches of possibly several Defenders in one
	// transaction. Events whose seq is not above the Defender's StoredSeq are
	// skipped as duplicates. It returns each batch's Defender's StoredSeq
	// after the commit. An unknown Defender is ErrNotFound.
	//
	// In the same transaction, each stored compliance.container or
	// compliance.host event replaces the current result of its container
	// (by host and container ID) or host (see ComplianceResultOf), unless
	// the stored result is newer (a later Time). A malformed compliance
	// event is stored as an event but changes no result: it must not stop
	// the Defender's stream.
	AppendEvents(ctx context.Context, batches []event.Batch) ([]uint64, error)
	// UpdateDefenderState records a hello, heartbeat or disconnect.
	UpdateDefenderState(ctx context.Context, id string, st inventory.State) error
}
