package console

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
	"bulwark/internal/sqlite"
	"bulwark/internal/store"
)

func auditEvent(t testing.TB, seq uint64, at time.Time, c *event.Container, detection string) event.Event {
	t.Helper()
	data, err := json.Marshal(event.Audit{Runtime: event.Runtime{Process: event.Process{PID: 1}, Container: c, Host: "node-a"},
		Audit: event.AuditInfo{Detection: detection, Rule: "r", Effect: "alert"}})
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{Seq: seq, Time: at, Kind: event.KindRuntimeAudit, Data: data}
}

func modelEvent(t testing.TB, seq uint64, m rp.Model) event.Event {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{Seq: seq, Time: m.Modified, Kind: event.KindRuntimeModel, Data: data}
}

// TestRuntimeIngestIsIdempotent: a batch delivered again (the Console
// failed before it acknowledged) neither adds audits to incidents twice nor
// opens empty incidents, and model reports merge.
func TestRuntimeIngestIsIdempotent(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ri := runtimeIngest{db: db, window: time.Minute, logger: slog.New(slog.DiscardHandler)}
	t0 := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	web := &event.Container{ID: "aaaa", Name: "web", Image: "web:1"}
	db1 := &event.Container{ID: "bbbb", Name: "db", Image: "db:1"}

	m1 := rp.NewModel("web:1", t0, time.Hour, 0)
	m1.Processes = []rp.ModelProcess{{Path: "/bin/sh"}}
	m1.Hosts = []string{"node-a"}
	m2 := rp.NewModel("web:1", t0.Add(time.Second), time.Hour, 0)
	m2.Processes = []rp.ModelProcess{{Path: "/usr/sbin/nginx"}}
	m2.Hosts = []string{"node-b"}

	first := []event.Batch{{DefenderID: "d1", Events: []event.Event{
		modelEvent(t, 1, m1),
		auditEvent(t, 2, t0, web, rp.DetectUnexpectedProcess),
		auditEvent(t, 3, t0.Add(30*time.Second), web, rp.DetectReverseShell),
		auditEvent(t, 4, t0.Add(10*time.Second), db1, rp.DetectPackageManager),
	}}}
	later := []event.Batch{{DefenderID: "d1", Events: []event.Event{
		auditEvent(t, 5, t0.Add(time.Hour), web, rp.DetectUnexpectedProcess), // a new incident
	}}, {DefenderID: "d2", Events: []event.Event{modelEvent(t, 1, m2)}}}
	ri.ingest(t.Context(), first)
	ri.ingest(t.Context(), later)
	snapshot := func() ([]store.Incident, []rp.Model) {
		incs, err := db.Incidents(t.Context(), store.IncidentFilter{})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := db.RuntimeModels(t.Context(), store.ModelFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return incs, ms
	}
	incs, ms := snapshot()
	type brief struct {
		ID, Container, Category string
		Audits                  int
	}
	var got []brief
	for _, i := range incs {
		got = append(got, brief{i.ID, i.ContainerID, i.Category, i.Audits})
	}
	want := []brief{
		{"d1:5", "aaaa", rp.IncidentUnexpectedBehavior, 1},
		{"d1:4", "bbbb", rp.IncidentPackageManager, 1},
		{"d1:2", "aaaa", rp.IncidentReverseShell, 2}, // takes the most severe category
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("incidents (-want +got):\n%s", diff)
	}
	if len(ms) != 1 || len(ms[0].Processes) != 2 || !cmp.Equal(ms[0].Hosts, []string{"node-a", "node-b"}) || ms[0].ID != rp.ModelID("web:1") {
		t.Fatalf("models = %+v, want web:1 merged from both Defenders", ms)
	}

	// Delivered again, in any order: nothing changes.
	ri.ingest(t.Context(), first)
	ri.ingest(t.Context(), later)
	ri.ingest(t.Context(), first)
	incs2, ms2 := snapshot()
	if diff := cmp.Diff(incs, incs2); diff != "" {
		t.Errorf("incidents changed on redelivery (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(ms, ms2); diff != "" {
		t.Errorf("models changed on redelivery (-before +after):\n%s", diff)
	}
	// Malformed events are skipped, not fatal.
	ri.ingest(t.Context(), []event.Batch{{DefenderID: "d1", Events: []event.Event{
		{Seq: 9, Time: t0, Kind: event.KindRuntimeAudit, Data: []byte(`not json`)},
		{Seq: 10, Time: t0, Kind: event.KindRuntimeModel, Data: []byte(`{"image":""}`)},
	}}})
	incs3, _ := snapshot()
	if len(incs3) != len(incs) {
		t.Errorf("malformed events changed the incidents: %d, want %d", len(incs3), len(incs))
	}
}
