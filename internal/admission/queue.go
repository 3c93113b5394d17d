package admission

import (
	"sync"

	"bulwark/internal/audit"
)

// auditQueue holds the audits waiting to be written, up to a bound. A
// review only appends under a mutex: unlike a channel receive per record,
// the writer is not woken for each review (on a busy two-CPU host that
// wake-up competes with the requests for a CPU), but when a batch is full
// or its flush interval has passed.
type auditQueue struct {
	mu    sync.Mutex
	recs  []audit.Admission
	limit int
	// full has a value when a batch's worth of records waits.
	full chan struct{}
}

func newAuditQueue(limit int) *auditQueue {
	return &auditQueue{limit: limit, full: make(chan struct{}, 1)}
}

// push queues rec, and reports false when the queue is full.
func (q *auditQueue) push(rec *audit.Admission) bool {
	q.mu.Lock()
	if len(q.recs) >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.recs = append(q.recs, *rec)
	n := len(q.recs)
	q.mu.Unlock()
	if n == auditBatch {
		select {
		case q.full <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns what waits, in the order queued, and queues what follows in
// done, the slice the previous take returned, whose records are written.
func (q *auditQueue) take(done []audit.Admission) []audit.Admission {
	clear(done) // what the written records point to may be collected
	q.mu.Lock()
	defer q.mu.Unlock()
	recs := q.recs
	q.recs = done[:0]
	return recs
}
