package defender

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	"bulwark/internal/pki"
	"bulwark/internal/runtime/runctest"
)

// TestComplianceOfRuncContainers runs a Defender (no Console, no sensor)
// next to real runc containers in a runc root of the test's own: the one
// started without a pid namespace is reported with 5515 (plain runc is
// reported like a CRI runtime), the one with its own pid namespace is not;
// a container started later is found by the rescan; results are not sent
// again until the policy changes; every event goes through the spool once.
func TestComplianceOfRuncContainers(t *testing.T) {
	runctest.Require(t)
	root := t.TempDir() // runc --root: only this test's containers
	shared := startRunc(t, root, "bwc-hostpid-", true).ID
	private := startRunc(t, root, "bwc-private-", false).ID

	cfg := Default()
	cfg.Shim = ShimOff       // never this machine's runc
	cfg.Enforce = EnforceOff // no kernel enforcement of this machine's containers
	cfg.BundleDir = testBundle(t, "compliance-test")
	cfg.StateDir = t.TempDir()
	cfg.SpoolMaxBytes = 16 << 20
	cfg.Sensor = false
	cfg.RuncRoots = []string{root}
	cfg.ComplianceInterval = time.Second
	d, err := New(cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("defender run: %v", err)
		}
		d.Close()
	})

	byContainer := func(evs []spooledCompliance, id string) []spooledCompliance {
		var out []spooledCompliance
		for _, e := range evs {
			if e.Data.Container != nil && e.Data.Container.ID == id {
				out = append(out, e)
			}
		}
		return out
	}
	evs := waitCompliance(t, d, "the start results", func(evs []spooledCompliance) bool {
		return len(byContainer(evs, shared)) > 0 && len(byContainer(evs, private)) > 0 && slices.ContainsFunc(evs, isHostEvent)
	})
	s := byContainer(evs, shared)[0]
	if s.Data.Trigger != TriggerStart || s.Data.Container.Runtime != "runc" || s.Data.Container.Image != "registry.local/bwc:1.0" {
		t.Errorf("event of %s = %+v, want trigger start, runtime runc, image registry.local/bwc:1.0", shared, s.Data)
	}
	if f, ok := finding(s, "host-pid"); !ok || f.PrismaID != "5515" || f.Effect != "alert" || f.String() != "5515 - Do not share the host's process namespace" {
		t.Errorf("findings of %s (no pid namespace) = %+v, want 5515 host-pid, alert", shared, s.Data.Findings)
	}
	if p := byContainer(evs, private)[0]; slices.ContainsFunc(p.Data.Findings, func(f findingView) bool { return f.Check == "host-pid" }) {
		t.Errorf("findings of %s (own pid namespace) = %+v, want no host-pid", private, p.Data.Findings)
	}

	late := startRunc(t, root, "bwc-late-", true).ID
	evs = waitCompliance(t, d, "the late container's result", func(evs []spooledCompliance) bool { return len(byContainer(evs, late)) > 0 })
	if l := byContainer(evs, late)[0]; l.Data.Trigger != TriggerContainerStart {
		t.Errorf("event of the late container = %+v, want trigger container.start", l.Data)
	} else if _, ok := finding(l, "host-pid"); !ok {
		t.Errorf("findings of %s = %+v, want host-pid", late, l.Data.Findings)
	}
	time.Sleep(2500 * time.Millisecond) // two rescans
	evs = readCompliance(t, d)
	for _, id := range []string{shared, private, late} {
		if n := len(byContainer(evs, id)); n != 1 {
			t.Errorf("%d events of %s after rescans, want 1: unchanged results are not sent again", n, id)
		}
	}

	// A new policy revision that ignores host-pid: every container again.
	pol := bulwarkv1.Policy{Revision: 7, Policies: map[string]json.RawMessage{
		policyComplianceContainer: json.RawMessage(`{"rules":[{"name":"no host pid here","checks":{"host-pid":"ignore"}}]}`),
	}}
	if err := d.applyPolicy(pol); err != nil {
		t.Fatal(err)
	}
	evs = waitCompliance(t, d, "the policy results", func(evs []spooledCompliance) bool {
		for _, id := range []string{shared, private, late} {
			if !slices.ContainsFunc(byContainer(evs, id), func(e spooledCompliance) bool { return e.Data.PolicyRevision == 7 }) {
				return false
			}
		}
		return true
	})
	for _, id := range []string{shared, late} {
		for _, e := range byContainer(evs, id) {
			if e.Data.PolicyRevision != 7 {
				continue
			}
			if _, ok := finding(e, "host-pid"); ok || e.Data.Trigger != TriggerPolicy {
				t.Errorf("event of %s at revision 7 = %+v, want trigger policy and host-pid ignored", id, e.Data)
			}
		}
	}
	// Exactly once: seqs consecutive from 1, no result twice.
	seen := map[string]bool{}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
		key := e.Kind + e.Raw
		if seen[key] {
			t.Errorf("event sent twice: %s", e.Raw)
		}
		seen[key] = true
	}
	if st := d.Status(); st.Compliance == nil || st.Compliance.Events == 0 || st.Compliance.Containers != 3 {
		t.Errorf("status compliance = %+v, want events sent and 3 containers", st.Compliance)
	}
}

type findingView = struct {
	Check    string `json:"check"`
	PrismaID string `json:"prismaId"`
	Effect   string `json:"effect"`
	Title    string `json:"title"`
}

// spooledCompliance is a compliance event as read back from the spool.
type spooledCompliance struct {
	Seq  uint64
	Kind string
	Raw  string
	Data struct {
		Trigger        string           `json:"trigger"`
		PolicyRevision int64            `json:"policyRevision"`
		Host           string           `json:"host"`
		Container      *event.Container `json:"container"`
		Findings       []findingView    `json:"findings"`
	}
}

func isHostEvent(e spooledCompliance) bool { return e.Kind == event.KindComplianceHost }

func finding(e spooledCompliance, check string) (renderedFinding, bool) {
	for _, f := range e.Data.Findings {
		if f.Check == check {
			return renderedFinding(f), true
		}
	}
	return renderedFinding{}, false
}

type renderedFinding findingView

func (f renderedFinding) String() string { return f.PrismaID + " - " + f.Title }

// readCompliance reads every compliance event in the Defender's spool (no
// Console acknowledges any, so the spool holds them all).
func readCompliance(t *testing.T, d *Defender) []spooledCompliance {
	t.Helper()
	evs, err := outbox{d.spool}.Pending(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []spooledCompliance
	for _, e := range evs {
		if e.Kind != event.KindComplianceContainer && e.Kind != event.KindComplianceHost {
			t.Errorf("unexpected event kind %s", e.Kind)
			continue
		}
		sc := spooledCompliance{Seq: e.Seq, Kind: e.Kind, Raw: string(e.Data)}
		if err := json.Unmarshal(e.Data, &sc.Data); err != nil {
			t.Fatalf("event %d: %v", e.Seq, err)
		}
		out = append(out, sc)
	}
	return out
}

func waitCompliance(t *testing.T, d *Defender, what string, ok func([]spooledCompliance) bool) []spooledCompliance {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs := readCompliance(t, d)
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, e := range evs {
				b.WriteString("\n  " + e.Kind + " " + e.Raw)
			}
			t.Fatalf("timed out waiting for %s; events:%s\nstatus: %+v", what, b.String(), d.Status().Compliance)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testBundle writes an install bundle signed by a CA of the test's own,
// pointing at a Console that is not there.
func testBundle(t *testing.T, id string) string {
	t.Helper()
	now := time.Now()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, notAfter, err := ca.IssueClient(id, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	info, _ := json.Marshal(BundleInfo{DefenderID: id, ConsoleURL: "wss://127.0.0.1:9" + bulwarkv1.Path, IssuedAt: now, NotAfter: notAfter})
	for name, data := range map[string][]byte{BundleCA: ca.CertPEM(), BundleCert: certPEM, BundleKey: keyPEM, BundleConfig: info} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startRunc runs a busybox container that sleeps in runc root root, with
// or without its own pid namespace: a read-only root and an image
// annotation, as the Defender's tests have it.
func startRunc(t *testing.T, root, prefix string, hostPID bool) *runctest.Container {
	t.Helper()
	return runctest.Run(t, runctest.Options{Prefix: prefix, Root: root, HostPID: hostPID, ReadonlyRoot: true,
		Args: []string{"sleep", "60"}, Annotations: map[string]string{"io.bulwark.image": "registry.local/bwc:1.0"}})
}
