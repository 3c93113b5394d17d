package defender

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
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
