package channel

import (
	"context"
	"errors"
	"log/slog"

	"golang.org/x/sync/semaphore"

	"bulwark/internal/event"
)

// committer group-commits event batches: one goroutine takes every batch
// waiting, from any number of Defenders, and writes them in one store
// transaction, so that throughput grows with load instead of paying one
// commit (and one fsync) per batch. Acks follow the commit, in order.
type committer struct {
	backend Backend
	logger  *slog.Logger
	in      chan pendingBatch
	// room bounds the events queued or being committed. A connection that
	// cannot get room waits before it reads its next frame, so back-pressure
	// reaches the Defenders over TCP instead of piling decoded batches up in
	// the Console's memory and ack latency.
	room *semaphore.Weighted
}

type pendingBatch struct {
	batch event.Batch
	done  func(stored uint64, err error)
}

const (
	commitQueue     = 1024
	maxCommitEvents = 32 << 10
	// queuedEvents is about two commits' worth.
	queuedEvents = 2 * maxCommitEvents
)

var errShutdown = errors.New("console shutting down")

func newCommitter(b Backend, logger *slog.Logger) *committer {
	return &committer{backend: b, logger: logger, in: make(chan pendingBatch, commitQueue), room: semaphore.NewWeighted(queuedEvents)}
}

// submit queues a batch; done runs after its commit. It blocks while the
// queue is full (back-pressure on the Defender) and reports false when ctx ends first.
func (c *committer) submit(ctx context.Context, b event.Batch, done func(uint64, error)) bool {
	n := int64(min(len(b.Events), queuedEvents))
	if err := c.room.Acquire(ctx, n); err != nil {
		return false
	}
	release := func(seq uint64, err error) {
		c.room.Release(n)
		done(seq, err)
	}
	select {
	case c.in <- pendingBatch{b, release}:
		return true
	case <-ctx.Done():
		c.room.Release(n)
		return false
	}
}

func (c *committer) run(ctx context.Context) {
	for {
		var group []pendingBatch
		select {
		case p := <-c.in:
			group = append(group, p)
		case <-ctx.Done():
			c.drain()
			return
		}
		n := len(group[0].batch.Events)
	more:
		for n < maxCommitEvents {
			select {
			case p := <-c.in:
				group = append(group, p)
				n += len(p.batch.Events)
			default:
				break more
			}
		}
		c.commit(ctx, group)
	}
}

// commit writes a group in one transaction. When that fails and the group
// has several batches, each is retried alone, so that one Defender's bad
// batch fails only that Defender.
func (c *committer) commit(ctx context.Context, group []pendingBatch) {
	batches := make([]event.Batch, len(group))
	for i, p := range group {
		batches[i] = p.batch
	}
	stored, err := c.backend.AppendEvents(ctx, batches)
	if err == nil {
		for i, p := range group {
			p.done(stored[i], nil)
		}
		return
	}
	if len(group) == 1 || ctx.Err() != nil {
		for _, p := range group {
			p.done(0, err)
		}
		return
	}
	c.logger.Warn("group commit failed; retrying batch by batch", slog.Int("batches", len(group)), slog.Any("err", err))
	for _, p := range group {
		c.commit(ctx, []pendingBatch{p})
	}
}

func (c *committer) drain() {
	for {
		select {
		case p := <-c.in:
			p.done(0, errShutdown)
		default:
			return
		}
	}
}
