package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/store"
)

func TestComplianceResultOf(t *testing.T) {
	at := time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)
	ev := func(kind, data string) event.Event {
		return event.Event{DefenderID: "d1", Seq: 7, Time: at, Kind: kind, Data: []byte(data)}
	}
	pid := compliance.Finding{Check: "host-pid", PrismaID: "5515", Severity: compliance.SeverityHigh, Title: "t", Message: "m", Effect: compliance.EffectAlert}
	tests := []struct {
		name    string
		e       event.Event
		want    store.ComplianceResult
		wantErr bool
	}{
		{
			name: "container",
			e: ev(event.KindComplianceContainer, `{"trigger":"container.start","policyRevision":3,"host":"n1",
				"container":{"id":"c1","name":"web","image":"nginx:1","pod":"web-0","namespace":"prod","runtime":"containerd"},
				"findings":[{"check":"host-pid","prismaId":"5515","severity":"high","title":"t","message":"m","effect":"alert"},
					{"check":"sshd","severity":"medium","title":"s","message":"m","effect":"ignore"}]}`),
			want: store.ComplianceResult{
				Kind: store.ResourceContainer, Host: "n1", ContainerID: "c1", ContainerName: "web", Image: "nginx:1", Pod: "web-0", Namespace: "prod",
				DefenderID: "d1", Seq: 7, Time: at, PolicyRevision: 3, Trigger: "container.start", Findings: []compliance.Finding{pid},
			},
		},
		{
			name: "clean host without a name",
			e:    ev(event.KindComplianceHost, `{"trigger":"start","policyRevision":1,"findings":[]}`),
			want: store.ComplianceResult{Kind: store.ResourceHost, DefenderID: "d1", Seq: 7, Time: at, PolicyRevision: 1, Trigger: "start"},
		},
		{name: "not JSON", e: ev(event.KindComplianceHost, `{`), wantErr: true},
		{name: "not an object", e: ev(event.KindComplianceHost, `[]`), wantErr: true},
		{name: "container without ID", e: ev(event.KindComplianceContainer, `{"host":"n1","container":{"id":" "}}`), wantErr: true},
		{name: "container result without container", e: ev(event.KindComplianceContainer, `{"host":"n1"}`), wantErr: true},
		{name: "host result with a container", e: ev(event.KindComplianceHost, `{"host":"n1","container":{"id":"c1"}}`), wantErr: true},
		{name: "finding without check", e: ev(event.KindComplianceHost, `{"host":"n1","findings":[{"severity":"high"}]}`), wantErr: true},
		{name: "wrong types", e: ev(event.KindComplianceHost, `{"host":1}`), wantErr: true},
		{name: "another kind", e: ev(event.KindProcessExec, `{"host":"n1"}`), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := store.ComplianceResultOf(tc.e)
			if tc.wantErr {
				if !errors.Is(err, store.ErrComplianceEvent) {
					t.Errorf("ComplianceResultOf(%s) = %+v, %v; want ErrComplianceEvent", tc.e.Data, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ComplianceResultOf(%s): %v", tc.e.Data, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ComplianceResultOf(%s) (-want +got):\n%s", tc.e.Data, diff)
			}
		})
	}
}

// FuzzComplianceResultOf feeds Defender-sent data to the parser: it must
// never panic, fail only with ErrComplianceEvent, and never return a result
// that the store could not key or that keeps an ignored finding.
func FuzzComplianceResultOf(f *testing.F) {
	for _, seed := range []string{
		`{"trigger":"start","policyRevision":1,"host":"n1","container":{"id":"c1","name":"web","image":"nginx:1"},"findings":[{"check":"host-pid","prismaId":"5515","severity":"high","effect":"alert","paths":["linux.namespaces"]}]}`,
		`{"host":"n1","findings":[{"check":"x","effect":"ignore"}]}`,
		`{"host":"n1","findings":null}`,
		`{"container":null}`,
		`{"findings":[{"check":""}]}`,
		`null`, `[]`, `""`, `{`, ``,
	} {
		f.Add(true, []byte(seed))
		f.Add(false, []byte(seed))
	}
	f.Fuzz(func(t *testing.T, container bool, data []byte) {
		kind := event.KindComplianceHost
		if container {
			kind = event.KindComplianceContainer
		}
		r, err := store.ComplianceResultOf(event.Event{DefenderID: "d", Seq: 1, Kind: kind, Data: data})
		if err != nil {
			if !errors.Is(err, store.ErrComplianceEvent) {
				t.Fatalf("ComplianceResultOf(%q) = %v, want ErrComplianceEvent", data, err)
			}
			return
		}
		if container != (r.Kind == store.ResourceContainer) || container == (r.ContainerID == "") {
			t.Fatalf("ComplianceResultOf(%q) kind %q container ID %q, from a %s event", data, r.Kind, r.ContainerID, kind)
		}
		for _, fd := range r.Findings {
			if fd.Check == "" || fd.Effect == compliance.EffectIgnore {
				t.Fatalf("ComplianceResultOf(%q) kept finding %+v", data, fd)
			}
		}
	})
}
