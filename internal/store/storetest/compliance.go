package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/store"
)

// finding is a failed check as a Defender reports it, alerting.
func finding(check, prismaID string, sev compliance.Severity) compliance.Finding {
	return compliance.Finding{
		Check: check, PrismaID: prismaID, Severity: sev, Title: "title of " + check,
		Message: check + " failed", Paths: []string{"linux.namespaces"}, Effect: compliance.EffectAlert,
	}
}

// complianceEvent is a compliance.container event (ctr set) or a
// compliance.host event (ctr nil) at base+t.
func complianceEvent(tb testing.TB, defender string, seq int, t time.Duration, host string, ctr *event.Container, fs ...compliance.Finding) event.Event {
	tb.Helper()
	kind := event.KindComplianceHost
	if ctr != nil {
		kind = event.KindComplianceContainer
	}
	data, err := json.Marshal(event.Compliance{Trigger: "start", PolicyRevision: 1, Host: host, Container: ctr, Findings: fs})
	if err != nil {
		tb.Fatal(err)
	}
	return event.Event{DefenderID: defender, Seq: uint64(seq), Time: at(t), Kind: kind, Data: data} //nolint:gosec // from 1 up
}

// The containers of the compliance tests.
var (
	ctrWeb   = &event.Container{ID: containerA, Name: "web", Image: "nginx:1", Pod: "web-0", Namespace: "prod", Runtime: "containerd"}
	ctrCache = &event.Container{ID: containerB, Name: "cache", Image: "redis:7", Namespace: "prod", Runtime: "containerd"}
	ctrWeb2  = &event.Container{ID: containerC, Name: "web2", Image: "nginx:1", Namespace: "dev", Runtime: "docker"}
)

// The findings of the compliance tests.
var (
	fHostPIDCRI    = finding("host-pid", "5515", compliance.SeverityHigh)
	fHostPIDDocker = finding("host-pid", "515", compliance.SeverityHigh)
	fPrivileged    = finding("privileged", "5054", compliance.SeverityCritical)
	fNetRaw        = finding("net-raw", "596", compliance.SeverityMedium)
	fCapsCritical  = finding("caps-added", "5053", compliance.SeverityCritical) // escalated from high
	fKubeletAnon   = finding("kubelet-anon-auth", "8212", compliance.SeverityHigh)
	fDockerICC     = finding("docker-icc", "", compliance.SeverityMedium)
)

// appendCompliance stores the fleet of the compliance tests: on node-1
// (Defender d1) containers web and cache and the host's own result; on d2's
// host, which the events do not name, container web2 and a clean host.
func appendCompliance(tb testing.TB, s store.Store) {
	tb.Helper()
	createDefenders(tb, s, "d1", "d2", "d3")
	ignored := finding("sshd", "5056", compliance.SeverityMedium)
	ignored.Effect = compliance.EffectIgnore
	bad := []event.Event{
		complianceEvent(tb, "d1", 5, 5*time.Second, "node-1", nil),
		{DefenderID: "d1", Seq: 6, Time: at(6 * time.Second), Kind: event.KindComplianceContainer, Data: []byte(`not json`)},
		{DefenderID: "d1", Seq: 7, Time: at(7 * time.Second), Kind: event.KindComplianceContainer, Data: []byte(`{"host":"node-1","findings":[]}`)},
		{DefenderID: "d1", Seq: 8, Time: at(8 * time.Second), Kind: event.KindComplianceHost, Data: []byte(`{"host":"node-1","findings":[{"check":""}]}`)},
		{DefenderID: "d1", Seq: 9, Time: at(9 * time.Second), Kind: event.KindComplianceHost, Data: []byte(`{"host":"node-1","container":{"id":"x"},"findings":[]}`)},
	}
	bad[0].Kind = event.KindComplianceContainer // a container result without a container
	d1 := append([]event.Event{
		complianceEvent(tb, "d1", 1, time.Second, "node-1", ctrWeb, fHostPIDCRI, fPrivileged, fNetRaw),
		complianceEvent(tb, "d1", 2, time.Second, "node-1", ctrCache, fHostPIDCRI, fCapsCritical),
		complianceEvent(tb, "d1", 3, 2*time.Second, "node-1", nil, fKubeletAnon),
		runtimeEvent(tb, "d1", 4, 3*time.Second, event.KindProcessExec, containerA, "nginx:1", "node-1"),
	}, bad...)
	d2 := []event.Event{
		complianceEvent(tb, "d2", 1, time.Second, "", ctrWeb2, fHostPIDDocker, ignored),
		complianceEvent(tb, "d2", 2, 2*time.Second, "", nil),
	}
	got, err := s.AppendEvents(tb.Context(), []event.Batch{{DefenderID: "d1", Events: d1}, {DefenderID: "d2", Events: d2}})
	if err != nil {
		tb.Fatalf("AppendEvents of compliance events: %v", err)
	}
	if diff := cmp.Diff([]uint64{9, 2}, got); diff != "" {
		tb.Fatalf("AppendEvents of compliance events, malformed ones included, returned (-want +got):\n%s", diff)
	}
}

// The results appendCompliance stores.
func resultWeb(fs ...compliance.Finding) store.ComplianceResult {
	return store.ComplianceResult{
		Kind: store.ResourceContainer, Host: "node-1", ContainerID: containerA, ContainerName: "web", Image: "nginx:1", Pod: "web-0", Namespace: "prod",
		DefenderID: "d1", Seq: 1, Time: at(time.Second), PolicyRevision: 1, Trigger: "start", Findings: fs,
	}
}

var (
	resultCache = store.ComplianceResult{
		Kind: store.ResourceContainer, Host: "node-1", ContainerID: containerB, ContainerName: "cache", Image: "redis:7", Namespace: "prod",
		DefenderID: "d1", Seq: 2, Time: at(time.Second), PolicyRevision: 1, Trigger: "start", Findings: []compliance.Finding{fHostPIDCRI, fCapsCritical},
	}
	resultNode1 = store.ComplianceResult{
		Kind: store.ResourceHost, Host: "node-1", DefenderID: "d1", Seq: 3, Time: at(2 * time.Second), PolicyRevision: 1, Trigger: "start",
		Findings: []compliance.Finding{fKubeletAnon},
	}
	resultWeb2 = store.ComplianceResult{
		Kind: store.ResourceContainer, Host: "host-d2", ContainerID: containerC, ContainerName: "web2", Image: "nginx:1", Namespace: "dev",
		DefenderID: "d2", Seq: 1, Time: at(time.Second), PolicyRevision: 1, Trigger: "start", Findings: []compliance.Finding{fHostPIDDocker},
	}
	resultHostD2 = store.ComplianceResult{
		Kind: store.ResourceHost, Host: "host-d2", DefenderID: "d2", Seq: 2, Time: at(2 * time.Second), PolicyRevision: 1, Trigger: "start",
	}
)

func complianceResults(tb testing.TB, s store.Store, f store.ComplianceFilter) []store.ComplianceResult {
	tb.Helper()
	got, err := s.ComplianceResults(tb.Context(), f)
	if err != nil {
		tb.Fatalf("ComplianceResults(%+v): %v", f, err)
	}
	return got
}

func complianceStats(tb testing.TB, s store.Store, f store.ComplianceFilter) store.ComplianceStats {
	tb.Helper()
	got, err := s.ComplianceStats(tb.Context(), f)
	if err != nil {
		tb.Fatalf("ComplianceStats(%+v): %v", f, err)
	}
	return got
}

func stat(kind, check, id string, sev compliance.Severity, containers, images, hosts int) store.CheckStat {
	return store.CheckStat{Kind: kind, Check: check, PrismaID: id, Title: "title of " + check, Severity: sev, Containers: containers, Images: images, Hosts: hosts}
}

func testComplianceResults(t *testing.T, s store.Store) {
	ctx := t.Context()
	appendCompliance(t, s)
	all := store.ComplianceFilter{}

	t.Run("stored", func(t *testing.T) {
		want := []store.ComplianceResult{resultHostD2, resultWeb2, resultNode1, resultWeb(fHostPIDCRI, fPrivileged, fNetRaw), resultCache}
		if diff := cmp.Diff(want, complianceResults(t, s, all), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ComplianceResults (-want +got):\n%s", diff)
		}
		// Every event was stored, the malformed ones too.
		if n := len(allEvents(t, s, "d1")); n != 9 {
			t.Errorf("Events(d1) has %d events, want 9", n)
		}
	})

	t.Run("stats", func(t *testing.T) {
		want := store.ComplianceStats{
			Checks: []store.CheckStat{
				stat(store.ResourceContainer, "caps-added", "5053", compliance.SeverityCritical, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "515", compliance.SeverityHigh, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "5515", compliance.SeverityHigh, 2, 2, 1),
				stat(store.ResourceContainer, "net-raw", "596", compliance.SeverityMedium, 1, 1, 1),
				stat(store.ResourceContainer, "privileged", "5054", compliance.SeverityCritical, 1, 1, 1),
				stat(store.ResourceHost, "kubelet-anon-auth", "8212", compliance.SeverityHigh, 0, 0, 1),
			},
			Containers: 3, Images: 2, Hosts: 2,
		}
		if diff := cmp.Diff(want, complianceStats(t, s, all)); diff != "" {
			t.Errorf("ComplianceStats (-want +got):\n%s", diff)
		}
	})

	t.Run("clean result replaces findings", func(t *testing.T) {
		clean := complianceEvent(t, "d1", 10, 10*time.Second, "node-1", ctrWeb)
		clean.Data = []byte(`{"trigger":"policy","policyRevision":2,"host":"node-1","container":{"id":"` + containerA + `","name":"web","image":"nginx:1.2","pod":"web-0","namespace":"prod"},"findings":[]}`)
		if _, err := s.AppendEvents(ctx, []event.Batch{{DefenderID: "d1", Events: []event.Event{clean}}}); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		web := resultWeb()
		web.Seq, web.Time, web.PolicyRevision, web.Trigger, web.Image = 10, at(10*time.Second), 2, "policy", "nginx:1.2"
		got := complianceResults(t, s, store.ComplianceFilter{ContainerID: containerA})
		if diff := cmp.Diff([]store.ComplianceResult{web}, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ComplianceResults of the container after a clean result (-want +got):\n%s", diff)
		}
		want := store.ComplianceStats{
			Checks: []store.CheckStat{
				stat(store.ResourceContainer, "caps-added", "5053", compliance.SeverityCritical, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "515", compliance.SeverityHigh, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "5515", compliance.SeverityHigh, 1, 1, 1),
				stat(store.ResourceHost, "kubelet-anon-auth", "8212", compliance.SeverityHigh, 0, 0, 1),
			},
			Containers: 3, Images: 3, Hosts: 2,
		}
		if diff := cmp.Diff(want, complianceStats(t, s, all)); diff != "" {
			t.Errorf("ComplianceStats after a clean result (-want +got):\n%s", diff)
		}
	})

	t.Run("an older result does not replace a newer one", func(t *testing.T) {
		// d3 reports node-1 too (a reinstalled Defender), with its clock behind.
		older := complianceEvent(t, "d3", 1, time.Second, "node-1", nil, fDockerICC)
		if _, err := s.AppendEvents(ctx, []event.Batch{{DefenderID: "d3", Events: []event.Event{older}}}); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		node1 := store.ComplianceFilter{Kind: store.ResourceHost, Hosts: []string{"node-1"}}
		if diff := cmp.Diff([]store.ComplianceResult{resultNode1}, complianceResults(t, s, node1), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("host result after an older one (-want +got):\n%s", diff)
		}
		newer := complianceEvent(t, "d3", 2, 20*time.Second, "node-1", nil, fDockerICC)
		if _, err := s.AppendEvents(ctx, []event.Batch{{DefenderID: "d3", Events: []event.Event{newer}}}); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		want := store.ComplianceResult{
			Kind: store.ResourceHost, Host: "node-1", DefenderID: "d3", Seq: 2, Time: at(20 * time.Second), PolicyRevision: 1, Trigger: "start",
			Findings: []compliance.Finding{fDockerICC},
		}
		if diff := cmp.Diff([]store.ComplianceResult{want}, complianceResults(t, s, node1), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("host result after a newer one (-want +got):\n%s", diff)
		}
		st := complianceStats(t, s, store.ComplianceFilter{Kind: store.ResourceHost})
		if diff := cmp.Diff([]store.CheckStat{stat(store.ResourceHost, "docker-icc", "", compliance.SeverityMedium, 0, 0, 1)}, st.Checks); diff != "" {
			t.Errorf("host check stats after a newer result (-want +got):\n%s", diff)
		}
	})

	t.Run("a failed append changes no result", func(t *testing.T) {
		before := complianceResults(t, s, all)
		_, err := s.AppendEvents(ctx, []event.Batch{
			{DefenderID: "d1", Events: []event.Event{complianceEvent(t, "d1", 11, time.Hour, "node-1", ctrCache)}},
			batch("nobody", 1, 1),
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AppendEvents with an unknown defender = %v, want ErrNotFound", err)
		}
		if diff := cmp.Diff(before, complianceResults(t, s, all), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ComplianceResults after a failed AppendEvents (-before +after):\n%s", diff)
		}
	})

	t.Run("a resent event changes nothing", func(t *testing.T) {
		before := complianceResults(t, s, all)
		// d1's seq 2 again, as a Defender resends after a lost ack.
		again := complianceEvent(t, "d1", 2, time.Hour, "node-1", ctrCache, fPrivileged)
		if _, err := s.AppendEvents(ctx, []event.Batch{{DefenderID: "d1", Events: []event.Event{again}}}); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		if diff := cmp.Diff(before, complianceResults(t, s, all), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ComplianceResults after a duplicate (-before +after):\n%s", diff)
		}
	})
}

func testComplianceFilters(t *testing.T, s store.Store) {
	appendCompliance(t, s)
	web := resultWeb(fHostPIDCRI, fPrivileged, fNetRaw)
	pick := func(rs ...store.ComplianceResult) []store.ComplianceResult { return rs }
	tests := []struct {
		name string
		f    store.ComplianceFilter
		want []store.ComplianceResult
	}{
		{"all", store.ComplianceFilter{}, pick(resultHostD2, resultWeb2, resultNode1, web, resultCache)},
		{"containers", store.ComplianceFilter{Kind: store.ResourceContainer}, pick(resultWeb2, web, resultCache)},
		{"hosts", store.ComplianceFilter{Kind: store.ResourceHost}, pick(resultHostD2, resultNode1)},
		{"host glob", store.ComplianceFilter{Hosts: []string{"node-?"}}, pick(resultNode1, web, resultCache)},
		{"host globs", store.ComplianceFilter{Hosts: []string{"node-1", "*-d2"}}, pick(resultHostD2, resultWeb2, resultNode1, web, resultCache)},
		{"image leaves hosts out", store.ComplianceFilter{Images: []string{"nginx:*"}}, pick(resultWeb2, web)},
		{"image star matches hosts too", store.ComplianceFilter{Images: []string{"*"}}, pick(resultHostD2, resultWeb2, resultNode1, web, resultCache)},
		{"namespace", store.ComplianceFilter{Namespaces: []string{"prod"}}, pick(web, resultCache)},
		{"every list must match", store.ComplianceFilter{Namespaces: []string{"prod"}, Images: []string{"nginx:1"}}, pick(web)},
		{"container name", store.ComplianceFilter{Containers: []string{"web*"}}, pick(resultWeb2, web)},
		{"container ID", store.ComplianceFilter{ContainerID: containerB}, pick(resultCache)},
		{"container ID prefix", store.ComplianceFilter{ContainerID: containerA[:12]}, pick(web, resultCache)},
		{"check slug", store.ComplianceFilter{Checks: []string{"host-pid"}}, pick(resultWeb2, web, resultCache)},
		{"Prisma ID", store.ComplianceFilter{Checks: []string{"515"}}, pick(resultWeb2)},
		{"any check", store.ComplianceFilter{Checks: []string{"privileged", "8212"}}, pick(resultNode1, web)},
		{"since", store.ComplianceFilter{Since: at(2 * time.Second)}, pick(resultHostD2, resultNode1)},
		{"after", store.ComplianceFilter{After: &store.ComplianceCursor{Host: "node-1", ContainerID: ""}}, pick(web, resultCache)},
		{"limit", store.ComplianceFilter{Limit: 2}, pick(resultHostD2, resultWeb2)},
		{"glob brackets are literal", store.ComplianceFilter{Hosts: []string{"node-[1]"}}, nil},
		{"no match", store.ComplianceFilter{Images: []string{"nope"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, complianceResults(t, s, tc.f), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ComplianceResults(%+v) (-want +got):\n%s", tc.f, diff)
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		var got []store.ComplianceResult
		f := store.ComplianceFilter{Limit: 2}
		for range 10 {
			page := complianceResults(t, s, f)
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			last := page[len(page)-1]
			f.After = &store.ComplianceCursor{Host: last.Host, ContainerID: last.ContainerID}
		}
		if diff := cmp.Diff(tests[0].want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ComplianceResults two at a time (-want +got):\n%s", diff)
		}
	})

	statTests := []struct {
		name string
		f    store.ComplianceFilter
		want store.ComplianceStats
	}{
		{"prod namespace", store.ComplianceFilter{Namespaces: []string{"prod"}}, store.ComplianceStats{
			Checks: []store.CheckStat{
				stat(store.ResourceContainer, "caps-added", "5053", compliance.SeverityCritical, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "5515", compliance.SeverityHigh, 2, 2, 1),
				stat(store.ResourceContainer, "net-raw", "596", compliance.SeverityMedium, 1, 1, 1),
				stat(store.ResourceContainer, "privileged", "5054", compliance.SeverityCritical, 1, 1, 1),
			},
			Containers: 2, Images: 2, Hosts: 1,
		}},
		{"nginx images", store.ComplianceFilter{Images: []string{"nginx:1"}}, store.ComplianceStats{
			Checks: []store.CheckStat{
				stat(store.ResourceContainer, "host-pid", "515", compliance.SeverityHigh, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "5515", compliance.SeverityHigh, 1, 1, 1),
				stat(store.ResourceContainer, "net-raw", "596", compliance.SeverityMedium, 1, 1, 1),
				stat(store.ResourceContainer, "privileged", "5054", compliance.SeverityCritical, 1, 1, 1),
			},
			Containers: 2, Images: 1, Hosts: 2,
		}},
		{"one check counts all resources", store.ComplianceFilter{Checks: []string{"host-pid"}}, store.ComplianceStats{
			Checks: []store.CheckStat{
				stat(store.ResourceContainer, "host-pid", "515", compliance.SeverityHigh, 1, 1, 1),
				stat(store.ResourceContainer, "host-pid", "5515", compliance.SeverityHigh, 2, 2, 1),
			},
			Containers: 3, Images: 2, Hosts: 2,
		}},
		{"hosts", store.ComplianceFilter{Kind: store.ResourceHost}, store.ComplianceStats{
			Checks: []store.CheckStat{stat(store.ResourceHost, "kubelet-anon-auth", "8212", compliance.SeverityHigh, 0, 0, 1)},
			Hosts:  2,
		}},
		{"since", store.ComplianceFilter{Since: at(2 * time.Second)}, store.ComplianceStats{
			Checks: []store.CheckStat{stat(store.ResourceHost, "kubelet-anon-auth", "8212", compliance.SeverityHigh, 0, 0, 1)},
			Hosts:  2,
		}},
		{"cursor and limit do not apply", store.ComplianceFilter{Kind: store.ResourceHost, Limit: 1, After: &store.ComplianceCursor{Host: "zzz"}}, store.ComplianceStats{
			Checks: []store.CheckStat{stat(store.ResourceHost, "kubelet-anon-auth", "8212", compliance.SeverityHigh, 0, 0, 1)},
			Hosts:  2,
		}},
		{"nothing", store.ComplianceFilter{Hosts: []string{"elsewhere"}}, store.ComplianceStats{}},
	}
	for _, tc := range statTests {
		t.Run("stats "+tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, complianceStats(t, s, tc.f), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ComplianceStats(%+v) (-want +got):\n%s", tc.f, diff)
			}
		})
	}

	t.Run("unknown kind", func(t *testing.T) {
		if _, err := s.ComplianceResults(t.Context(), store.ComplianceFilter{Kind: "image"}); err == nil {
			t.Error("ComplianceResults(Kind: image) succeeded, want an error")
		}
	})
}
