package defender

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
	"bulwark/internal/spool"
)

// TestAppendSpooledIsMarshal: the hand-built spool record is what
// json.Marshal makes, byte for byte.
func TestAppendSpooledIsMarshal(t *testing.T) {
	data, err := json.Marshal(event.Runtime{Process: event.Process{PID: 7, Argv: []string{"sh", "-c", `echo "<&>"`}}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))} {
		for _, kind := range []string{event.KindProcessExec, event.KindFileWrite, event.KindSensorLoss} {
			want, err := json.Marshal(spooled{Time: at, Kind: kind, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(appendSpooled(nil, at, kind, data))); diff != "" {
				t.Errorf("appendSpooled(%v, %s) differs from json.Marshal (-want +got):\n%s", at, kind, diff)
			}
		}
	}
}

func BenchmarkSpoolRecord(b *testing.B) {
	data, _ := json.Marshal(event.Runtime{Process: event.Process{PID: 7, PPID: 1, Exe: "/bin/true", Argv: []string{"/bin/true", "x"}, Cwd: "/"}, Host: "h"})
	at := time.Now()
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendSpooled(buf[:0], at, event.KindProcessExec, data)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(spooled{Time: at, Kind: event.KindProcessExec, Data: data}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzParseSpooled: a record as the Defender writes it (appendSpooled, or
// json.Marshal of a spooled) reads back by parseSpooled as json.Unmarshal
// reads it, and no bytes make it panic.
func FuzzParseSpooled(f *testing.F) {
	f.Add(int64(1764486000123456789), "process.exec", []byte(`{"process":{"pid":7}}`), []byte(`{"t":"x"}`))
	f.Add(int64(0), `a"b`, []byte(``), []byte(`{"t":"2026-01-01T00:00:00Z","k":"k","d":1}`))
	f.Add(int64(-1), `k\`, []byte(`"\u003c"`), []byte(`{"t":"2026-01-01T00:00:00Z","k":"k","d":}`))
	f.Fuzz(func(t *testing.T, nanos int64, kind string, data, raw []byte) {
		at := time.Unix(0, nanos).In(time.FixedZone("z", int(nanos%7)*3600))
		var d json.RawMessage
		if len(data) > 0 {
			if !json.Valid(data) {
				data = []byte(`{"x":1}`)
			}
			d = data
		}
		var records [][]byte
		if m, err := json.Marshal(spooled{Time: at, Kind: kind, Data: d}); err == nil {
			records = append(records, m)
			if kind != "" && len(d) > 0 && json.Valid([]byte(strconv.Quote(kind))) {
				records = append(records, appendSpooled(nil, at, kind, m[bytes.LastIndex(m, []byte(`"d":`))+4:len(m)-1]))
			}
		}
		for _, rec := range append(records, raw) {
			got, ok := parseSpooled(rec)
			if !ok {
				continue
			}
			var want spooled
			if err := json.Unmarshal(rec, &want); err != nil {
				continue // not a record the Defender wrote
			}
			if again, _ := json.Marshal(want); !bytes.Equal(again, rec) {
				continue // JSON, but not in the layout the Defender writes
			}
			if !got.Time.Equal(want.Time) || got.Kind != want.Kind || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("parseSpooled(%s) = %+v, json.Unmarshal = %+v", rec, got, want)
			}
		}
	})
}

// TestAppendLoop: records queued faster than one batch holds reach the spool
// complete and in order, a lone record within the linger, and what is still
// queued when the Defender stops is spooled before appendLoop returns.
func TestAppendLoop(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	s := &sensing{d: &Defender{spool: sp}, logger: slog.New(slog.DiscardHandler),
		queue: make(chan []byte, queueLen), full: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.appendLoop(ctx); close(done) }()

	rec := func(i int) []byte { return []byte(`{"n":` + strconv.Itoa(i) + `}`) }
	n := 0
	s.queueRecord(rec(n))
	n++
	for deadline := time.Now().Add(5 * time.Second); sp.Stats().NextSeq != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a lone record was not spooled within 5 s (linger %v): next seq %d", appendLinger, sp.Stats().NextSeq)
		}
	}
	for range 3*appendBatch + 7 {
		s.queueRecord(rec(n))
		n++
	}
	cancel()
	<-done
	if s.dropped.Load() != 0 {
		t.Fatalf("%d records dropped", s.dropped.Load())
	}
	got, err := sp.Read(1, 2*n, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("spooled %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if want := rec(i); !bytes.Equal(r.Data, want) {
			t.Fatalf("record %d = %s, want %s", i, r.Data, want)
		}
	}
}
