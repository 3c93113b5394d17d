package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/internal/audit"
	"bulwark/internal/compliance"
	"bulwark/internal/store"
)

// admissionRecord is a decision of the admission tests at base+t.
func admissionRecord(t time.Duration, ns, kind, op, effect string, fs ...compliance.Finding) audit.Admission {
	return audit.Admission{
		Time: at(t), UID: "uid-" + ns + "-" + kind, Namespace: ns, Name: "web", Kind: kind, Resource: "deployments",
		Operation: op, Username: "alice", UserUID: "u-1", UserGroups: "dev, system:authenticated", Effect: effect,
		Mode: "enforce", PolicyRevision: 3, Findings: fs,
	}
}

// appendAdmission stores recs one call each and fills in the IDs they were
// given, which count up from the first.
func appendAdmission(tb testing.TB, s store.Store, recs []audit.Admission) {
	tb.Helper()
	for i := range recs {
		if err := s.AppendAdmissionAudits(tb.Context(), recs[i:i+1]); err != nil {
			tb.Fatalf("AppendAdmissionAudits: %v", err)
		}
	}
	got, err := s.AdmissionAudits(tb.Context(), audit.AdmissionFilter{Limit: len(recs)})
	if err != nil {
		tb.Fatal(err)
	}
	if len(got) != len(recs) {
		tb.Fatalf("AdmissionAudits after appending %d = %d records", len(recs), len(got))
	}
	for i := range recs {
		recs[i].ID = got[len(got)-1].ID + int64(i)
	}
}

func testAdmissionAudits(t *testing.T, s store.Store) {
	ctx := t.Context()
	blocked := fPrivileged
	blocked.Effect = compliance.EffectBlock
	recs := []audit.Admission{
		admissionRecord(time.Second, "prod", "Deployment", "CREATE", audit.EffectBlock, blocked, fHostPIDCRI),
		admissionRecord(2*time.Second, "dev", "Pod", "CREATE", audit.EffectAllow),
		admissionRecord(3*time.Second, "prod", "CronJob", "UPDATE", audit.EffectAlert, fNetRaw),
		admissionRecord(4*time.Second, "kube-system", "DaemonSet", "CREATE", audit.EffectAllow),
		// The same instant as the one before: the later append is the newer.
		admissionRecord(4*time.Second, "dev", "Deployment", "UPDATE", audit.EffectAlert, fNetRaw),
	}
	recs[0].RuleName, recs[0].Message = "block privileged", "denied"
	recs[1].DryRun, recs[1].Cluster = true, "east"
	appendAdmission(t, s, recs)
	recs[1].Findings = []compliance.Finding{} // stored as [], read back as such
	recs[3].Findings = []compliance.Finding{}
	pick := func(is ...int) []audit.Admission {
		var out []audit.Admission
		for _, i := range is {
			out = append(out, recs[i])
		}
		return out
	}
	tests := []struct {
		name   string
		filter audit.AdmissionFilter
		want   []audit.Admission
	}{
		{"all", audit.AdmissionFilter{}, pick(4, 3, 2, 1, 0)},
		{"namespace", audit.AdmissionFilter{Namespaces: []string{"prod"}}, pick(2, 0)},
		{"namespaces", audit.AdmissionFilter{Namespaces: []string{"prod", "dev"}}, pick(4, 2, 1, 0)},
		{"operation", audit.AdmissionFilter{Operations: []string{"UPDATE"}}, pick(4, 2)},
		{"effects", audit.AdmissionFilter{Effects: []string{audit.EffectBlock, audit.EffectAlert}}, pick(4, 2, 0)},
		{"kind", audit.AdmissionFilter{Kinds: []string{"Deployment"}}, pick(4, 0)},
		{"cluster", audit.AdmissionFilter{Clusters: []string{"east"}}, pick(1)},
		{"since is inclusive", audit.AdmissionFilter{Since: at(3 * time.Second)}, pick(4, 3, 2)},
		{"until is exclusive", audit.AdmissionFilter{Until: at(3 * time.Second)}, pick(1, 0)},
		{"filters combine", audit.AdmissionFilter{Namespaces: []string{"dev"}, Effects: []string{audit.EffectAlert}}, pick(4)},
		{"limit and offset", audit.AdmissionFilter{Limit: 2, Offset: 1}, pick(3, 2)},
		{"offset past the end", audit.AdmissionFilter{Offset: 10}, nil},
		{"no match", audit.AdmissionFilter{Namespaces: []string{"none"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.AdmissionAudits(ctx, tc.filter)
			if err != nil {
				t.Fatalf("AdmissionAudits(%+v): %v", tc.filter, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AdmissionAudits(%+v) mismatch (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

func testAdmissionAuditsPrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.PruneAdmissionAudits(ctx, 10); err != nil || n != 0 {
		t.Fatalf("PruneAdmissionAudits(10) on an empty store = %d, %v; want 0, nil", n, err)
	}
	var batch []audit.Admission
	for i := range 25 {
		batch = append(batch, admissionRecord(time.Duration(i)*time.Millisecond, "prod", "Pod", "CREATE", audit.EffectAllow))
	}
	// One call, one transaction: all of them.
	if err := s.AppendAdmissionAudits(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		keep        int
		wantDeleted int64
		wantLeft    int
	}{{30, 0, 25}, {10, 15, 10}, {10, 0, 10}, {0, 10, 0}} {
		n, err := s.PruneAdmissionAudits(ctx, step.keep)
		if err != nil || n != step.wantDeleted {
			t.Fatalf("PruneAdmissionAudits(%d) = %d, %v; want %d, nil", step.keep, n, err, step.wantDeleted)
		}
		got, err := s.AdmissionAudits(ctx, audit.AdmissionFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != step.wantLeft {
			t.Fatalf("after PruneAdmissionAudits(%d): %d records, want %d", step.keep, len(got), step.wantLeft)
		}
		if len(got) > 0 && !got[0].Time.Equal(at(24*time.Millisecond)) {
			t.Errorf("after PruneAdmissionAudits(%d): newest record at %v, want the last appended (%v)", step.keep, got[0].Time, at(24*time.Millisecond))
		}
	}
	// New records after a prune to zero get new IDs, and pruning keeps the newest.
	if err := s.AppendAdmissionAudits(ctx, batch[:1]); err != nil {
		t.Fatal(err)
	}
	first, err := s.AdmissionAudits(ctx, audit.AdmissionFilter{})
	if err != nil || len(first) != 1 || first[0].ID <= 25 {
		t.Fatalf("a record appended after 25 were pruned: %+v, %v; want one with an ID above 25", first, err)
	}
	if err := s.AppendAdmissionAudits(ctx, batch[1:3]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneAdmissionAudits(ctx, 1); err != nil || n != 2 {
		t.Fatalf("PruneAdmissionAudits(1) = %d, %v; want 2, nil", n, err)
	}
	got, err := s.AdmissionAudits(ctx, audit.AdmissionFilter{})
	if err != nil || len(got) != 1 || !got[0].Time.Equal(at(2*time.Millisecond)) {
		t.Fatalf("after the last prune: %+v, %v; want the record at %v", got, err, at(2*time.Millisecond))
	}
}
