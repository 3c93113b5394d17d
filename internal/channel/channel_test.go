package channel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	"bulwark/internal/policy"
)

// fakeBackend stores events in memory and refuses one Defender's.
type fakeBackend struct {
	mu     sync.Mutex
	bad    string
	stored map[string]uint64
	calls  int
}

func (f *fakeBackend) AppendEvents(_ context.Context, bs []event.Batch) ([]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, b := range bs {
		if b.DefenderID == f.bad {
			return nil, errors.New("unknown defender " + b.DefenderID)
		}
	}
	out := make([]uint64, len(bs))
	for i, b := range bs {
		f.stored[b.DefenderID] = b.Events[len(b.Events)-1].Seq
		out[i] = f.stored[b.DefenderID]
	}
	return out, nil
}

func (f *fakeBackend) Connected(context.Context, string, bulwarkv1.Hello, time.Time) (uint64, error) {
	return 0, nil
}
func (f *fakeBackend) Heartbeat(context.Context, string, bulwarkv1.Heartbeat, time.Time) error {
	return nil
}
func (f *fakeBackend) Disconnected(context.Context, string, time.Time) error { return nil }
func (f *fakeBackend) Policy(context.Context) (policy.Snapshot, error)       { return policy.Snapshot{}, nil }

func TestCommitterIsolatesABadBatch(t *testing.T) {
	fb := &fakeBackend{bad: "evil", stored: map[string]uint64{}}
	c := newCommitter(fb, slog.New(slog.DiscardHandler))
	type result struct {
		seq uint64
		err error
	}
	results := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Queue all three before the committer runs, so they form one group.
	for _, id := range []string{"a", "evil", "b"} {
		wg.Add(1)
		b := event.Batch{DefenderID: id, Events: []event.Event{{Seq: 1, Kind: "k"}, {Seq: 2, Kind: "k"}}}
		if !c.submit(t.Context(), b, func(seq uint64, err error) {
			mu.Lock()
			results[id] = result{seq, err}
			mu.Unlock()
			wg.Done()
		}) {
			t.Fatal("submit refused")
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	go c.run(ctx)
	wg.Wait()
	cancel()
	for _, id := range []string{"a", "b"} {
		if r := results[id]; r.err != nil || r.seq != 2 {
			t.Errorf("batch of %s: stored %d, err %v; want 2, nil", id, r.seq, r.err)
		}
	}
	if results["evil"].err == nil {
		t.Error("the bad batch succeeded")
	}
	if fb.calls != 4 {
		t.Errorf("backend calls = %d, want 4 (the group, then each batch alone)", fb.calls)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 500*time.Millisecond, 30*time.Second
	for n := range 40 {
		for _, r := range []float64{0, 0.5, 0.999} {
			d := Backoff(n, lo, hi, r)
			if d < lo/2 || d > hi {
				t.Fatalf("Backoff(%d, r=%v) = %v, want within [%v, %v]", n, r, d, lo/2, hi)
			}
		}
	}
	if a, b := Backoff(1, lo, hi, 0.999), Backoff(6, lo, hi, 0.999); b <= a {
		t.Errorf("the cap does not grow: attempt 1 %v, attempt 6 %v", a, b)
	}
	if Backoff(3, lo, hi, 0.1) == Backoff(3, lo, hi, 0.9) {
		t.Error("no jitter")
	}
}

func TestWindowShrinksWithTheFleet(t *testing.T) {
	s := NewServer(ServerConfig{}, &fakeBackend{stored: map[string]uint64{}}, slog.New(slog.DiscardHandler))
	if w := s.window(); w != 4 {
		t.Errorf("window with no Defender = %d, want 4", w)
	}
	for i := range manyDefenders + 1 {
		s.conns[fmt.Sprint(i)] = &serverConn{}
	}
	if w := s.window(); w != 1 {
		t.Errorf("window with %d Defenders = %d, want 1", manyDefenders+1, w)
	}
}
