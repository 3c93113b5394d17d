package runtimepolicy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestModelLearnsThenActivates(t *testing.T) {
	m := rp.NewModel(web.Image, t0, time.Minute, 0)
	if m.ID != rp.ModelID(web.Image) || m.ID == rp.ModelID("other") || len(m.ID) != 24 {
		t.Errorf("ID = %q, want a 24-hex ID of the image, distinct per image", m.ID)
	}
	if !m.Learning() || m.Active() {
		t.Fatalf("new model state %q: want learning", m.State)
	}
	steps := []struct {
		f       rp.Facts
		changed bool
	}{
		{execIn(web, "/usr/sbin/nginx"), true},
		{execIn(web, "/usr/sbin/nginx"), false},
		{rp.Facts{Kind: event.KindProcessExec, Runtime: event.Runtime{Process: event.Process{Comm: "worker"}, Container: web}}, true},
		{listenIn(web, 80), true},
		{connectIn(web, "/usr/sbin/nginx", "10.0.0.5", 5432), true},
		{connectIn(web, "/usr/sbin/nginx", "10.0.0.6", 5432), true}, // a new address
		{connectIn(web, "/usr/sbin/nginx", "10.0.0.6", 5432), false},
		{fileIn(web, event.KindFileCreate, "/var/cache/nginx/a"), true},
		{fileIn(web, event.KindFileWrite, "/var/cache/nginx/b"), false},
		{rp.Facts{Kind: event.KindFileRename, Runtime: event.Runtime{Container: web, File: &event.File{Path: "/tmp/x", NewPath: "/srv/x"}}}, true},
		{fileIn(web, event.KindFileRead, "/etc/shadow"), false}, // reads are not learned
		{rp.Facts{Kind: event.KindSetuid, Runtime: event.Runtime{Container: web, Setuid: &event.Setuid{Call: "setuid"}}}, false},
	}
	for i, s := range steps {
		if got := m.Learn(s.f.Kind, s.f.Runtime, t0.Add(time.Duration(i)*time.Second)); got != s.changed {
			t.Errorf("step %d: Learn(%s) = %v, want %v", i, s.f.Kind, got, s.changed)
		}
	}
	m.Normalize()
	want := struct {
		P []rp.ModelProcess
		N rp.ModelNetwork
		F rp.ModelFilesystem
	}{
		[]rp.ModelProcess{{Path: "/usr/sbin/nginx"}, {Path: "worker"}},
		rp.ModelNetwork{ListeningPorts: []uint16{80}, OutboundPorts: []uint16{5432}, OutboundIPs: []string{"10.0.0.5", "10.0.0.6"}},
		rp.ModelFilesystem{Paths: []string{"/srv", "/tmp", "/var/cache/nginx"}},
	}
	if diff := cmp.Diff(want, struct {
		P []rp.ModelProcess
		N rp.ModelNetwork
		F rp.ModelFilesystem
	}{m.Processes, m.Network, m.Filesystem}); diff != "" {
		t.Errorf("learned (-want +got):\n%s", diff)
	}
	if m.Tick(t0.Add(59 * time.Second)) {
		t.Error("Tick before the window ended changed the state")
	}
	if !m.Tick(t0.Add(time.Minute)) || !m.Active() || m.State != rp.StateActive {
		t.Errorf("Tick at the window's end: state %q, want active", m.State)
	}
	if m.Learn(event.KindProcessExec, execIn(web, "/bin/ls").Runtime, t0.Add(2*time.Minute)) {
		t.Error("an active model learned")
	}
	m.Relearn(t0.Add(time.Hour), time.Minute, 3)
	if m.State != rp.StateRelearning || len(m.Processes) != 0 || m.Generation != 3 || !m.Created.Equal(t0) || !m.LearningEnds.Equal(t0.Add(time.Hour+time.Minute)) {
		t.Errorf("after Relearn: %+v", m)
	}
}

func TestModelBounds(t *testing.T) {
	m := rp.NewModel("noisy", t0, time.Hour, 0)
	for i := range rp.MaxModelProcesses + 10 {
		m.Learn(event.KindProcessExec, event.Runtime{Process: event.Process{Exe: fmt.Sprintf("/tmp/p%d", i)}}, t0)
	}
	for i := range rp.MaxModelPorts + 10 {
		m.Learn(event.KindNetListen, event.Runtime{Net: &event.Net{SrcPort: uint16(1000 + i)}}, t0)
	}
	if len(m.Processes) != rp.MaxModelProcesses || len(m.Network.ListeningPorts) != rp.MaxModelPorts || !m.Truncated {
		t.Errorf("model holds %d processes, %d ports, truncated %v; want %d, %d, true",
			len(m.Processes), len(m.Network.ListeningPorts), m.Truncated, rp.MaxModelProcesses, rp.MaxModelPorts)
	}
}

func TestModelMerge(t *testing.T) {
	a := rp.NewModel(web.Image, t0, time.Hour, 1)
	a.Learn(event.KindProcessExec, execIn(web, "/usr/sbin/nginx").Runtime, t0)
	a.Hosts = []string{"node-a"}
	b := rp.NewModel(web.Image, t0.Add(-time.Minute), time.Hour, 1)
	b.Learn(event.KindProcessExec, execIn(web, "/bin/sh").Runtime, t0)
	b.Learn(event.KindNetListen, listenIn(web, 80).Runtime, t0)
	b.Hosts = []string{"node-b"}
	b.Tick(t0.Add(2 * time.Hour))

	m := a
	if !m.Merge(b) {
		t.Fatal("Merge of a report with new items = false")
	}
	m.Normalize()
	if got := []string{m.Processes[0].Path, m.Processes[1].Path}; got[0] != "/bin/sh" || got[1] != "/usr/sbin/nginx" {
		t.Errorf("merged processes = %v", got)
	}
	if m.State != rp.StateActive || !m.LearningStarted.Equal(t0.Add(-time.Minute)) || strings.Join(m.Hosts, ",") != "node-a,node-b" {
		t.Errorf("merged = state %q, started %v, hosts %v", m.State, m.LearningStarted, m.Hosts)
	}
	again := m
	if again.Merge(b) {
		t.Error("merging the same report twice changed the model")
	}
	if diff := cmp.Diff(m, again); diff != "" {
		t.Errorf("second merge changed (-first +second):\n%s", diff)
	}
	stale := rp.NewModel(web.Image, t0, time.Hour, 0)
	stale.Learn(event.KindProcessExec, execIn(web, "/bin/evil").Runtime, t0)
	if m.Merge(stale) || m.HasProcess(proc("/bin/evil")) {
		t.Error("a report of an older generation was merged")
	}
	newer := rp.NewModel(web.Image, t0, time.Hour, 5)
	if !m.Merge(newer) || m.Generation != 5 || len(m.Processes) != 0 || strings.Join(m.Hosts, ",") != "node-a,node-b" {
		t.Errorf("a report of a newer generation did not replace the model: %+v", m)
	}
}

func TestParseModelEdit(t *testing.T) {
	m := *learned()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	e, err := rp.ParseModelEdit(raw)
	if err != nil {
		t.Fatalf("ParseModelEdit(a model as read from the API) = %v", err)
	}
	gen := m.Generation
	m.Apply(e, t0)
	if m.State != rp.StateManualActive || m.Generation != gen+1 || !m.Active() || len(m.Processes) != 2 {
		t.Errorf("after Apply: state %q generation %d processes %v", m.State, m.Generation, m.Processes)
	}
	e, err = rp.ParseModelEdit([]byte(`{"processes":[{"path":"/bin/true"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.Network.ListeningPorts == nil || e.Filesystem.Paths == nil {
		t.Errorf("absent lists decode as nil: %+v; want empty", e)
	}

	bad := []struct{ doc, want string }{
		{`[]`, "cannot unmarshal"},
		{`null`, "want a JSON object"},
		{`{"bogus":1}`, `unknown field "bogus"`},
		{`{"processes":[{"path":"/x","md5":"y"}]}`, `unknown field "md5"`},
		{`{"processes":[{"path":""}]}`, "processes[0].path: empty"},
		{`{"network":{"listeningPorts":[0]}}`, "network: port 0"},
		{`{"network":{"outboundPorts":[70000]}}`, "network"},
		{`{"network":{"outboundIPs":["example.com"]}}`, `network.outboundIPs[0]: "example.com" is not an IP address`},
		{`{"filesystem":{"paths":["tmp"]}}`, `filesystem.paths[0]: "tmp" is not an absolute path`},
	}
	for _, tc := range bad {
		_, err := rp.ParseModelEdit([]byte(tc.doc))
		if !errors.Is(err, rp.ErrInvalidModel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseModelEdit(%s) = %v, want ErrInvalidModel containing %q", tc.doc, err, tc.want)
		}
	}
}

func FuzzParseModelEdit(f *testing.F) {
	raw, _ := json.Marshal(learned())
	f.Add(raw)
	f.Add([]byte(`{"processes":[{"path":"/bin/true"}],"network":{"listeningPorts":[80],"outboundIPs":["::1"]},"filesystem":{"paths":["/tmp"]}}`))
	f.Add([]byte(`{"state":"active","processes":null}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		e, err := rp.ParseModelEdit(doc)
		if err != nil {
			if !errors.Is(err, rp.ErrInvalidModel) {
				t.Fatalf("error %v does not wrap ErrInvalidModel", err)
			}
			return
		}
		m := rp.NewModel("img", t0, time.Hour, 0)
		m.Apply(e, t0)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.ParseModelEdit(out); err != nil {
			t.Fatalf("an applied edit does not parse back: %v", err)
		}
	})
}

// FuzzModelMerge: whatever a Defender reports, merging it keeps a model
// within its bounds and merging it again changes nothing.
func FuzzModelMerge(f *testing.F) {
	raw, _ := json.Marshal(learned())
	f.Add(raw, raw)
	f.Add([]byte(`{"image":"x","generation":1,"processes":[{"path":"/a"},{"path":"/a"}],"network":{"listeningPorts":[1,1,2]}}`),
		[]byte(`{"image":"x","generation":1,"state":"active","filesystem":{"paths":["/tmp"]},"hosts":["h"]}`))
	f.Add([]byte(`{"image":"x","generation":-5}`), []byte(`{"image":"x","generation":9,"state":"bogus"}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var m, r rp.Model
		if json.Unmarshal(a, &m) != nil || json.Unmarshal(b, &r) != nil {
			return
		}
		m.Bound()
		r.Bound()
		m.Merge(r)
		if len(m.Processes) > rp.MaxModelProcesses || len(m.Network.ListeningPorts) > rp.MaxModelPorts || len(m.Filesystem.Paths) > rp.MaxModelPaths {
			t.Fatalf("merged model beyond its bounds: %d processes, %d ports, %d paths", len(m.Processes), len(m.Network.ListeningPorts), len(m.Filesystem.Paths))
		}
		before, _ := json.Marshal(m)
		if m.Merge(r) {
			after, _ := json.Marshal(m)
			if !bytes.Equal(before, after) {
				t.Fatalf("merging the same report twice changed the model:\n%s\n%s", before, after)
			}
		}
	})
}
