package store

import (
	"context"

	"bulwark/internal/audit"
)

// AdmissionReader lists the admission controller's decisions.
type AdmissionReader interface {
	// AdmissionAudits returns matching records, newest first.
	AdmissionAudits(ctx context.Context, f audit.AdmissionFilter) ([]audit.Admission, error)
}

// AdmissionIngest takes the admission controller's decisions. The writes
// commit on their own, outside Update: they are records of what happened,
// not changes that need a management audit record.
type AdmissionIngest interface {
	// AppendAdmissionAudits stores the records in one transaction; their
	// IDs are assigned in order and their ID fields ignored.
	AppendAdmissionAudits(ctx context.Context, recs []audit.Admission) error
	// PruneAdmissionAudits deletes all but the newest keep records and
	// returns how many it deleted.
	PruneAdmissionAudits(ctx context.Context, keep int) (int64, error)
}
