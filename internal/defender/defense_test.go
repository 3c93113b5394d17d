package defender

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

// sink collects what runtime defense emits.
type sink struct {
	mu     sync.Mutex
	events []emitted
}

type emitted struct {
	kind string
	at   time.Time
	data []byte
}

func (s *sink) emit(kind string, at time.Time, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, emitted{kind, at, data})
}

func (s *sink) take(kind string) []emitted {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out, keep []emitted
	for _, e := range s.events {
		if e.kind == kind {
			out = append(out, e)
		} else {
			keep = append(keep, e)
		}
	}
	s.events = keep
	return out
}

func (s *sink) audits(t testing.TB) []event.Audit {
	t.Helper()
	var out []event.Audit
	for _, e := range s.take(event.KindRuntimeAudit) {
		var a event.Audit
		if err := json.Unmarshal(e.data, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func detections(as []event.Audit) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Audit.Detection)
	}
	return out
}

// enforcerDouble records what it is asked to enforce and says exec and
// file writes are denied by fanotify.
type enforcerDouble struct {
	mu      sync.Mutex
	applied [][]EnforceTarget
}

func (e *enforcerDouble) Mechanisms() []bulwarkv1.Mechanism {
	return []bulwarkv1.Mechanism{
		{Kind: rp.EnforceExec, Mechanism: "fanotify"}, {Kind: rp.EnforceWrite, Mechanism: "fanotify"},
		{Kind: rp.EnforceConnect, Mechanism: "cgroup-bpf"}, {Kind: rp.EnforceListen, Mechanism: mechanismNone, Reason: "test"},
	}
}

// Apply says every kind the double has a mechanism for is in force, and
// the host's rules are not: as the kernel enforcer does.
func (e *enforcerDouble) Apply(_ context.Context, ts []EnforceTarget) []EnforceStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applied = append(e.applied, ts)
	out := make([]EnforceStatus, len(ts))
	for i, t := range ts {
		out[i].ContainerID = t.ContainerID
		for _, k := range wantedKinds(t.Enforcement) {
			switch {
			case t.ContainerID == "":
				out[i].Notes = append(out[i].Notes, k+": the host is not enforced")
			case k != rp.EnforceListen:
				out[i].Kinds = append(out[i].Kinds, k)
			}
		}
	}
	return out
}

func (e *enforcerDouble) last() []EnforceTarget {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.applied) == 0 {
		return nil
	}
	return e.applied[len(e.applied)-1]
}

// stopperDouble records the containers it stops.
type stopperDouble struct {
	mu      sync.Mutex
	stopped []string
}

func (s *stopperDouble) Stop(_ context.Context, c event.Container) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = append(s.stopped, c.ID)
	return nil
}

func newTestDefense(t *testing.T, enf Enforcer, stop Stopper) (*defense, *sink) {
	t.Helper()
	s := &sink{}
	d, err := newDefense(defenseConfig{
		stateDir: t.TempDir(), procRoot: "/proc", host: "node-a", learningWindow: time.Minute,
		modelReport: time.Hour, tick: 10 * time.Millisecond, incidentWindow: time.Minute,
	}, slog.New(slog.DiscardHandler), enf, stop, s.emit)
	if err != nil {
		t.Fatal(err)
	}
	return d, s
}

func setRuntimePolicy(t testing.TB, d *defense, rev int64, container string, extra map[string]string) {
	t.Helper()
	p := bulwarkv1.Policy{Revision: rev, Policies: map[string]json.RawMessage{}}
	if container != "" {
		p.Policies["runtime/container"] = json.RawMessage(container)
	}
	for k, v := range extra {
		p.Policies[k] = json.RawMessage(v)
	}
	d.setPolicy(p)
}

var (
	t0  = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	ctr = &event.Container{ID: "c1c1c1c1c1c1", Name: "web", Image: "registry.local/web:1"}
)

func execRT(c *event.Container, pid uint32, exe string) event.Runtime {
	return event.Runtime{Process: event.Process{PID: pid, PPID: 1, UID: 0, Exe: exe, Argv: []string{exe}, StartTime: t0, CgroupID: 77}, Container: c, Host: "node-a"}
}

// pidless is a PID no process has, so that /proc facts read nothing.
const pidless = 1 << 30

// TestModelLearnsThenFlagsUnseenProcess: the acceptance line, at the unit
// level: processes seen while learning are quiet after, an unseen one is
// audited.
func TestModelLearnsThenFlagsUnseenProcess(t *testing.T) {
	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, "", nil) // the default policy
	d.observe(event.KindProcessExec, t0, ptr(execRT(ctr, pidless, "/usr/sbin/nginx")))
	d.observe(event.KindProcessExec, t0.Add(time.Second), ptr(execRT(ctr, pidless, "/bin/sh")))
	if as := s.audits(t); len(as) != 0 {
		t.Fatalf("audits while learning: %v", detections(as))
	}
	d.now = func() time.Time { return t0.Add(2 * time.Minute) }
	d.step(t.Context())
	models := s.take(event.KindRuntimeModel)
	if len(models) == 0 {
		t.Fatal("no runtime.model report when learning ended")
	}
	var m rp.Model
	if err := json.Unmarshal(models[len(models)-1].data, &m); err != nil {
		t.Fatal(err)
	}
	if m.State != rp.StateActive || !m.HasProcess(event.Process{Exe: "/bin/sh"}) || m.Image != ctr.Image || !slices.Equal(m.Hosts, []string{"node-a"}) {
		t.Errorf("reported model = %+v, want an active model of %s with /bin/sh, learned on node-a", m, ctr.Image)
	}

	d.observe(event.KindProcessExec, t0.Add(3*time.Minute), ptr(execRT(ctr, pidless, "/bin/sh")))
	d.observe(event.KindProcessExec, t0.Add(3*time.Minute), ptr(execRT(ctr, pidless, "/usr/bin/id")))
	as := s.audits(t)
	if len(as) != 1 {
		t.Fatalf("audits after learning = %v, want one unexpectedProcess", detections(as))
	}
	a := as[0]
	if a.Audit.Detection != rp.DetectUnexpectedProcess || a.Audit.Effect != "alert" || a.Audit.Rule != rp.RuleDefault ||
		a.Audit.ModelID != rp.ModelID(ctr.Image) || a.Audit.Prevented || a.Process.Exe != "/usr/bin/id" || a.Container.ID != ctr.ID || a.Audit.PolicyRevision != 1 {
		t.Errorf("audit = %+v", a)
	}
	// The first audit of the container sends its forensic record.
	fs := s.take(event.KindRuntimeForensics)
	if len(fs) != 1 {
		t.Fatalf("forensic records = %d, want 1", len(fs))
	}
	var f event.Forensics
	if err := json.Unmarshal(fs[0].data, &f); err != nil {
		t.Fatal(err)
	}
	var exes []string
	for _, e := range f.Events {
		exes = append(exes, e.Exe)
	}
	if f.Container.ID != ctr.ID || f.Reason != rp.DetectUnexpectedProcess || !slices.Equal(exes, []string{"/usr/sbin/nginx", "/bin/sh", "/bin/sh", "/usr/bin/id"}) ||
		f.Events[3].Audit != rp.DetectUnexpectedProcess {
		t.Errorf("forensics = %+v, events %v", f, exes)
	}
	// Models survive a restart of the Defender.
	d2, s2 := newTestDefense(t, nil, nil)
	d2.cfg.stateDir = d.cfg.stateDir
	if err := d2.loadModels(); err != nil {
		t.Fatal(err)
	}
	setRuntimePolicy(t, d2, 1, "", nil)
	d2.observe(event.KindProcessExec, t0.Add(time.Hour), ptr(execRT(ctr, pidless, "/usr/bin/whoami")))
	if got := detections(s2.audits(t)); !slices.Equal(got, []string{rp.DetectUnexpectedProcess}) {
		t.Errorf("after a restart: audits %v, want the stored model to flag whoami", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestOverridesRelearnAndEdit(t *testing.T) {
	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, "", nil)
	d.observe(event.KindProcessExec, t0, ptr(execRT(ctr, pidless, "/bin/sh")))
	d.now = func() time.Time { return t0.Add(2 * time.Minute) }
	d.step(t.Context())
	s.take(event.KindRuntimeModel)

	// The Console relearns the model: the Defender learns again.
	setRuntimePolicy(t, d, 2, "", map[string]string{rp.OverridesType: `{"models":[{"_id":"x","image":"registry.local/web:1","generation":3,"relearn":true}]}`})
	d.step(t.Context())
	var m rp.Model
	reports := s.take(event.KindRuntimeModel)
	if len(reports) != 1 {
		t.Fatalf("reports after relearn = %d, want 1 at once", len(reports))
	}
	_ = json.Unmarshal(reports[0].data, &m)
	if m.State != rp.StateRelearning || m.Generation != 3 || len(m.Processes) != 0 {
		t.Errorf("after relearn: %+v", m)
	}
	d.observe(event.KindProcessExec, t0.Add(150*time.Second), ptr(execRT(ctr, pidless, "/usr/bin/id")))
	if as := s.audits(t); len(as) != 0 {
		t.Errorf("audits while relearning: %v", detections(as))
	}
	// The same override again changes nothing.
	setRuntimePolicy(t, d, 3, "", map[string]string{rp.OverridesType: `{"models":[{"_id":"x","image":"registry.local/web:1","generation":3,"relearn":true}]}`})
	if d.models[ctr.Image].Processes[0].Path != "/usr/bin/id" {
		t.Error("an override of the same generation was applied again")
	}

	// The Console's edit replaces the model, also on a Defender that never
	// ran the image.
	edited := `{"models":[{"_id":"x","image":"registry.local/web:1","generation":4,"model":{"_id":"x","image":"registry.local/web:1","state":"manualActive",
		"generation":4,"processes":[{"path":"/bin/true"}],"network":{"listeningPorts":[],"outboundPorts":[],"outboundIPs":[]},"filesystem":{"paths":[]}}},
		{"_id":"y","image":"other:1","generation":1,"model":{"image":"other:1","state":"manualActive","processes":[{"path":"/x"}]}}]}`
	setRuntimePolicy(t, d, 4, "", map[string]string{rp.OverridesType: edited})
	d.observe(event.KindProcessExec, t0.Add(4*time.Minute), ptr(execRT(ctr, pidless, "/bin/true")))
	d.observe(event.KindProcessExec, t0.Add(4*time.Minute), ptr(execRT(ctr, pidless, "/usr/bin/id")))
	if got := detections(s.audits(t)); !slices.Equal(got, []string{rp.DetectUnexpectedProcess}) {
		t.Errorf("after the edit: audits %v, want only id flagged", got)
	}
	if o := d.models["other:1"]; o == nil || o.ID != rp.ModelID("other:1") || o.Generation != 1 {
		t.Errorf("the edited model of an image never run here = %+v", o)
	}
}

func TestBuiltInDetectionsAndLearningDisabled(t *testing.T) {
	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, `{"learningDisabled":true,"rules":[{"name":"all","processes":{"effect":"alert"},"filesystem":{"effect":"alert"},"network":{"effect":"alert"}}]}`, nil)
	steps := []struct {
		kind string
		rt   event.Runtime
	}{
		{event.KindProcessExec, execRT(ctr, pidless, "/usr/bin/xmrig")},
		{event.KindProcessExec, execRT(ctr, pidless, "/sbin/apk")},
		{event.KindFileCreate, event.Runtime{Process: event.Process{PID: pidless, Exe: "/bin/sh"}, Container: ctr, File: &event.File{Path: "/tmp/dropper"}}},
		// Drift: the exec of a file the container wrote.
		{event.KindProcessExec, execRT(ctr, pidless, "/tmp/dropper")},
		{event.KindFileRead, event.Runtime{Process: event.Process{PID: pidless, Exe: "/bin/cat"}, Container: ctr, File: &event.File{Path: "/etc/shadow"}}},
		{event.KindNetConnect, event.Runtime{Process: event.Process{PID: pidless, Exe: "/bin/bash"}, Container: ctr, Net: &event.Net{DstAddr: "203.0.113.5", DstPort: 4444}}},
	}
	for i, st := range steps {
		d.observe(st.kind, t0.Add(time.Duration(i)*time.Second), &st.rt)
	}
	want := []string{rp.DetectCryptoMiner, rp.DetectPackageManager, rp.DetectDrift, rp.DetectSecretFile, rp.DetectReverseShell}
	if got := detections(s.audits(t)); !slices.Equal(got, want) {
		t.Errorf("detections = %v, want %v", got, want)
	}
	if len(d.models) != 0 {
		t.Errorf("%d models learned with learning disabled", len(d.models))
	}
}

func TestReverseShellFactsFromProc(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	// A real shell whose standard input and output are a socket pair.
	sp, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer sp[0].Close()
	defer sp[1].Close()
	cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", "sleep 5")
	cmd.Stdin, cmd.Stdout = sp[1], sp[1]
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := uint32(cmd.Process.Pid) //nolint:gosec // a pid fits
	f := procFacts{root: "/proc"}
	if !f.stdioSockets(pid) {
		t.Errorf("stdioSockets(shell on a socket pair) = false")
	}
	if f.stdioSockets(uint32(os.Getpid())) { //nolint:gosec // a pid fits
		t.Errorf("stdioSockets(the test) = true; its stdio is not a pair of sockets")
	}
	if f.setuidRoot(pid) {
		t.Errorf("setuidRoot(a plain shell) = true")
	}
	if _, ok := f.exeChanged(pid); !ok {
		t.Errorf("exeChanged(a live shell) = not known")
	}

	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, "", nil)
	rt := execRT(ctr, pid, "/bin/sh")
	d.observe(event.KindProcessExec, t0, &rt)
	if got := detections(s.audits(t)); !slices.Contains(got, rp.DetectReverseShell) {
		t.Errorf("a shell on sockets gave audits %v, want reverseShell", got)
	}
}

// TestDriftByChangeTime: a binary changed after its container started is
// drift; one from the image (older) is not.
func TestDriftByChangeTime(t *testing.T) {
	raw, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("needs /bin/sleep")
	}
	start := time.Now().Add(-2 * driftSlack) // the container started a while ago
	fresh := filepath.Join(t.TempDir(), "fresh-sleep")
	if err := os.WriteFile(fresh, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, `{"rules":[{"name":"drift","processes":{"modifiedProcessEffect":"alert"}}]}`, nil)
	for _, tc := range []struct {
		bin  string
		want []string
	}{{"/bin/sleep", []string{}}, {fresh, []string{rp.DetectDrift}}} {
		cmd := exec.CommandContext(t.Context(), tc.bin, "5")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rt := execRT(ctr, uint32(cmd.Process.Pid), tc.bin) //nolint:gosec // a pid fits
		rt.Process.StartTime = start                       // the container's first process
		d.observe(event.KindProcessExec, time.Now(), &rt)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if got := detections(s.audits(t)); !slices.Equal(got, tc.want) {
			t.Errorf("exec of %s: audits %v, want %v", tc.bin, got, tc.want)
		}
	}
}

// TestDriftBySensorChangeTime: the change time the sensor read at the exec
// decides, also for a process gone before the Defender could look.
func TestDriftBySensorChangeTime(t *testing.T) {
	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, `{"rules":[{"name":"drift","processes":{"modifiedProcessEffect":"alert"}}]}`, nil)
	for _, tc := range []struct {
		changed time.Time
		want    []string
	}{
		{t0.Add(-time.Hour), []string{}},                // from the image
		{t0.Add(driftSlack / 2), []string{}},            // within the clocks' slack
		{t0.Add(time.Minute), []string{rp.DetectDrift}}, // written since
		{time.Time{}, []string{}},                       // unknown, and no process to stat
	} {
		rt := execRT(ctr, pidless, "/tmp/x")
		rt.Process.ExeChanged = tc.changed
		d.observe(event.KindProcessExec, t0.Add(2*time.Minute), &rt)
		if got := detections(s.audits(t)); !slices.Equal(got, tc.want) {
			t.Errorf("exec of a binary changed at %v (container started %v): audits %v, want %v", tc.changed, t0, got, tc.want)
		}
	}
}

func socketPair() ([2]*os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return [2]*os.File{}, err
	}
	return [2]*os.File{os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")}, nil
}

func TestEnforcementTargetsAndPrevented(t *testing.T) {
	enf := &enforcerDouble{}
	stop := &stopperDouble{}
	d, s := newTestDefense(t, enf, stop)
	setRuntimePolicy(t, d, 7, `{"rules":[{"name":"lock","collections":[{"name":"web","images":["registry.local/web:*"]}],
		"processes":{"deniedList":{"effect":"prevent","paths":["nc"]},"modifiedProcessEffect":"prevent"},
		"filesystem":{"deniedList":{"effect":"block","paths":["/etc/passwd"]}},
		"network":{"outboundPorts":{"denied":[{"start":25}],"effect":"prevent"}}}]}`, nil)
	other := &event.Container{ID: "d2d2d2d2d2d2", Name: "db", Image: "postgres:16"}
	d.observe(event.KindProcessExec, t0, ptr(execRT(ctr, pidless, "/bin/sh")))
	rtOther := execRT(other, pidless, "/bin/sh")
	rtOther.Process.CgroupID = 88
	d.observe(event.KindProcessExec, t0, &rtOther)
	d.observe(event.KindFileCreate, t0, &event.Runtime{Process: event.Process{PID: pidless, CgroupID: 77}, Container: ctr, File: &event.File{Path: "/tmp/new"}})
	d.now = func() time.Time { return t0.Add(time.Second) }
	d.step(t.Context())
	ts := enf.last()
	if len(ts) != 1 || ts[0].ContainerID != ctr.ID || ts[0].CgroupID != 77 {
		t.Fatalf("targets = %+v, want web's cgroup 77 only (db's rule prevents nothing)", ts)
	}
	e := ts[0].Enforcement
	if len(e.Exec) != 1 || e.Exec[0].Name != "nc" || e.Drift == nil || len(e.Write) != 1 || len(e.ConnectPorts) != 1 {
		t.Errorf("enforcement = %+v", e)
	}
	if diff := cmp.Diff([]string{"/tmp/new"}, ts[0].DriftPaths); diff != "" {
		t.Errorf("DriftPaths (-want +got):\n%s", diff)
	}
	// A write the sensor sees under an enforced prefix is the enforcer's
	// to report; an exec the sensor sees happened, so it was not prevented.
	d.observe(event.KindFileWrite, t0, &event.Runtime{Process: event.Process{PID: pidless, CgroupID: 77}, Container: ctr, File: &event.File{Path: "/etc/passwd"}})
	d.observe(event.KindProcessExec, t0, ptr(execRT(ctr, pidless, "/usr/bin/nc")))
	as := s.audits(t)
	if len(as) != 1 || as[0].Audit.Detection != rp.DetectDeniedProcess || as[0].Audit.Prevented {
		t.Fatalf("sensor-side audits = %+v, want the exec of nc, not prevented", as)
	}

	// The enforcer denies a write under a block rule: the audit says
	// prevented by fanotify, and the container is stopped.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.run(ctx) }()
	d.prevented(Prevented{Time: t0, Kind: rp.EnforceWrite, CgroupID: 77, PID: 9, Exe: "/bin/sh", Path: "/etc/passwd", Rule: "lock", Detection: rp.DetectDeniedFile, Mechanism: "fanotify"})
	d.prevented(Prevented{Time: t0, Kind: rp.EnforceConnect, CgroupID: 77, PID: 9, Addr: "198.51.100.1", Port: 25, Rule: "lock", Detection: rp.DetectDeniedOutbound, Mechanism: "cgroup-bpf"})
	deadline := time.Now().Add(5 * time.Second)
	var got []event.Audit
	for time.Now().Before(deadline) && len(got) < 2 {
		got = append(got, s.audits(t)...)
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if len(got) != 2 {
		t.Fatalf("prevented audits = %+v, want 2", got)
	}
	slices.SortFunc(got, func(a, b event.Audit) int { return strings.Compare(a.Audit.Detection, b.Audit.Detection) })
	write, conn := got[0], got[1]
	if !conn.Audit.Prevented || conn.Audit.Mechanism != "cgroup-bpf" || conn.Audit.Effect != "prevent" || conn.Audit.Blocked || conn.Net.DstPort != 25 {
		t.Errorf("connect audit = %+v", conn)
	}
	if !write.Audit.Prevented || write.Audit.Mechanism != "fanotify" || write.Audit.Effect != "block" || !write.Audit.Blocked ||
		write.Container == nil || write.Container.ID != ctr.ID || write.File.Path != "/etc/passwd" {
		t.Errorf("write audit = %+v", write)
	}
	if !slices.Equal(stop.stopped, []string{ctr.ID}) {
		t.Errorf("stopped = %v, want web", stop.stopped)
	}
}

func TestBlockWithoutStopper(t *testing.T) {
	d, s := newTestDefense(t, nil, nil)
	setRuntimePolicy(t, d, 1, `{"rules":[{"name":"b","processes":{"cryptoMinersEffect":"block"}}]}`, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.run(ctx) }()
	d.observe(event.KindProcessExec, t0, ptr(execRT(ctr, pidless, "/tmp/xmrig")))
	var got []event.Audit
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(got) == 0; time.Sleep(10 * time.Millisecond) {
		got = s.audits(t)
	}
	cancel()
	<-done
	if len(got) != 1 || got[0].Audit.Blocked || got[0].Audit.BlockError == "" || got[0].Audit.Effect != "block" {
		t.Fatalf("audits = %+v, want one block audit saying the container was not stopped", got)
	}
	// Nothing prevents here: the audit says so.
	if got[0].Audit.Prevented {
		t.Errorf("prevented without an enforcer")
	}
}

// BenchmarkObserve is runtime defense's cost per event on the sensor's
// reader: a container exec under the default policy and a learned model.
func BenchmarkObserve(b *testing.B) {
	d, err := newDefense(defenseConfig{stateDir: b.TempDir(), procRoot: "/nonexistent", host: "node-a", learningWindow: time.Nanosecond,
		modelReport: time.Hour, tick: time.Second, incidentWindow: time.Minute}, slog.New(slog.DiscardHandler), nil, nil, func(string, time.Time, []byte) {})
	if err != nil {
		b.Fatal(err)
	}
	rules := `{"rules":[`
	for i := range 200 {
		rules += fmt.Sprintf(`{"name":"r%d","collections":[{"name":"c%d","images":["registry.local/app%d:*"]}],"processes":{"effect":"alert"}},`, i, i, i)
	}
	rules += `{"name":"all","processes":{"effect":"alert"},"network":{"effect":"alert"},"filesystem":{"effect":"alert"}}]}`
	setRuntimePolicy(b, d, 1, rules, nil)
	rt := execRT(ctr, pidless, "/usr/sbin/nginx")
	d.observe(event.KindProcessExec, t0, &rt)
	at := t0.Add(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		rt := execRT(ctr, pidless, "/usr/sbin/nginx")
		rt.Process.ExeChanged = t0.Add(-time.Hour) // as the sensor reports it
		d.observe(event.KindProcessExec, at, &rt)
	}
}

// TestDefaultPolicyWithoutAnySet: a Defender that never got a policy
// judges with the default one.
func TestDefaultPolicyWithoutAnySet(t *testing.T) {
	d, s := newTestDefense(t, nil, nil)
	d.observe(event.KindProcessExec, t0, ptr(execRT(nil, pidless, "/tmp/xmrig")))
	if got := detections(s.audits(t)); !slices.Equal(got, []string{rp.DetectCryptoMiner}) {
		t.Errorf("audits = %v, want the default host rule's crypto miner alert", got)
	}
}

func TestEnforcerReports(t *testing.T) {
	inForce := EnforceStatus{Kinds: []string{rp.EnforceExec, rp.EnforceWrite, rp.EnforceConnect, rp.EnforceListen}}
	partly := EnforceStatus{Kinds: []string{rp.EnforceWrite}, Notes: []string{rp.EnforceWrite + ": some prefix is not enforced"}}
	eperm, einprogress := -int64(syscall.EPERM), -int64(syscall.EINPROGRESS)
	for _, tc := range []struct {
		name    string
		st      EnforceStatus
		kind    string
		enforce string
		result  int64
		want    bool
	}{
		{"a write under an enforced prefix: the attempt was refused", inForce, event.KindFileWrite, rp.EnforceWrite, 0, true},
		{"a create too", inForce, event.KindFileCreate, rp.EnforceWrite, 0, true},
		{"a write where not every prefix is enforced", partly, event.KindFileWrite, rp.EnforceWrite, 0, false},
		{"a write in a workload not enforced (the host, a failed target)", EnforceStatus{}, event.KindFileWrite, rp.EnforceWrite, 0, false},
		{"a connect refused with EPERM", inForce, event.KindNetConnect, rp.EnforceConnect, eperm, true},
		{"a connect that went through happened", inForce, event.KindNetConnect, rp.EnforceConnect, 0, false},
		{"a connect in progress happened", inForce, event.KindNetConnect, rp.EnforceConnect, einprogress, false},
		{"a listen that failed: nothing listens", inForce, event.KindNetListen, rp.EnforceListen, eperm, true},
		{"a listen that worked happened (an autobound port)", inForce, event.KindNetListen, rp.EnforceListen, 0, false},
		{"an exec the sensor saw happened", inForce, event.KindProcessExec, rp.EnforceExec, 0, false},
		{"a finding no mechanism prevents", inForce, event.KindFileUnlink, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTracked(ctr)
			w.enforce = tc.st
			rt := &event.Runtime{Result: tc.result}
			if got := enforcerReports(w, tc.kind, rt, rp.Finding{Enforce: tc.enforce}); got != tc.want {
				t.Errorf("enforcerReports(%s, result %d, %+v) = %v, want %v", tc.kind, tc.result, tc.st, got, tc.want)
			}
		})
	}
}

// scriptedEnforcer answers Apply with what status says for each target.
type scriptedEnforcer struct {
	enforcerDouble
	status func(EnforceTarget) EnforceStatus
}

func (e *scriptedEnforcer) Apply(ctx context.Context, ts []EnforceTarget) []EnforceStatus {
	e.enforcerDouble.Apply(ctx, ts)
	out := make([]EnforceStatus, len(ts))
	for i, t := range ts {
		out[i] = e.status(t)
		out[i].ContainerID = t.ContainerID
	}
	return out
}

// TestUnenforcedWritesAreAudited: the sensor's write is left to the
// enforcer only where the kernel denies it: the host's rules, a container
// whose enforcement failed and one not applied yet are audited, with why.
func TestUnenforcedWritesAreAudited(t *testing.T) {
	enforced := &event.Container{ID: "e1e1e1e1e1e1", Image: "registry.local/web:1"}
	failing := &event.Container{ID: "f2f2f2f2f2f2", Image: "registry.local/web:1"}
	late := &event.Container{ID: "a3a3a3a3a3a3", Image: "registry.local/web:1"}
	enf := &scriptedEnforcer{status: func(t EnforceTarget) EnforceStatus {
		switch t.ContainerID {
		case "":
			return EnforceStatus{Notes: []string{rp.EnforceWrite + ": the host is not enforced"}}
		case failing.ID:
			return EnforceStatus{Retry: true, Notes: []string{rp.EnforceWrite + ": not enforced: fanotify_init: too many open files"}}
		}
		return EnforceStatus{Kinds: wantedKinds(t.Enforcement)}
	}}
	d, s := newTestDefense(t, enf, nil)
	lock := `{"rules":[{"name":"lock","filesystem":{"deniedList":{"effect":"prevent","paths":["/etc/passwd"]}}}]}`
	setRuntimePolicy(t, d, 1, lock, map[string]string{"runtime/host": lock})
	write := func(c *event.Container) {
		d.observe(event.KindFileWrite, t0, &event.Runtime{Process: event.Process{PID: pidless}, Container: c, Host: "node-a", File: &event.File{Path: "/etc/passwd"}})
	}
	for _, c := range []*event.Container{nil, enforced, failing} {
		write(c) // tracked before the step: the step applies their targets
	}
	s.audits(t)
	d.now = func() time.Time { return t0.Add(time.Second) }
	d.step(t.Context())
	if ts := enf.last(); len(ts) != 3 {
		t.Fatalf("targets = %+v, want the host and both containers", ts)
	}
	for _, c := range []*event.Container{nil, enforced, failing, late} {
		write(c)
	}
	got := map[string]string{}
	for _, a := range s.audits(t) {
		id := ""
		if a.Container != nil {
			id = a.Container.ID
		}
		if a.Audit.Prevented {
			t.Errorf("audit %+v says prevented: only the enforcer's do", a.Audit)
		}
		got[id] = a.Audit.Message
	}
	want := map[string]string{
		"":         "the host is not enforced",
		failing.ID: "not enforced: fanotify_init: too many open files",
		late.ID:    "it happened before the enforcement was in place",
	}
	if len(got) != len(want) {
		t.Errorf("audits by workload = %v, want one each of the host, %s and %s, none of %s", got, failing.ID, late.ID, enforced.ID)
	}
	for id, w := range want {
		if !strings.Contains(got[id], "(not prevented: "+w+")") {
			t.Errorf("audit of %q = %q, want it to say not prevented: %s", id, got[id], w)
		}
	}
	// A new container is applied at once; the failed target is tried
	// again after retryFirst, then at doubling gaps.
	d.step(t.Context())
	d.step(t.Context())
	if n := len(enf.applied); n != 2 {
		t.Errorf("applied %d times, want 2: at first, and for the new container", n)
	}
	at := t0.Add(time.Second)
	for i, gap := range []time.Duration{2 * retryFirst, 4 * retryFirst} {
		d.now = func() time.Time { return at.Add(gap - time.Millisecond) }
		d.step(t.Context())
		if n := len(enf.applied); n != 2+i {
			t.Errorf("applied %d times before the retry gap %v, want %d", n, gap, 2+i)
		}
		at = at.Add(gap)
		d.now = func() time.Time { return at }
		d.step(t.Context())
		if n := len(enf.applied); n != 3+i {
			t.Errorf("applied %d times after the retry gap %v, want %d", n, gap, 3+i)
		}
	}
	// A policy change does not wait for the retry.
	setRuntimePolicy(t, d, 2, lock, nil)
	d.step(t.Context())
	if n := len(enf.applied); n != 5 {
		t.Errorf("applied %d times after a policy change, want 5: at once", n)
	}
}

// TestContainersRunning: containers the runtime lists are enforced before
// any event names them, and their enforcement goes when they are gone.
func TestContainersRunning(t *testing.T) {
	enf := &enforcerDouble{}
	d, _ := newTestDefense(t, enf, nil)
	setRuntimePolicy(t, d, 1, `{"rules":[{"name":"lock","filesystem":{"deniedList":{"effect":"prevent","paths":["/etc/passwd"]}}}]}`, nil)
	d.step(t.Context())
	quiet := event.Container{ID: "q1q1q1q1q1q1", Image: "registry.local/quiet:1"}
	d.containersRunning([]RunningContainer{{Container: quiet, CgroupID: 99}})
	select {
	case <-d.wake:
	default:
		t.Error("a new container did not wake the defense to apply at once")
	}
	d.step(t.Context())
	if ts := enf.last(); len(ts) != 1 || ts[0].ContainerID != quiet.ID || ts[0].CgroupID != 99 {
		t.Fatalf("targets = %+v, want the listed container with its cgroup", ts)
	}
	st := d.status()
	if len(st.Enforced) != 1 || st.Enforced[0].Container != quiet.ID || !slices.Equal(st.Enforced[0].Kinds, []string{rp.EnforceWrite}) {
		t.Errorf("status enforced = %+v, want %s with file-write", st.Enforced, quiet.ID)
	}
	// Listed again: still there, even quiet for longer than a dead workload.
	d.now = func() time.Time { return time.Now().Add(2 * deadWorkload) }
	d.containersRunning([]RunningContainer{{Container: quiet, CgroupID: 99}})
	d.step(t.Context())
	if ts := enf.last(); len(ts) != 1 {
		t.Fatalf("targets = %+v, want the quiet container still", ts)
	}
	d.containersRunning(nil)
	d.step(t.Context())
	d.step(t.Context())
	if ts := enf.last(); len(ts) != 0 {
		t.Errorf("targets = %+v after the container is gone, want none", ts)
	}
	if st := d.status(); st.Workloads != 0 || len(st.Enforced) != 0 {
		t.Errorf("status = %+v, want the gone container forgotten", st)
	}
}
