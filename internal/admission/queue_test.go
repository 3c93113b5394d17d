package admission

import (
	"fmt"
	"testing"

	"bulwark/internal/audit"
)

// TestAuditQueue: records come out in order, beyond the bound they are
// refused, a full batch signals the writer, and a taken slice is reused
// without its old records.
func TestAuditQueue(t *testing.T) {
	q := newAuditQueue(auditBatch + 1)
	for i := range auditBatch + 2 {
		ok := q.push(&audit.Admission{UID: fmt.Sprint(i)})
		if want := i <= auditBatch; ok != want {
			t.Fatalf("push(%d) = %v, want %v", i, ok, want)
		}
		select {
		case <-q.full:
			if i != auditBatch-1 {
				t.Fatalf("full after %d records, want after %d", i+1, auditBatch)
			}
		default:
			if i == auditBatch-1 {
				t.Fatalf("not full after %d records", auditBatch)
			}
		}
	}
	got := q.take(nil)
	if len(got) != auditBatch+1 || got[0].UID != "0" || got[auditBatch].UID != fmt.Sprint(auditBatch) {
		t.Fatalf("take() = %d records from %q, want %d from \"0\"", len(got), got[0].UID, auditBatch+1)
	}
	if !q.push(&audit.Admission{UID: "next"}) {
		t.Fatal("push after take refused")
	}
	again := q.take(got)
	if len(again) != 1 || again[0].UID != "next" {
		t.Fatalf("take() = %+v, want the one record queued since", again)
	}
	if got[0].UID != "" || &got[:1][0] != &q.recs[:1][0] {
		t.Errorf("the slice given back is not cleared and reused: %q", got[0].UID)
	}
	if rest := q.take(again); len(rest) != 0 {
		t.Errorf("take() of an empty queue = %d records", len(rest))
	}
}
