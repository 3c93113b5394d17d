package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/internal/event"
	"bulwark/internal/inventory"
	"bulwark/internal/store"
)

func newDefender(id string) inventory.Defender {
	return inventory.Defender{
		ID:           id,
		Hostname:     "host-" + id,
		HostNetwork:  true,
		Version:      "1.2.3",
		OS:           "Ubuntu 24.04",
		Kernel:       "6.8.0-45-generic",
		Runtimes:     []string{"containerd", "docker"},
		Capabilities: []string{"bpf-lsm", "fanotify"},
		CreatedAt:    at(time.Hour),
	}
}

func createDefenders(tb testing.TB, s store.Store, ids ...string) {
	tb.Helper()
	update(tb, s, func(w store.Writer) error {
		for _, id := range ids {
			if err := w.CreateDefender(tb.Context(), newDefender(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

func getDefender(tb testing.TB, s store.Store, id string) inventory.Defender {
	tb.Helper()
	d, err := s.Defender(tb.Context(), id)
	if err != nil {
		tb.Fatalf("Defender(%s): %v", id, err)
	}
	return d
}

// events returns the events of defender with seqs from..to, at base+seq seconds,
// of kind "synthetic" for even seqs and "process.exec" for odd ones.
func events(defender string, from, to int) []event.Event {
	var es []event.Event
	for seq := from; seq <= to; seq++ {
		kind := "synthetic"
		if seq%2 == 1 {
			kind = "process.exec"
		}
		es = append(es, event.Event{
			DefenderID: defender,
			Seq:        uint64(seq), //nolint:gosec // from 1 up
			Time:       at(time.Duration(seq) * time.Second),
			Kind:       kind,
			Data:       fmt.Appendf(nil, `{"defender":%q,"seq":%d}`, defender, seq),
		})
	}
	return es
}

func batch(defender string, from, to int) event.Batch {
	return event.Batch{DefenderID: defender, Events: events(defender, from, to)}
}

// allEvents returns every event of defender, or of all Defenders when defender is "".
func allEvents(tb testing.TB, s store.Store, defender string) []event.Event {
	tb.Helper()
	got, err := s.Events(tb.Context(), event.Filter{DefenderID: defender, Limit: 100000})
	if err != nil {
		tb.Fatalf("Events(%q): %v", defender, err)
	}
	return got
}

func testDefenders(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.Defenders(ctx); err != nil || len(got) != 0 {
		t.Errorf("Defenders of an empty store = %v, %v; want none", got, err)
	}

	// A Defender created from an install bundle knows nothing about its host yet.
	bare := inventory.Defender{ID: "b-bare", CreatedAt: at(time.Minute)}
	full := newDefender("a-full")
	full.Connected = true
	full.LastSeen = at(2 * time.Hour)
	full.SpoolDepth = 12
	full.EventsDropped = 3
	full.PolicyRevision = 7
	update(t, s, func(w store.Writer) error {
		if err := w.CreateDefender(ctx, bare); err != nil {
			return err
		}
		return w.CreateDefender(ctx, full)
	})

	for _, want := range []inventory.Defender{bare, full} {
		got := getDefender(t, s, want.ID)
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Defender(%s) mismatch (-want +got):\n%s", want.ID, diff)
		}
	}
	list, err := s.Defenders(ctx)
	if err != nil {
		t.Fatalf("Defenders: %v", err)
	}
	if diff := cmp.Diff([]inventory.Defender{full, bare}, list, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Defenders, ordered by ID, mismatch (-want +got):\n%s", diff)
	}

	err = s.Update(ctx, func(w store.Writer) error { return w.CreateDefender(ctx, newDefender("a-full")) })
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateDefender of an existing ID = %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(full, getDefender(t, s, "a-full"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Defender(a-full) after a conflicting CreateDefender mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.Defender(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Defender(nobody) = %v, want ErrNotFound", err)
	}
	update(t, s, func(w store.Writer) error {
		if _, err := w.Defender(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Defender(nobody) in an Update = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testDefenderCerts(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1", "d2")
	c1 := inventory.Cert{Serial: "01", DefenderID: "d1", IssuedAt: at(time.Hour), NotAfter: at(90 * 24 * time.Hour)}
	c2 := inventory.Cert{Serial: "02", DefenderID: "d1", IssuedAt: at(2 * time.Hour), NotAfter: at(91 * 24 * time.Hour)}
	c3 := inventory.Cert{Serial: "03", DefenderID: "d2", IssuedAt: at(time.Hour), NotAfter: at(90 * 24 * time.Hour)}
	update(t, s, func(w store.Writer) error {
		for _, c := range []inventory.Cert{c1, c2, c3} {
			if err := w.AddDefenderCert(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})

	checkCerts := func(t *testing.T, id string, want []inventory.Cert) {
		t.Helper()
		got, err := s.DefenderCerts(ctx, id)
		if err != nil {
			t.Fatalf("DefenderCerts(%s): %v", id, err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("DefenderCerts(%s), oldest first, mismatch (-want +got):\n%s", id, diff)
		}
	}
	checkCurrent := func(t *testing.T, id string, want inventory.Cert) {
		t.Helper()
		d := getDefender(t, s, id)
		if d.CertSerial != want.Serial || !d.CertNotAfter.Equal(want.NotAfter) {
			t.Errorf("Defender(%s) certificate = %s until %v, want %s until %v", id, d.CertSerial, d.CertNotAfter, want.Serial, want.NotAfter)
		}
	}
	checkRevoked := func(t *testing.T, want []string) {
		t.Helper()
		got, err := s.RevokedSerials(ctx)
		if err != nil {
			t.Fatalf("RevokedSerials: %v", err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("RevokedSerials mismatch (-want +got):\n%s", diff)
		}
	}
	checkCerts(t, "d1", []inventory.Cert{c1, c2})
	checkCerts(t, "d2", []inventory.Cert{c3})
	checkCerts(t, "nobody", nil)
	checkCurrent(t, "d1", c2)
	checkCurrent(t, "d2", c3)
	checkRevoked(t, nil)

	// A renewal issued at the same instant as the current certificate replaces it.
	c4 := inventory.Cert{Serial: "04", DefenderID: "d2", IssuedAt: c3.IssuedAt, NotAfter: at(100 * 24 * time.Hour)}
	update(t, s, func(w store.Writer) error { return w.AddDefenderCert(ctx, c4) })
	checkCurrent(t, "d2", c4)
	checkCerts(t, "d2", []inventory.Cert{c3, c4})

	errs := []struct {
		name string
		fn   func(w store.Writer) error
		want error
	}{
		{"certificate of a missing defender", func(w store.Writer) error {
			return w.AddDefenderCert(ctx, inventory.Cert{Serial: "99", DefenderID: "nobody", IssuedAt: at(time.Hour)})
		}, store.ErrNotFound},
		{"duplicate serial", func(w store.Writer) error {
			return w.AddDefenderCert(ctx, inventory.Cert{Serial: "01", DefenderID: "d2", IssuedAt: at(3 * time.Hour)})
		}, store.ErrConflict},
		{"revoke a missing defender", func(w store.Writer) error { return w.RevokeDefender(ctx, "nobody", at(time.Hour)) }, store.ErrNotFound},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Update(ctx, tc.fn); !errors.Is(err, tc.want) {
				t.Errorf("Update = %v, want %v", err, tc.want)
			}
		})
	}
	checkCurrent(t, "d2", c4)

	revoked := at(48 * time.Hour)
	update(t, s, func(w store.Writer) error { return w.RevokeDefender(ctx, "d1", revoked) })
	d1 := getDefender(t, s, "d1")
	if !d1.Revoked || !d1.RevokedAt.Equal(revoked) {
		t.Errorf("Defender(d1) after RevokeDefender: Revoked %v at %v, want true at %v", d1.Revoked, d1.RevokedAt, revoked)
	}
	c1.RevokedAt, c2.RevokedAt = revoked, revoked
	checkCerts(t, "d1", []inventory.Cert{c1, c2})
	checkCerts(t, "d2", []inventory.Cert{c3, c4})
	checkRevoked(t, []string{"01", "02"})
	if d2 := getDefender(t, s, "d2"); d2.Revoked || !d2.RevokedAt.IsZero() {
		t.Errorf("Defender(d2) after revoking d1: Revoked %v at %v, want not revoked", d2.Revoked, d2.RevokedAt)
	}

	// Revoking again is no error and does not move the first revocation.
	update(t, s, func(w store.Writer) error { return w.RevokeDefender(ctx, "d1", at(72*time.Hour)) })
	if d1 := getDefender(t, s, "d1"); !d1.Revoked || !d1.RevokedAt.Equal(revoked) {
		t.Errorf("Defender(d1) after a second RevokeDefender: Revoked %v at %v, want true at %v", d1.Revoked, d1.RevokedAt, revoked)
	}
	checkCerts(t, "d1", []inventory.Cert{c1, c2})
	checkRevoked(t, []string{"01", "02"})
}

func testUpdateDefenderState(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1", "d2")
	want := newDefender("d1")

	// A hello brings the host's description.
	hello := inventory.State{
		Connected:      true,
		LastSeen:       at(2 * time.Hour),
		SpoolDepth:     100,
		EventsDropped:  5,
		PolicyRevision: 3,
		Sensor: &inventory.Sensor{
			Probes:     []inventory.Probe{{Name: "sched_process_exec", Kind: "tracepoint", Active: true, Degraded: "cwd from /proc: the kernel refused the walk"}, {Name: "sys_enter_init_module", Kind: "tracepoint", Error: "not on this kernel"}},
			LostKernel: 2,
		},
		Host: &inventory.HostInfo{
			Hostname:     "web-7f9c-pod",
			HostNetwork:  false,
			Version:      "1.3.0",
			OS:           "Alpine 3.20",
			Kernel:       "6.1.0",
			Runtimes:     []string{"cri-o"},
			Capabilities: nil,
		},
	}
	if err := s.UpdateDefenderState(ctx, "d1", hello); err != nil {
		t.Fatalf("UpdateDefenderState(d1, hello): %v", err)
	}
	want.Connected, want.LastSeen, want.SpoolDepth, want.EventsDropped, want.PolicyRevision = true, at(2*time.Hour), 100, 5, 3
	want.Hostname, want.HostNetwork, want.Version, want.OS, want.Kernel = "web-7f9c-pod", false, "1.3.0", "Alpine 3.20", "6.1.0"
	want.Runtimes, want.Capabilities = []string{"cri-o"}, nil
	want.Sensor = hello.Sensor
	if diff := cmp.Diff(want, getDefender(t, s, "d1"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Defender(d1) after a hello mismatch (-want +got):\n%s", diff)
	}

	// Stored events are the store's to count, not the state's.
	if _, err := s.AppendEvents(ctx, []event.Batch{batch("d1", 1, 4)}); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	want.StoredSeq = 4

	// A heartbeat and a disconnect leave the host's description; a
	// heartbeat with a sensor report replaces the sensor, one without keeps it.
	for _, st := range []inventory.State{
		{Connected: true, LastSeen: at(3 * time.Hour), SpoolDepth: 7, EventsDropped: 6, PolicyRevision: 4,
			Sensor: &inventory.Sensor{Probes: []inventory.Probe{{Name: "sched_process_exec", Kind: "tracepoint", Active: true}}, LostKernel: 9, LostUser: 1}},
		{Connected: false, LastSeen: at(4 * time.Hour), SpoolDepth: 7, EventsDropped: 6, PolicyRevision: 4},
	} {
		if err := s.UpdateDefenderState(ctx, "d1", st); err != nil {
			t.Fatalf("UpdateDefenderState(d1, %+v): %v", st, err)
		}
		want.Connected, want.LastSeen, want.SpoolDepth, want.EventsDropped, want.PolicyRevision = st.Connected, st.LastSeen, st.SpoolDepth, st.EventsDropped, st.PolicyRevision
		if st.Sensor != nil {
			want.Sensor = st.Sensor
		}
		if diff := cmp.Diff(want, getDefender(t, s, "d1"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Defender(d1) after state %+v mismatch (-want +got):\n%s", st, diff)
		}
	}
	if diff := cmp.Diff(newDefender("d2"), getDefender(t, s, "d2"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Defender(d2), untouched, mismatch (-want +got):\n%s", diff)
	}
	if err := s.UpdateDefenderState(ctx, "nobody", hello); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDefenderState(nobody) = %v, want ErrNotFound", err)
	}
}

func testAppendEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1", "d2", "d3")

	// Each step appends batches and checks what AppendEvents returned and
	// every event stored afterwards, per Defender.
	steps := []struct {
		name    string
		batches []event.Batch
		want    []uint64
		stored  map[string][]event.Event
	}{
		{
			name:    "first batch",
			batches: []event.Batch{batch("d1", 1, 5)},
			want:    []uint64{5},
			stored:  map[string][]event.Event{"d1": events("d1", 1, 5)},
		},
		{
			name:    "resent batch is skipped",
			batches: []event.Batch{batch("d1", 1, 5)},
			want:    []uint64{5},
			stored:  map[string][]event.Event{"d1": events("d1", 1, 5)},
		},
		{
			name:    "overlap stores only the new tail",
			batches: []event.Batch{batch("d1", 3, 8)},
			want:    []uint64{8},
			stored:  map[string][]event.Event{"d1": events("d1", 1, 8)},
		},
		{
			name:    "two defenders in one call",
			batches: []event.Batch{batch("d2", 1, 3), batch("d1", 9, 10)},
			want:    []uint64{3, 10},
			stored:  map[string][]event.Event{"d1": events("d1", 1, 10), "d2": events("d2", 1, 3)},
		},
		{
			name:    "two batches of one defender in one call",
			batches: []event.Batch{batch("d2", 4, 6), batch("d3", 1, 1), batch("d2", 5, 9)},
			want:    []uint64{9, 1, 9},
			stored:  map[string][]event.Event{"d2": events("d2", 1, 9), "d3": events("d3", 1, 1)},
		},
		{
			// A Defender whose spool overflowed lost seqs 2..4.
			name:    "gap is accepted",
			batches: []event.Batch{batch("d3", 5, 6)},
			want:    []uint64{6},
			stored:  map[string][]event.Event{"d3": append(events("d3", 1, 1), events("d3", 5, 6)...)},
		},
		{
			name:    "empty batch returns the stored seq",
			batches: []event.Batch{{DefenderID: "d3"}},
			want:    []uint64{6},
			stored:  map[string][]event.Event{"d3": append(events("d3", 1, 1), events("d3", 5, 6)...)},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := s.AppendEvents(ctx, st.batches)
			if err != nil {
				t.Fatalf("AppendEvents: %v", err)
			}
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Errorf("AppendEvents returned stored seqs (-want +got):\n%s", diff)
			}
			for id, want := range st.stored {
				if diff := cmp.Diff(want, allEvents(t, s, id)); diff != "" {
					t.Errorf("Events(%s) mismatch (-want +got):\n%s", id, diff)
				}
				if d := getDefender(t, s, id); d.StoredSeq != want[len(want)-1].Seq {
					t.Errorf("Defender(%s).StoredSeq = %d, want %d", id, d.StoredSeq, want[len(want)-1].Seq)
				}
			}
		})
	}

	t.Run("unknown defender commits nothing", func(t *testing.T) {
		before := allEvents(t, s, "")
		_, err := s.AppendEvents(ctx, []event.Batch{batch("d1", 11, 12), batch("nobody", 1, 2), batch("d2", 10, 10)})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AppendEvents with an unknown defender = %v, want ErrNotFound", err)
		}
		if diff := cmp.Diff(before, allEvents(t, s, "")); diff != "" {
			t.Errorf("Events after a failed AppendEvents mismatch (-before +after):\n%s", diff)
		}
		for id, want := range map[string]uint64{"d1": 10, "d2": 9} {
			if d := getDefender(t, s, id); d.StoredSeq != want {
				t.Errorf("Defender(%s).StoredSeq after a failed AppendEvents = %d, want %d", id, d.StoredSeq, want)
			}
		}
		// The events that were refused are taken when they come again.
		got, err := s.AppendEvents(ctx, []event.Batch{batch("d1", 11, 12)})
		if err != nil {
			t.Fatalf("AppendEvents after a failed one: %v", err)
		}
		if diff := cmp.Diff([]uint64{12}, got); diff != "" {
			t.Errorf("AppendEvents after a failed one returned (-want +got):\n%s", diff)
		}
	})
}

func testEventFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1", "d2")
	// Appended out of order: d2 first; events of d1 and d2 interleave in time.
	if _, err := s.AppendEvents(ctx, []event.Batch{batch("d2", 1, 6), batch("d1", 1, 10)}); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	d1, d2 := events("d1", 1, 10), events("d2", 1, 6)
	cat := func(parts ...[]event.Event) []event.Event {
		var out []event.Event
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	only := func(es []event.Event, kind string) []event.Event {
		var out []event.Event
		for _, e := range es {
			if e.Kind == kind {
				out = append(out, e)
			}
		}
		return out
	}

	tests := []struct {
		name   string
		filter event.Filter
		want   []event.Event
	}{
		{"all, by defender and seq", event.Filter{}, cat(d1, d2)},
		{"defender", event.Filter{DefenderID: "d2"}, d2},
		{"kind", event.Filter{Kind: "synthetic"}, cat(only(d1, "synthetic"), only(d2, "synthetic"))},
		{"since is inclusive", event.Filter{Since: at(6 * time.Second)}, cat(d1[5:], d2[5:])},
		{"until is exclusive", event.Filter{Until: at(3 * time.Second)}, cat(d1[:2], d2[:2])},
		{"since and until", event.Filter{Since: at(2 * time.Second), Until: at(4 * time.Second)}, cat(d1[1:3], d2[1:3])},
		{"since in another zone", event.Filter{Since: at(6 * time.Second).In(time.FixedZone("UTC-7", -7*3600))}, cat(d1[5:], d2[5:])},
		{"after seq", event.Filter{DefenderID: "d1", AfterSeq: 7}, d1[7:]},
		{"after seq, kind and limit", event.Filter{DefenderID: "d1", AfterSeq: 2, Kind: "process.exec", Limit: 2}, []event.Event{d1[2], d1[4]}},
		{"after the last seq", event.Filter{DefenderID: "d1", AfterSeq: 10}, nil},
		{"limit", event.Filter{Limit: 12}, cat(d1, d2[:2])},
		{"negative limit is the default", event.Filter{Limit: -1}, cat(d1, d2)},
		{"no match", event.Filter{DefenderID: "nobody"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Events(ctx, tc.filter)
			if err != nil {
				t.Fatalf("Events(%+v): %v", tc.filter, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Events(%+v) mismatch (-want +got):\n%s", tc.filter, diff)
			}
			count := tc.filter
			count.Limit = 0
			want := len(tc.want)
			if tc.filter.Limit > 0 {
				// CountEvents ignores the limit: count what the filter matches without it.
				all, err := s.Events(ctx, count)
				if err != nil {
					t.Fatalf("Events(%+v): %v", count, err)
				}
				want = len(all)
			}
			n, err := s.CountEvents(ctx, tc.filter)
			if err != nil {
				t.Fatalf("CountEvents(%+v): %v", tc.filter, err)
			}
			if n != int64(want) {
				t.Errorf("CountEvents(%+v) = %d, want %d", tc.filter, n, want)
			}
		})
	}
}

func testEventLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1")
	const n = 100005
	b := event.Batch{DefenderID: "d1", Events: make([]event.Event, n)}
	for i := range b.Events {
		b.Events[i] = event.Event{Seq: uint64(i + 1), Time: at(time.Duration(i) * time.Millisecond), Kind: "synthetic", Data: []byte(`{}`)}
	}
	if _, err := s.AppendEvents(ctx, []event.Batch{b}); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	tests := []struct {
		name   string
		filter event.Filter
		want   int
	}{
		{"default limit", event.Filter{}, 1000},
		{"limit is capped", event.Filter{Limit: 200000}, 100000},
		{"last page", event.Filter{DefenderID: "d1", AfterSeq: n - 3}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Events(ctx, tc.filter)
			if err != nil {
				t.Fatalf("Events(%+v): %v", tc.filter, err)
			}
			if len(got) != tc.want {
				t.Fatalf("Events(%+v) returned %d events, want %d", tc.filter, len(got), tc.want)
			}
			if first := tc.filter.AfterSeq + 1; got[0].Seq != first {
				t.Errorf("Events(%+v)[0].Seq = %d, want %d", tc.filter, got[0].Seq, first)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq != got[i-1].Seq+1 {
					t.Fatalf("Events(%+v): seq %d follows %d", tc.filter, got[i].Seq, got[i-1].Seq)
				}
			}
		})
	}
	if c, err := s.CountEvents(ctx, event.Filter{}); err != nil || c != n {
		t.Errorf("CountEvents() = %d, %v; want %d", c, err, n)
	}
}

func testPolicies(t *testing.T, s store.Store) {
	ctx := t.Context()
	snap, err := s.PolicySnapshot(ctx)
	if err != nil {
		t.Fatalf("PolicySnapshot of an empty store: %v", err)
	}
	if snap.Revision != 0 || snap.Policies == nil || len(snap.Policies) != 0 {
		t.Errorf("PolicySnapshot of an empty store = %+v, want revision 0 and an empty, non-nil map", snap)
	}

	docs := map[string]json.RawMessage{}
	steps := []struct {
		typ string
		doc string
	}{
		{"runtime/container", `{"rules":[{"name":"default"}]}`},
		{"compliance/host", `{"rules":[]}`},
		{"runtime/container", `{"rules":[{"name":"strict"},{"name":"default"}]}`},
	}
	for i, st := range steps {
		want := int64(i + 1)
		var rev int64
		update(t, s, func(w store.Writer) error {
			var err error
			rev, err = w.PutPolicy(ctx, st.typ, []byte(st.doc))
			return err
		})
		if rev != want {
			t.Errorf("PutPolicy(%s) #%d = revision %d, want %d", st.typ, i+1, rev, want)
		}
		docs[st.typ] = json.RawMessage(st.doc)
		snap, err := s.PolicySnapshot(ctx)
		if err != nil {
			t.Fatalf("PolicySnapshot: %v", err)
		}
		if snap.Revision != want {
			t.Errorf("PolicySnapshot().Revision after PutPolicy #%d = %d, want %d", i+1, snap.Revision, want)
		}
		if diff := cmp.Diff(docs, snap.Policies); diff != "" {
			t.Errorf("PolicySnapshot().Policies after PutPolicy #%d mismatch (-want +got):\n%s", i+1, diff)
		}
	}

	// A rolled-back PutPolicy leaves the revision.
	err = s.Update(ctx, func(w store.Writer) error {
		if _, err := w.PutPolicy(ctx, "admission", []byte(`{"rules":[]}`)); err != nil {
			return err
		}
		if snap, err := w.PolicySnapshot(ctx); err != nil || snap.Revision != 4 || len(snap.Policies) != 3 {
			t.Errorf("PolicySnapshot in the Update that put a policy = %+v, %v; want revision 4 with 3 policies", snap, err)
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update = %v, want the error fn returned", err)
	}
	if snap, err := s.PolicySnapshot(ctx); err != nil || snap.Revision != 3 || len(snap.Policies) != 2 {
		t.Errorf("PolicySnapshot after a rolled-back PutPolicy = %+v, %v; want revision 3 with 2 policies", snap, err)
	}
}

func testFleetRollsBack(t *testing.T, s store.Store) {
	ctx := t.Context()
	err := s.Update(ctx, func(w store.Writer) error {
		if err := w.CreateDefender(ctx, newDefender("d1")); err != nil {
			return err
		}
		if err := w.AddDefenderCert(ctx, inventory.Cert{Serial: "01", DefenderID: "d1", IssuedAt: at(time.Hour)}); err != nil {
			return err
		}
		if _, err := w.Defender(ctx, "d1"); err != nil {
			t.Errorf("Defender(d1) in the Update that created it: %v", err)
		}
		return fmt.Errorf("issue bundle: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update = %v, want the error fn returned", err)
	}
	if _, err := s.Defender(ctx, "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Defender(d1) after a rolled-back Update = %v, want ErrNotFound", err)
	}
	if certs, err := s.DefenderCerts(ctx, "d1"); err != nil || len(certs) != 0 {
		t.Errorf("DefenderCerts(d1) after a rolled-back Update = %v, %v; want none", certs, err)
	}
	// The ID is free again.
	createDefenders(t, s, "d1")
}
