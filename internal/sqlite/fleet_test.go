package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"bulwark/internal/event"
	"bulwark/internal/inventory"
	"bulwark/internal/store"
)

// BenchmarkAppendEvents commits what the channel's group commit hands the
// store under load: ten Defenders' batches of 1,000 events of about 100 bytes
// per call.
func BenchmarkAppendEvents(b *testing.B) {
	const defenders, perBatch = 10, 1000
	db := openTB(b, filepath.Join(b.TempDir(), "bulwark.db"))
	ctx := b.Context()
	err := db.Update(ctx, func(w store.Writer) error {
		for d := range defenders {
			if err := w.CreateDefender(ctx, inventory.Defender{ID: fmt.Sprintf("defender-%02d", d), CreatedAt: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"pid":4242,"ppid":1,"uid":1000,"path":"/usr/bin/curl","args":["curl","-s","http://10.0.0.1/x.sh"]}`) // 100 bytes
	batches := make([]event.Batch, defenders)
	for d := range batches {
		batches[d] = event.Batch{DefenderID: fmt.Sprintf("defender-%02d", d), Events: make([]event.Event, perBatch)}
	}
	start := time.Now()
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for d := range batches {
			for i := range batches[d].Events {
				batches[d].Events[i] = event.Event{Seq: seq + uint64(i) + 1, Time: start.Add(time.Duration(seq) + time.Duration(i)), Kind: "process.exec", Data: data}
			}
		}
		seq += perBatch
		stored, err := db.AppendEvents(ctx, batches)
		if err != nil {
			b.Fatal(err)
		}
		if stored[0] != seq {
			b.Fatalf("AppendEvents returned stored seq %d, want %d", stored[0], seq)
		}
	}
	b.ReportMetric(float64(b.N*defenders*perBatch)/b.Elapsed().Seconds(), "events/s")
}
