package console_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/console/consoletest"
	"bulwark/internal/event"
)

const (
	auditContainerA = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111"
	auditContainerB = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222"
	auditContainerC = "aaaaaaaaaaaa3333333333333333333333333333333333333333333333333333"
)

type runtimeAudit struct {
	ID            string          `json:"_id"`
	Time          time.Time       `json:"time"`
	Hostname      string          `json:"hostname"`
	ContainerID   string          `json:"containerId"`
	ContainerName string          `json:"containerName"`
	ImageName     string          `json:"imageName"`
	PID           uint32          `json:"pid"`
	User          string          `json:"user"`
	Type          string          `json:"type"`
	Msg           string          `json:"msg"`
	Kind          string          `json:"kind"`
	Event         json.RawMessage `json:"event"`
}

// runtimeAudits GETs a page of runtime audits and returns it with the
// X-Bulwark-Next header.
func runtimeAudits(t testing.TB, c *consoletest.Console, pathAndQuery string) ([]runtimeAudit, string) {
	t.Helper()
	r := mustStatus(t, c, admin(call{method: "GET", path: pathAndQuery}), 200)
	var as []runtimeAudit
	if err := json.Unmarshal(r.body, &as); err != nil {
		t.Fatalf("GET %s: %s: %v", pathAndQuery, r.body, err)
	}
	return as, r.header.Get("X-Bulwark-Next")
}

func ids(as []runtimeAudit) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

// auditEvent is one crafted event the test Defender emits.
type auditEvent struct {
	kind string
	at   time.Duration
	rt   event.Runtime
}

// emitRuntimeEvents has a real Defender send events and waits until the
// Console stored them; the i-th has seq i+1.
func emitRuntimeEvents(t testing.TB, c *consoletest.Console, id string, t0 time.Time, es []auditEvent) {
	t.Helper()
	d, _ := startDefender(t, bundle(t, c, id))
	for _, e := range es {
		var data []byte
		var err error
		if e.kind == event.KindSensorLoss {
			data, err = json.Marshal(event.Loss{Kernel: 3})
		} else {
			data, err = json.Marshal(e.rt)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Emit(e.kind, t0.Add(e.at), data); err != nil {
			t.Fatalf("Emit: %v", err)
		}
	}
	waitFor(t, "the events to be stored", 20*time.Second, func() bool { return defenders(t, c)[id].StoredSeq == uint64(len(es)) })
}

func TestRuntimeAudits(t *testing.T) {
	c := consoletest.Start(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	proc := event.Process{PID: 123, PPID: 45, UID: 1000, Exe: "/bin/sh", Argv: []string{"/bin/sh", "-c", "id"}}
	inA := &event.Container{ID: auditContainerA, Name: "web", Image: "nginx:1", Runtime: "containerd"}
	inB := &event.Container{ID: auditContainerB, Name: "cache", Image: "redis:7", Runtime: "containerd"}
	inC := &event.Container{ID: auditContainerC, Name: "web2", Image: "nginx:1", Runtime: "containerd"}
	emitRuntimeEvents(t, c, "audited", t0, []auditEvent{
		{event.KindProcessExec, 0, event.Runtime{Process: proc, Container: inA, Host: "node-a"}},                                  // 1
		{event.KindFileWrite, 0, event.Runtime{Process: proc, Container: inB, Host: "node-a", File: &event.File{Path: "/etc/x"}}}, // 2, same time as 1
		{event.KindNetConnect, time.Second, event.Runtime{Process: proc, Container: inA, Host: "node-a", Net: &event.Net{Protocol: "tcp", // 3
			SrcAddr: "10.0.0.1", SrcPort: 1234, DstAddr: "127.0.0.1", DstPort: 8080}}},
		{event.KindProcessExec, time.Second, event.Runtime{Process: proc, Host: "node-a"}},                                         // 4: host
		{event.KindSetuid, 2 * time.Second, event.Runtime{Process: proc, Setuid: &event.Setuid{Call: "setuid"}}},                   // 5: host, no hostname
		{event.KindSensorLoss, 2 * time.Second, event.Runtime{}},                                                                   // 6: not a runtime audit
		{event.KindPtrace, 3 * time.Second, event.Runtime{Process: proc, Container: inC, Host: "node-b", Ptrace: &event.Ptrace{}}}, // 7
	})
	id := func(seqs ...int) []string {
		out := []string{}
		for _, s := range seqs {
			out = append(out, "audited:"+string(rune('0'+s)))
		}
		return out
	}
	const container, host = "/api/v1/audits/runtime/container", "/api/v1/audits/runtime/host"
	q := func(path string, kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return path + "?" + v.Encode()
	}

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			name, path string
			want       []string
		}{
			{"containers", container, id(1, 2, 3, 7)},
			{"hosts", host, id(4, 5)},
			{"type process", q(container, "type", "process"), id(1)},
			{"type processes on hosts", q(host, "type", "processes"), id(4)},
			{"type network", q(container, "type", "network"), id(3)},
			{"type filesystem", q(container, "type", "filesystem"), id(2)},
			{"type kernel", q(container, "type", "kernel"), id(7)},
			{"type kernel on hosts", q(host, "type", "kernel"), id(5)},
			{"exact kind", q(container, "type", event.KindFileWrite), id(2)},
			{"container ID", q(container, "container", auditContainerA), id(1, 3)},
			{"container prefix", q(container, "container", auditContainerA[:12]), id(1, 3, 7)},
			{"longer container prefix", q(container, "container", auditContainerC[:13]), id(7)},
			{"image", q(container, "image", "nginx:1"), id(1, 3, 7)},
			{"hostname", q(container, "hostname", "node-b"), id(7)},
			{"hostname on hosts", q(host, "hostname", "node-a"), id(4)},
			{"from and to", q(container, "from", t0.Add(time.Second).Format(time.RFC3339Nano), "to", t0.Add(3*time.Second).Format(time.RFC3339Nano)), id(3)},
			{"limit", q(container, "limit", "2"), id(1, 2)},
			{"no match", q(container, "image", "nope"), id()},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, _ := runtimeAudits(t, c, tc.path)
				if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
					t.Errorf("GET %s (-want +got):\n%s", tc.path, diff)
				}
			})
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, path := range []string{
			q(container, "type", event.KindSensorLoss),
			q(container, "type", "synthetic"),
			q(container, "container", "aaaa"),
			q(host, "container", auditContainerA),
			q(host, "image", "nginx:1"),
			q(container, "limit", "1001"),
			q(container, "from", "yesterday"),
			q(container, "after", "not-a-cursor"),
		} {
			mustStatus(t, c, admin(call{method: "GET", path: path}), 400)
		}
	})

	t.Run("fields", func(t *testing.T) {
		as, _ := runtimeAudits(t, c, container)
		a := as[0]
		want := runtimeAudit{
			ID: "audited:1", Time: t0, Hostname: "node-a", ContainerID: auditContainerA, ContainerName: "web", ImageName: "nginx:1",
			PID: 123, User: "1000", Type: "processes", Msg: "exec /bin/sh -c id by pid 123 (parent 45)", Kind: event.KindProcessExec,
		}
		var rt event.Runtime
		if err := json.Unmarshal(a.Event, &rt); err != nil || rt.Container == nil || rt.Container.ID != auditContainerA || rt.Process.Exe != "/bin/sh" {
			t.Errorf("event = %s (%v), want the Runtime of the exec", a.Event, err)
		}
		a.Event = nil
		if diff := cmp.Diff(want, a); diff != "" {
			t.Errorf("first container audit (-want +got):\n%s", diff)
		}
		msgs := map[string]string{}
		for _, a := range as {
			msgs[a.ID] = a.Type + ": " + a.Msg
		}
		wantMsgs := map[string]string{
			"audited:1": "processes: exec /bin/sh -c id by pid 123 (parent 45)",
			"audited:2": "filesystem: write /etc/x",
			"audited:3": "network: connect tcp 10.0.0.1:1234 -> 127.0.0.1:8080",
			"audited:7": "kernel: ptrace request 0 on pid 0 by pid 123 (parent 45)",
		}
		if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
			t.Errorf("messages (-want +got):\n%s", diff)
		}
		// An event that does not name its host shows its Defender's.
		hs, _ := runtimeAudits(t, c, host)
		if h := defenders(t, c)["audited"].Hostname; hs[1].Hostname != h || h == "" {
			t.Errorf("hostname of a host event without one = %q, want the Defender's %q", hs[1].Hostname, h)
		}
	})

	t.Run("cursor", func(t *testing.T) {
		for _, path := range []string{container, host} {
			var got []string
			after := ""
			for range 10 {
				p := q(path, "limit", "1")
				if after != "" {
					p = q(path, "limit", "1", "after", after)
				}
				page, next := runtimeAudits(t, c, p)
				if len(page) == 0 {
					if next != after {
						t.Errorf("GET %s: empty page has %s %q, want the cursor given, %q", p, "X-Bulwark-Next", next, after)
					}
					break
				}
				if next == "" || next == after {
					t.Fatalf("GET %s: X-Bulwark-Next = %q after a page of %d", p, next, len(page))
				}
				got = append(got, ids(page)...)
				after = next
			}
			all, _ := runtimeAudits(t, c, path)
			if !slices.Equal(got, ids(all)) {
				t.Errorf("paging %s one at a time = %v, want %v", path, got, ids(all))
			}
		}
	})
}
