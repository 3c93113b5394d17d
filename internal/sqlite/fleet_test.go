package sqlite

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"bulwark/internal/event"
	"bulwark/internal/inventory"
	"bulwark/internal/store"
)

// BenchmarkAppendEvents commits what the channel's group commit hands the
// store under load: ten Defenders' batches of 1,000 exec events in
// containers (about 480 bytes of runtime JSON each) per call.
func BenchmarkAppendEvents(b *testing.B) {
	// ten Defenders' full batches, as under load; and one Defender's batch of
	// 63 events, as one sends during an exec storm (63: a run of each
	// prepared INSERT below insertRows).
	for _, bc := range []struct{ defenders, perBatch int }{{10, 1000}, {1, 63}} {
		b.Run(fmt.Sprintf("%dx%d", bc.defenders, bc.perBatch), func(b *testing.B) { benchmarkAppendEvents(b, bc.defenders, bc.perBatch) })
	}
}

func benchmarkAppendEvents(b *testing.B, defenders, perBatch int) {
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
	// What a Defender sends for an exec in a container: the JSON of an
	// event.Runtime. Its container and host feed the generated columns the
	// events table indexes, so the measure includes their cost.
	data, err := json.Marshal(event.Runtime{
		Process: event.Process{
			PID: 4242, PPID: 4200, UID: 1000, GID: 1000, Comm: "curl", Exe: "/usr/bin/curl",
			Argv: []string{"curl", "-s", "http://10.0.0.1/x.sh"}, Cwd: "/app", CgroupID: 12345, ParentExe: "/bin/sh",
		},
		Container: &event.Container{
			ID:   "3f4e5d6c7b8a99aa0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778",
			Name: "web-7d9f8c6b5-x2x4z", Image: "registry.example.com/shop/web:1.42.0",
			Pod: "web-7d9f8c6b5-x2x4z", Namespace: "shop", Runtime: "containerd",
		},
		Host: "node-07.prod.example.com",
	})
	if err != nil {
		b.Fatal(err)
	}
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
		seq += uint64(perBatch)
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
