package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/runtimepolicy"
	"bulwark/internal/store"
)

func testRuntimeModels(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.RuntimeModel(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RuntimeModel(absent) = %v, want ErrNotFound", err)
	}
	web := runtimepolicy.NewModel("registry.local/web:1", at(0), time.Hour, 0)
	web.Processes = []runtimepolicy.ModelProcess{{Path: "/usr/sbin/nginx"}}
	web.Network.ListeningPorts = []uint16{80}
	web.Hosts = []string{"node-1"}
	db := runtimepolicy.NewModel("postgres:16", at(time.Second), time.Hour, 2)
	db.State = runtimepolicy.StateActive
	update(t, s, func(w store.Writer) error {
		if err := w.PutRuntimeModel(ctx, web); err != nil {
			return err
		}
		return w.PutRuntimeModel(ctx, db)
	})
	got, err := s.RuntimeModel(ctx, web.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(web, got); diff != "" {
		t.Errorf("RuntimeModel (-put +got):\n%s", diff)
	}
	// Put replaces by ID.
	web.State, web.Generation = runtimepolicy.StateManualActive, 1
	update(t, s, func(w store.Writer) error { return w.PutRuntimeModel(ctx, web) })

	images := func(ms []runtimepolicy.Model) []string {
		out := []string{}
		for _, m := range ms {
			out = append(out, m.Image)
		}
		return out
	}
	tests := []struct {
		name string
		f    store.ModelFilter
		want []string
	}{
		{"all, by image", store.ModelFilter{}, []string{"postgres:16", "registry.local/web:1"}},
		{"image", store.ModelFilter{Image: "registry.local/web:1"}, []string{"registry.local/web:1"}},
		{"state", store.ModelFilter{State: runtimepolicy.StateManualActive}, []string{"registry.local/web:1"}},
		{"state none", store.ModelFilter{State: runtimepolicy.StateLearning}, []string{}},
		{"limit", store.ModelFilter{Limit: 1}, []string{"postgres:16"}},
		{"offset", store.ModelFilter{Limit: 1, Offset: 1}, []string{"registry.local/web:1"}},
	}
	for _, tc := range tests {
		ms, err := s.RuntimeModels(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, images(ms)); diff != "" {
			t.Errorf("RuntimeModels(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
	ms, _ := s.RuntimeModels(ctx, store.ModelFilter{Image: web.Image})
	if len(ms) != 1 || ms[0].State != runtimepolicy.StateManualActive || ms[0].Generation != 1 {
		t.Errorf("after the replace: %+v", ms)
	}
}

func testIncidents(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.Incident(ctx, "d1:1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Incident(absent) = %v, want ErrNotFound", err)
	}
	if _, err := s.LatestIncident(ctx, "d1", containerA); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestIncident(none) = %v, want ErrNotFound", err)
	}
	a1 := store.Incident{ID: "d1:1", DefenderID: "d1", Host: "node-1", ContainerID: containerA, ContainerName: "web", Image: "nginx:1", Namespace: "prod",
		Category: runtimepolicy.IncidentReverseShell, Detections: []string{runtimepolicy.DetectReverseShell}, First: at(time.Second), Last: at(2 * time.Second), Audits: 1}
	a2 := store.Incident{ID: "d1:9", DefenderID: "d1", Host: "node-1", ContainerID: containerA, ContainerName: "web", Image: "nginx:1",
		Category: runtimepolicy.IncidentUnexpectedBehavior, Detections: []string{}, First: at(time.Hour), Last: at(time.Hour), Audits: 1}
	h := store.Incident{ID: "d2:3", DefenderID: "d2", Host: "node-2", Category: runtimepolicy.IncidentCryptoMiner,
		Detections: []string{runtimepolicy.DetectCryptoMiner}, First: at(time.Minute), Last: at(time.Minute), Audits: 1,
		Acknowledged: true, AckBy: "admin", AckAt: at(2 * time.Minute)}
	update(t, s, func(w store.Writer) error {
		for _, inc := range []store.Incident{a1, a2, h} {
			if err := w.PutIncident(ctx, inc); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.Incident(ctx, "d2:3")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("Incident (-put +got):\n%s", diff)
	}
	latest, err := s.LatestIncident(ctx, "d1", containerA)
	if err != nil || latest.ID != "d1:9" {
		t.Errorf("LatestIncident(d1, A) = %s, %v; want d1:9", latest.ID, err)
	}
	if _, err := s.LatestIncident(ctx, "d1", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LatestIncident(d1, host) = %v, want ErrNotFound: d1 has container incidents only", err)
	}

	// Audits belong to one incident, once.
	var added []bool
	update(t, s, func(w store.Writer) error {
		for _, r := range []struct {
			id string
			a  store.AuditRef
		}{
			{"d1:1", store.AuditRef{DefenderID: "d1", Seq: 1, Time: at(time.Second)}},
			{"d1:1", store.AuditRef{DefenderID: "d1", Seq: 4, Time: at(2 * time.Second)}},
			{"d1:9", store.AuditRef{DefenderID: "d1", Seq: 4, Time: at(2 * time.Second)}}, // already in d1:1
			{"d1:9", store.AuditRef{DefenderID: "d1", Seq: 9, Time: at(time.Hour)}},
		} {
			ok, err := w.AddIncidentAudit(ctx, r.id, r.a)
			if err != nil {
				return err
			}
			added = append(added, ok)
		}
		return nil
	})
	if diff := cmp.Diff([]bool{true, true, false, true}, added); diff != "" {
		t.Errorf("AddIncidentAudit results (-want +got):\n%s", diff)
	}
	refs, err := s.IncidentAudits(ctx, "d1:1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AuditRef{{DefenderID: "d1", Seq: 1, Time: at(time.Second)}, {DefenderID: "d1", Seq: 4, Time: at(2 * time.Second)}}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Errorf("IncidentAudits(d1:1) (-want +got):\n%s", diff)
	}

	ids := func(incs []store.Incident) []string {
		out := []string{}
		for _, i := range incs {
			out = append(out, i.ID)
		}
		return out
	}
	yes, no := true, false
	tests := []struct {
		name string
		f    store.IncidentFilter
		want []string
	}{
		{"all, newest first", store.IncidentFilter{}, []string{"d1:9", "d2:3", "d1:1"}},
		{"since: last audit at or after", store.IncidentFilter{Since: at(2 * time.Second)}, []string{"d1:9", "d2:3", "d1:1"}},
		{"since excludes", store.IncidentFilter{Since: at(3 * time.Second)}, []string{"d1:9", "d2:3"}},
		{"until: first audit before", store.IncidentFilter{Until: at(time.Minute)}, []string{"d1:1"}},
		{"host", store.IncidentFilter{Host: "node-2"}, []string{"d2:3"}},
		{"container prefix", store.IncidentFilter{ContainerID: containerA[:12]}, []string{"d1:9", "d1:1"}},
		{"category", store.IncidentFilter{Category: runtimepolicy.IncidentReverseShell}, []string{"d1:1"}},
		{"acknowledged", store.IncidentFilter{Acknowledged: &yes}, []string{"d2:3"}},
		{"unacknowledged", store.IncidentFilter{Acknowledged: &no}, []string{"d1:9", "d1:1"}},
		{"hosts only", store.IncidentFilter{HostOnly: true}, []string{"d2:3"}},
		{"containers only", store.IncidentFilter{InContainer: true}, []string{"d1:9", "d1:1"}},
		{"page", store.IncidentFilter{Limit: 1, Offset: 1}, []string{"d2:3"}},
	}
	for _, tc := range tests {
		incs, err := s.Incidents(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, ids(incs)); diff != "" {
			t.Errorf("Incidents(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
}
