package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"bulwark/internal/event"
	"bulwark/internal/store"
)

// Container IDs of the runtime events below; the first two share a
// 12-character prefix.
const (
	containerA = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111"
	containerB = "aaaaaaaaaaaa2222222222222222222222222222222222222222222222222222"
	containerC = "cccccccccccc3333333333333333333333333333333333333333333333333333"
)

// runtimeEvent is an event whose Data is the JSON of an event.Runtime;
// container "" is a host process.
func runtimeEvent(tb testing.TB, defender string, seq int, t time.Duration, kind, container, image, host string) event.Event {
	tb.Helper()
	r := event.Runtime{Process: event.Process{PID: uint32(100 + seq), PPID: 1, Exe: "/bin/sh"}, Host: host} //nolint:gosec // small
	if container != "" {
		r.Container = &event.Container{ID: container, Name: "n-" + container[:4], Image: image, Runtime: "containerd"}
	}
	data, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return event.Event{DefenderID: defender, Seq: uint64(seq), Time: at(t), Kind: kind, Data: data} //nolint:gosec // from 1 up
}

func testRuntimeEventFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1", "d2")
	d1 := []event.Event{
		runtimeEvent(t, "d1", 1, 1*time.Second, event.KindProcessExec, containerA, "nginx:1", "node-1"),
		runtimeEvent(t, "d1", 2, 2*time.Second, event.KindFileWrite, containerB, "redis:7", "node-1"),
		runtimeEvent(t, "d1", 3, 3*time.Second, event.KindNetConnect, "", "", "node-1"),
		{DefenderID: "d1", Seq: 4, Time: at(4 * time.Second), Kind: "synthetic", Data: []byte(`{"host":"node-1"}`)},
		{DefenderID: "d1", Seq: 5, Time: at(5 * time.Second), Kind: "synthetic", Data: []byte(`not json`)},
		runtimeEvent(t, "d1", 6, 6*time.Second, event.KindProcessExit, containerA, "nginx:1", "node-1"),
	}
	d2 := []event.Event{
		runtimeEvent(t, "d2", 1, 1*time.Second, event.KindProcessExec, containerC, "nginx:1", "node-2"),
		runtimeEvent(t, "d2", 2, 2*time.Second, event.KindSetuid, "", "", "node-2"),
		runtimeEvent(t, "d2", 3, 3*time.Second, event.KindProcessFork, containerC, "nginx:1", ""),
	}
	if _, err := s.AppendEvents(ctx, []event.Batch{{DefenderID: "d1", Events: d1}, {DefenderID: "d2", Events: d2}}); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	pick := func(es ...event.Event) []event.Event { return es }

	tests := []struct {
		name   string
		filter event.Filter
		want   []event.Event
	}{
		{"container ID", event.Filter{ContainerID: containerA}, pick(d1[0], d1[5])},
		{"container ID prefix", event.Filter{ContainerID: "aaaaaaaaaaaa"}, pick(d1[0], d1[1], d1[5])},
		{"longer prefix tells containers apart", event.Filter{ContainerID: "aaaaaaaaaaaa2"}, pick(d1[1])},
		{"unknown container", event.Filter{ContainerID: "ffff"}, nil},
		{"image", event.Filter{Image: "nginx:1"}, pick(d1[0], d1[5], d2[0], d2[2])},
		{"image is exact", event.Filter{Image: "nginx"}, nil},
		{"host", event.Filter{Host: "node-2"}, pick(d2[0], d2[1])},
		{"host of any kind", event.Filter{Host: "node-1"}, pick(d1[0], d1[1], d1[2], d1[3], d1[5])},
		{"host only", event.Filter{HostOnly: true, Kinds: []string{"process.", "network.", "file.", "privilege."}}, pick(d1[2], d2[1])},
		{"in container", event.Filter{InContainer: true}, pick(d1[0], d1[1], d1[5], d2[0], d2[2])},
		{"host only and in container", event.Filter{HostOnly: true, InContainer: true}, nil},
		{"kind prefix", event.Filter{Kinds: []string{"process."}}, pick(d1[0], d1[5], d2[0], d2[2])},
		{"kind prefixes and exact kinds", event.Filter{Kinds: []string{"file.", event.KindSetuid, "synthetic"}}, pick(d1[1], d1[3], d1[4], d2[1])},
		{"a prefix needs its dot", event.Filter{Kinds: []string{"process"}}, nil},
		{"everything together", event.Filter{InContainer: true, Kinds: []string{"process."}, Image: "nginx:1", Host: "node-1", Since: at(2 * time.Second)}, pick(d1[5])},
		{"by time", event.Filter{InContainer: true, OrderByTime: true}, pick(d1[0], d2[0], d1[1], d2[2], d1[5])},
		{"by time with a limit", event.Filter{OrderByTime: true, Limit: 3}, pick(d1[0], d2[0], d1[1])},
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
			if tc.filter.Limit > 0 {
				return
			}
			n, err := s.CountEvents(ctx, tc.filter)
			if err != nil {
				t.Fatalf("CountEvents(%+v): %v", tc.filter, err)
			}
			if n != int64(len(tc.want)) {
				t.Errorf("CountEvents(%+v) = %d, want %d", tc.filter, n, len(tc.want))
			}
		})
	}
}

// testEventCursor pages through events by time, several of which share a
// timestamp, and wants each exactly once, in (time, defender, seq) order.
func testEventCursor(t *testing.T, s store.Store) {
	ctx := t.Context()
	createDefenders(t, s, "d1", "d2", "d3")
	var (
		batches []event.Batch
		want    []event.Event
	)
	for _, d := range []string{"d3", "d1", "d2"} {
		b := event.Batch{DefenderID: d}
		for seq := 1; seq <= 7; seq++ {
			// Three events per second per Defender: 21 events over 3 instants.
			b.Events = append(b.Events, event.Event{DefenderID: d, Seq: uint64(seq), Time: at(time.Duration((seq-1)/3) * time.Second), Kind: "synthetic", Data: []byte(`{}`)}) //nolint:gosec // from 1 up
		}
		batches = append(batches, b)
	}
	if _, err := s.AppendEvents(ctx, batches); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	for sec := range 3 {
		for _, d := range []string{"d1", "d2", "d3"} {
			for _, b := range batches {
				for _, e := range b.Events {
					if e.DefenderID == d && e.Time.Equal(at(time.Duration(sec)*time.Second)) {
						want = append(want, e)
					}
				}
			}
		}
	}

	for _, limit := range []int{1, 2, 4, 5, 100} {
		f := event.Filter{OrderByTime: true, Limit: limit}
		var got []event.Event
		for page := 0; ; page++ {
			if page > len(want) {
				t.Fatalf("limit %d: more pages than events", limit)
			}
			es, err := s.Events(ctx, f)
			if err != nil {
				t.Fatalf("Events(%+v): %v", f, err)
			}
			if len(es) == 0 {
				break
			}
			got = append(got, es...)
			last := es[len(es)-1]
			f.After = &event.Cursor{Time: last.Time, DefenderID: last.DefenderID, Seq: last.Seq}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("paging by time with limit %d (-want +got):\n%s", limit, diff)
		}
	}

	// A cursor from before the first event starts at the beginning; one at
	// the last event ends.
	f := event.Filter{OrderByTime: true, After: &event.Cursor{Time: at(-time.Second)}}
	if got, err := s.Events(ctx, f); err != nil || len(got) != len(want) {
		t.Errorf("Events(after the start) = %d events, %v; want %d", len(got), err, len(want))
	}
	last := want[len(want)-1]
	f.After = &event.Cursor{Time: last.Time, DefenderID: last.DefenderID, Seq: last.Seq}
	if got, err := s.Events(ctx, f); err != nil || len(got) != 0 {
		t.Errorf("Events(after the last) = %d events, %v; want none", len(got), err)
	}
}
