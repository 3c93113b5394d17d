package defender

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/compliance"
	"bulwark/internal/event"
	"bulwark/internal/runtime"
)

// ociSpec is a container's config.json: hostPID leaves out the pid
// namespace; every other setting is a well-confined container's.
func ociSpec(image string, hostPID bool, extraAnnotations map[string]string) string {
	ns := `{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"cgroup"},{"type":"user"}`
	if !hostPID {
		ns = `{"type":"pid"},` + ns
	}
	ann := map[string]string{"io.bulwark.image": image}
	for k, v := range extraAnnotations {
		ann[k] = v
	}
	annJSON, _ := json.Marshal(ann)
	return `{"ociVersion":"1.0.2","process":{"user":{"uid":1000,"gid":1000},"args":["sleep","30"],"cwd":"/",
		"capabilities":{"bounding":["CAP_NET_BIND_SERVICE"]},"noNewPrivileges":true},
		"root":{"path":"rootfs","readonly":true},"annotations":` + string(annJSON) + `,
		"linux":{"namespaces":[` + ns + `],"maskedPaths":["/proc/kcore"],"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"},
		"resources":{"memory":{"limit":1000000},"cpu":{"shares":512},"pids":{"limit":64}}}}`
}

// fakeHost is what an assessor under test sees: containers with bundles,
// a host root, a policy, and the events it sends.
type fakeHost struct {
	t      *testing.T
	dir    string
	mu     sync.Mutex
	infos  []runtime.Info
	pol    bulwarkv1.Policy
	events []sentEvent
	fail   error // returned by emit
}

type sentEvent struct {
	kind string
	data event.Compliance
	raw  string
}

func newFakeHost(t *testing.T) *fakeHost {
	f := &fakeHost{t: t, dir: t.TempDir()}
	// A host with Docker whose daemon.json leaves ICC on.
	writeTestFile(t, filepath.Join(f.dir, "root", "usr", "bin", "dockerd"), "")
	writeTestFile(t, filepath.Join(f.dir, "root", "etc", "docker", "daemon.json"), `{"icc": true}`)
	return f
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// add makes a container with the given spec.
func (f *fakeHost) add(id, rt, spec string) {
	bundle := filepath.Join(f.dir, "bundles", id)
	writeTestFile(f.t, filepath.Join(bundle, "config.json"), spec)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.infos = append(f.infos, runtime.Info{Container: event.Container{ID: id, Runtime: rt}, Bundle: bundle})
}

func (f *fakeHost) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.infos = slices.DeleteFunc(f.infos, func(i runtime.Info) bool { return i.Container.ID == id })
}

func (f *fakeHost) setPolicy(p bulwarkv1.Policy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pol = p
}

// take returns the events sent since the last take.
func (f *fakeHost) take() []sentEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	evs := f.events
	f.events = nil
	return evs
}

func (f *fakeHost) assessor() *assessor {
	a := &assessor{
		hostRoot: filepath.Join(f.dir, "root"),
		hostname: "node-1",
		interval: time.Hour,
		runtime:  runtime.Config{ProcRoot: filepath.Join(f.dir, "proc"), CgroupRoot: filepath.Join(f.dir, "cgroup")},
		logger:   slog.New(slog.NewTextHandler(testWriter{f.t}, nil)),
		list: func() ([]runtime.Info, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return slices.Clone(f.infos), nil
		},
		policy: func() bulwarkv1.Policy {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.pol
		},
		emit: func(kind string, _ time.Time, data ...json.RawMessage) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail != nil {
				return f.fail
			}
			for _, d := range data {
				var c event.Compliance
				if err := json.Unmarshal(d, &c); err != nil {
					f.t.Errorf("event %s: %v", d, err)
				}
				f.events = append(f.events, sentEvent{kind, c, string(d)})
			}
			return nil
		},
	}
	a.init()
	return a
}

// summary renders events as "<kind> <container or host> <trigger> r<revision> [check/prismaID/effect …]".
func summary(evs []sentEvent) []string {
	var out []string
	for _, e := range evs {
		who := e.data.Host
		if e.data.Container != nil {
			who = e.data.Container.ID
		}
		var fs []string
		for _, f := range e.data.Findings {
			fs = append(fs, f.Check+"/"+f.PrismaID+"/"+string(f.Effect))
		}
		out = append(out, e.kind+" "+who+" "+e.data.Trigger+" r"+itoa(e.data.PolicyRevision)+" ["+strings.Join(fs, " ")+"]")
	}
	slices.Sort(out)
	return out
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestAssessorPasses(t *testing.T) {
	f := newFakeHost(t)
	f.add("hostpid", runtime.RuntimeRunc, ociSpec("registry.local/debug:1.0", true, nil))
	f.add("confined", runtime.RuntimeRunc, ociSpec("registry.local/web:1.2", false, nil))
	f.add("own", runtime.RuntimeContainerd, ociSpec("registry.local/bulwark-defender:0.9", true, nil))
	f.add("pause", runtime.RuntimeContainerd, ociSpec("registry.k8s.io/pause:3.9", true, map[string]string{"io.kubernetes.cri.container-type": "sandbox"}))
	a := f.assessor()

	const (
		ctr  = event.KindComplianceContainer
		host = event.KindComplianceHost
	)
	steps := []struct {
		name   string
		change func()
		pass   string
		want   []string
	}{
		{
			name: "start: every container and the host; Bulwark's own is clean, sandboxes are skipped",
			pass: TriggerStart,
			want: []string{
				ctr + " confined start r0 []",
				ctr + " hostpid start r0 [host-pid/5515/alert]",
				ctr + " own start r0 []",
				host + " node-1 start r0 []",
			},
		},
		{name: "a rescan with nothing changed sends nothing", pass: TriggerRescan},
		{
			name:   "a new container: only it",
			change: func() { f.add("late", runtime.RuntimeDocker, ociSpec("busybox:1.36", true, nil)) },
			pass:   TriggerContainerStart,
			want:   []string{ctr + " late container.start r0 [host-pid/515/alert]"},
		},
		{
			name:   "a container that left and came back is new again",
			change: func() { f.remove("confined") },
			pass:   TriggerRescan,
		},
		{
			name:   "…and back",
			change: func() { f.add("confined", runtime.RuntimeRunc, ociSpec("registry.local/web:1.2", false, nil)) },
			pass:   TriggerRescan,
			want:   []string{ctr + " confined container.start r0 []"},
		},
		{
			name: "a new policy revision: everything again, under its rules",
			change: func() {
				f.setPolicy(bulwarkv1.Policy{Revision: 3, Policies: map[string]json.RawMessage{
					"compliance/container": json.RawMessage(`{"rules":[{"name":"ignore host pid","checks":{"host-pid":"ignore","readonly-rootfs":"block"}}]}`),
					"compliance/host":      json.RawMessage(`{"rules":[{"name":"icc","condition":{"vulnerabilities":[{"check":"docker-icc"}]}}]}`),
				}})
			},
			pass: TriggerPolicy,
			want: []string{
				ctr + " confined policy r3 []",
				ctr + " hostpid policy r3 []",
				ctr + " late policy r3 []",
				ctr + " own policy r3 []",
				host + " node-1 policy r3 [docker-icc//alert]",
			},
		},
		{
			name: "a host change found by a rescan",
			change: func() {
				writeTestFile(t, filepath.Join(f.dir, "root", "etc", "docker", "daemon.json"), `{"icc": false}`)
			},
			pass: TriggerRescan,
			want: []string{host + " node-1 rescan r3 []"},
		},
		{
			name: "a policy the engine refuses: the built-in rules",
			change: func() {
				f.setPolicy(bulwarkv1.Policy{Revision: 4, Policies: map[string]json.RawMessage{
					"compliance/container": json.RawMessage(`{"rules":[{"name":"x","effect":"explode"}]}`),
				}})
			},
			pass: TriggerPolicy,
			want: []string{
				ctr + " confined policy r4 []",
				ctr + " hostpid policy r4 [host-pid/5515/alert]",
				ctr + " late policy r4 [host-pid/515/alert]",
				ctr + " own policy r4 []",
				host + " node-1 policy r4 []",
			},
		},
		{
			name: "custom Rego checks travel in the snapshot and rules may name them",
			change: func() {
				f.setPolicy(bulwarkv1.Policy{Revision: 5, Policies: map[string]json.RawMessage{
					"custom-compliance": json.RawMessage(`{"rules":[{"_id":9000,"name":"no-debug","title":"No debug images","severity":"high","script":` +
						`"package debug\ndeny contains \"debug image\" if contains(input.runtime.image.value, \"/debug:\")\n"}]}`),
					"compliance/container": json.RawMessage(`{"rules":[{"name":"custom","condition":{"vulnerabilities":[{"id":9000,"block":true}]}}]}`),
				}})
			},
			pass: TriggerPolicy,
			want: []string{
				ctr + " confined policy r5 []",
				ctr + " hostpid policy r5 [no-debug/9000/block]",
				ctr + " late policy r5 []",
				ctr + " own policy r5 []",
				host + " node-1 policy r5 []",
			},
		},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		a.pass(t.Context(), s.pass)
		if got := summary(f.take()); !slices.Equal(got, s.want) {
			t.Errorf("%s: pass(%s) sent\n  %s\nwant\n  %s", s.name, s.pass, strings.Join(got, "\n  "), strings.Join(s.want, "\n  "))
		}
	}
}

// TestAssessorEventShape: the event names the container as the runtime
// does, the findings carry their paths and effects, a clean result is an
// empty list (not null).
func TestAssessorEventShape(t *testing.T) {
	f := newFakeHost(t)
	f.add("web", runtime.RuntimeRunc, ociSpec("registry.local/web:1.2", true, map[string]string{
		"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "prod", "io.kubernetes.container.name": "app",
	}))
	a := f.assessor()
	a.pass(t.Context(), TriggerStart)
	evs := f.take()
	if len(evs) != 2 {
		t.Fatalf("pass(start) sent %d events, want 2", len(evs))
	}
	for _, e := range evs {
		switch e.kind {
		case event.KindComplianceContainer:
			c := e.data.Container
			if c == nil || c.ID != "web" || c.Name != "app" || c.Image != "registry.local/web:1.2" || c.Runtime != "runc" || e.data.Host != "node-1" {
				t.Errorf("container event = %s; want container web named app, image registry.local/web:1.2, runtime runc, host node-1", e.raw)
			}
			if len(e.data.Findings) != 1 {
				t.Fatalf("container event findings = %+v, want host-pid only", e.data.Findings)
			}
			fd := e.data.Findings[0]
			if fd.Check != "host-pid" || fd.PrismaID != "5515" || fd.Effect != compliance.EffectAlert || !slices.Equal(fd.Paths, []string{"linux.namespaces"}) || fd.String() != "5515 - Do not share the host's process namespace" {
				t.Errorf("finding = %+v (%s), want 5515 host-pid at linux.namespaces, alert", fd, fd)
			}
		case event.KindComplianceHost:
			if !strings.Contains(e.raw, `"findings":[]`) || e.data.Container != nil {
				t.Errorf("host event = %s, want a clean result with findings []", e.raw)
			}
		}
	}
}

// TestAssessorRetriesAfterSpoolError: results the spool refused are sent
// at the next pass.
func TestAssessorRetriesAfterSpoolError(t *testing.T) {
	f := newFakeHost(t)
	f.add("a", runtime.RuntimeRunc, ociSpec("x:1", true, nil))
	a := f.assessor()
	f.fail = errors.New("disk full")
	a.pass(t.Context(), TriggerStart)
	if st := a.statusInfo(); !strings.Contains(st.LastError, "disk full") || st.Events != 0 {
		t.Errorf("status after a spool error = %+v, want the error and no events", st)
	}
	f.fail = nil
	a.pass(t.Context(), TriggerRescan)
	if got := summary(f.take()); len(got) != 2 {
		t.Errorf("pass after the spool recovered sent %v, want the container and the host", got)
	}
	if st := a.statusInfo(); st.LastError != "" || st.Events != 2 || st.Containers != 1 {
		t.Errorf("status = %+v, want no error, 2 events, 1 container", st)
	}
}

// TestAssessorRun: the loop evaluates at start, wakes for a container the
// sensor saw, and for a policy change.
func TestAssessorRun(t *testing.T) {
	f := newFakeHost(t)
	f.add("a", runtime.RuntimeRunc, ociSpec("x:1", false, nil))
	a := f.assessor()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	wait := func(what string, n int) []string {
		t.Helper()
		var got []string
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < n && time.Now().Before(deadline) {
			got = append(got, summary(f.take())...)
			time.Sleep(10 * time.Millisecond)
		}
		if len(got) != n {
			t.Fatalf("%s: got %v, want %d events", what, got, n)
		}
		return got
	}
	wait("start", 2)

	f.add("b", runtime.RuntimeRunc, ociSpec("y:1", true, nil))
	a.sawContainer("b")
	a.sawContainer("b") // once is enough
	if got := wait("container start", 1); got[0] != event.KindComplianceContainer+" b container.start r0 [host-pid/5515/alert]" {
		t.Errorf("after the sensor saw b: %v", got)
	}
	f.setPolicy(bulwarkv1.Policy{Revision: 1})
	a.policyChanged()
	for _, e := range wait("policy", 3) {
		if !strings.Contains(e, " policy r1 ") {
			t.Errorf("after a policy change: %s, want trigger policy at revision 1", e)
		}
	}
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
