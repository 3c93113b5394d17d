package defender

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"bulwark/internal/enforcer"
	"bulwark/internal/event"
	"bulwark/internal/runtime/runctest"
	rp "bulwark/internal/runtimepolicy"
)

// testRoot is a container root file system in a temporary directory:
// busybox with applet links and a hard link, a copy of a tool, a miner.
func testRoot(t *testing.T) *containerRoot {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"bin/busybox": "multi", "usr/bin/tool": "tool", "usr/local/bin/xmrig-6.1": "miner", "usr/local/bin/other": "x",
		"opt/tools/a": "a", "opt/tools/b": "b",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"sh", "nc"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/usr/bin/tool", filepath.Join(dir, "bin", "tool-link")); err != nil { // absolute: resolved inside the root
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "bin", "busybox"), filepath.Join(dir, "bin", "wget")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newContainerRoot(f)
	t.Cleanup(r.close)
	return r
}

func testLabel(d rp.Deny) string { return d.Detection + ":" + d.Rule }

func deny(rule, detection string) rp.Deny { return rp.Deny{Rule: rule, Detection: detection} }

func TestMapTarget(t *testing.T) {
	root := testRoot(t)
	procs := deny("r", rp.DetectDeniedProcess)
	files := deny("r", rp.DetectDeniedFile)
	out := deny("r", rp.DetectDeniedOutbound)
	ip := deny("r", rp.DetectDeniedIP)
	listen := deny("r", rp.DetectDeniedListen)
	execs := func(paths ...string) []enforcer.ExecRule {
		var rs []enforcer.ExecRule
		for _, p := range paths {
			rs = append(rs, enforcer.ExecRule{Rule: testLabel(procs), Path: p})
		}
		return rs
	}
	base := enforcer.Target{ContainerID: "c1", CgroupPath: "/c1", PID: 42}
	with := func(f func(*enforcer.Target)) enforcer.Target {
		t := base
		f(&t)
		return t
	}
	for _, tc := range []struct {
		name      string
		e         rp.Enforcement
		drift     []string
		root      *containerRoot
		want      enforcer.Target
		wantKinds []string
		wantNotes []string
	}{
		{
			name: "paths: a file, a link to it, a busybox applet link and a hard link",
			e: rp.Enforcement{Exec: []rp.ExecDeny{{Path: "/usr/bin/tool", Deny: procs}, {Path: "/bin/tool-link", Deny: procs},
				{Path: "/bin/nc", Deny: procs}, {Path: "/bin/wget", Deny: procs}, {Path: "/usr/bin/tool", Deny: procs}}},
			root:      root,
			want:      with(func(t *enforcer.Target) { t.DenyExec = execs("/usr/bin/tool", "/bin/tool-link") }),
			wantKinds: []string{rp.EnforceExec},
			wantNotes: []string{
				"exec: /bin/nc is busybox, a multi-call binary: the kernel denies files, not applets, and denying it would deny all of them; it is audited",
				"exec: /bin/wget is busybox, a multi-call binary: the kernel denies files, not applets, and denying it would deny all of them; it is audited",
			},
		},
		{
			name:      "busybox itself may be denied",
			e:         rp.Enforcement{Exec: []rp.ExecDeny{{Path: "/bin/busybox", Deny: procs}}},
			root:      root,
			want:      with(func(t *enforcer.Target) { t.DenyExec = execs("/bin/busybox") }),
			wantKinds: []string{rp.EnforceExec},
		},
		{
			name: "a name is denied in every binary directory but where it is an applet",
			e:    rp.Enforcement{Exec: []rp.ExecDeny{{Name: "nc", Deny: procs}}},
			root: root,
			want: with(func(t *enforcer.Target) {
				t.DenyExec = execs("/sbin/nc", "/usr/bin/nc", "/usr/sbin/nc", "/usr/local/bin/nc", "/usr/local/sbin/nc")
			}),
			wantKinds: []string{rp.EnforceExec},
			wantNotes: []string{
				"exec: /bin/nc is busybox, a multi-call binary: the kernel denies files, not applets, and denying it would deny all of them; it is audited",
				`exec: programs named "nc" are denied in /bin, /sbin, /usr/bin, /usr/sbin, /usr/local/bin, /usr/local/sbin; elsewhere they are audited`,
			},
		},
		{
			name:      "a glob name matches the files of the binary directories",
			e:         rp.Enforcement{Exec: []rp.ExecDeny{{Name: "xmrig-*", Deny: procs}}},
			root:      root,
			want:      with(func(t *enforcer.Target) { t.DenyExec = execs("/usr/local/bin/xmrig-6.1") }),
			wantKinds: []string{rp.EnforceExec},
			wantNotes: []string{`exec: programs named "xmrig-*" are denied in /bin, /sbin, /usr/bin, /usr/sbin, /usr/local/bin, /usr/local/sbin when they were there as the policy was applied; others are audited`},
		},
		{
			name:      "a glob path matches the files of its directory; a glob directory is audited",
			e:         rp.Enforcement{Exec: []rp.ExecDeny{{Path: "/opt/tools/*", Deny: procs}, {Path: "/opt/*/a", Deny: procs}}},
			root:      root,
			want:      with(func(t *enforcer.Target) { t.DenyExec = execs("/opt/tools/a", "/opt/tools/b") }),
			wantKinds: []string{rp.EnforceExec},
			wantNotes: []string{
				`exec: "/opt/tools/*" is a glob: the files it matched when the policy was applied are denied, later ones are audited`,
				`exec: "/opt/*/a": the kernel denies files, and only a glob in the last path element is matched against the container's files; it is audited`,
			},
		},
		{
			name:      "no root: paths are not resolved, globs are audited",
			e:         rp.Enforcement{Exec: []rp.ExecDeny{{Path: "/bin/nc", Deny: procs}, {Path: "/opt/tools/*", Deny: procs}}},
			want:      with(func(t *enforcer.Target) { t.DenyExec = execs("/bin/nc") }),
			wantKinds: []string{rp.EnforceExec},
			wantNotes: []string{`exec: "/opt/tools/*": the kernel denies files, and only a glob in the last path element is matched against the container's files; it is audited`},
		},
		{
			name:  "drift: the files written since the start",
			e:     rp.Enforcement{Drift: &rp.Deny{Rule: "r", Detection: rp.DetectDrift}},
			drift: []string{"/tmp/x", "relative", "/tmp/x"},
			root:  root,
			want: with(func(t *enforcer.Target) {
				t.DenyExec = []enforcer.ExecRule{{Rule: rp.DetectDrift + ":r", Path: "/tmp/x"}}
			}),
			wantKinds: []string{rp.EnforceExec},
			wantNotes: []string{`exec: r: path "relative" is not absolute`},
		},
		{
			name: "writes: a file, everything",
			e:    rp.Enforcement{Write: []rp.PathDeny{{Prefix: "/etc/passwd", Deny: files}, {Prefix: "", Deny: files}}},
			want: with(func(t *enforcer.Target) {
				t.DenyWrite = []enforcer.WriteRule{{Rule: testLabel(files), Prefix: "/etc/passwd"}, {Rule: testLabel(files), Prefix: "/"}}
			}),
			wantKinds: []string{rp.EnforceWrite},
		},
		{
			name: "connect: a port range, a network; a range too wide is audited",
			e: rp.Enforcement{
				ConnectPorts: []rp.PortDeny{{Ports: rp.PortRange{Start: 25, End: 27}, Deny: out}, {Ports: rp.PortRange{Start: 1, End: 65535}, Deny: out}, {Ports: rp.PortRange{Start: 0}, Deny: out}},
				ConnectCIDRs: []rp.CIDRDeny{{Prefix: netip.MustParsePrefix("10.1.2.3/8"), Deny: ip}},
			},
			want: with(func(t *enforcer.Target) {
				t.DenyConnect = []enforcer.ConnectRule{{Rule: testLabel(out), Port: 25}, {Rule: testLabel(out), Port: 26}, {Rule: testLabel(out), Port: 27},
					{Rule: testLabel(ip), Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
			}),
			wantNotes: []string{
				"connect: ports 1-65535: more than 4096 ports in one container; connects there are audited",
				"connect: port range 0-0 is not valid",
			},
		},
		{
			name: "listen: an allow list; denied ports are audited",
			e: rp.Enforcement{ListenAllowed: []rp.PortRange{{Start: 80}, {Start: 8080, End: 8081}}, ListenRule: listen,
				ListenDenied: []rp.PortDeny{{Ports: rp.PortRange{Start: 22}, Deny: listen}}},
			want: with(func(t *enforcer.Target) {
				t.AllowListen = &enforcer.ListenRule{Rule: testLabel(listen), Ports: []uint16{80, 8080, 8081}}
			}),
			wantKinds: []string{rp.EnforceListen},
			wantNotes: []string{"listen: denied listening ports are audited: the kernel enforcer denies binds outside an allowed list only"},
		},
		{
			name:      "listen: an empty allow list denies every port",
			e:         rp.Enforcement{ListenAllowed: []rp.PortRange{}, ListenRule: listen},
			want:      with(func(t *enforcer.Target) { t.AllowListen = &enforcer.ListenRule{Rule: testLabel(listen)} }),
			wantKinds: []string{rp.EnforceListen},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, kinds, notes := mapTarget(EnforceTarget{ContainerID: "c1", Enforcement: tc.e, DriftPaths: tc.drift}, "/c1", 42, tc.root, testLabel)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("mapTarget target (-want +got):\n%s", diff)
			}
			wantKinds := tc.wantKinds
			if wantKinds == nil && len(got.DenyConnect) > 0 {
				wantKinds = []string{rp.EnforceConnect}
			}
			if diff := cmp.Diff(wantKinds, kinds); diff != "" {
				t.Errorf("mapTarget kinds (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantNotes, notes); diff != "" {
				t.Errorf("mapTarget notes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	k := &kernelEnforcer{labels: map[string]rp.Deny{}}
	long := rp.Deny{Rule: strings.Repeat("very long rule name ", 20), Detection: rp.DetectDeniedFile}
	for _, d := range []rp.Deny{deny("no tools: ever", rp.DetectDeniedProcess), long} {
		l := k.label(d)
		if len(l) > 256 {
			t.Errorf("label(%+v) is %d bytes, want at most the enforcer's 256", d, len(l))
		}
		if got := k.labelDeny(l); got != d {
			t.Errorf("labelDeny(label(%+v)) = %+v", d, got)
		}
	}
	// A label from before a restart of the table is read from its text.
	if got, want := k.labelDeny(rp.DetectDeniedIP+":old: rule"), deny("old: rule", rp.DetectDeniedIP); got != want {
		t.Errorf("labelDeny of an unknown label = %+v, want %+v", got, want)
	}
}

func TestPreventedFromTheEnforcer(t *testing.T) {
	k := &kernelEnforcer{labels: map[string]rp.Deny{}, procRoot: "/proc"}
	l := k.label(deny("no smtp", rp.DetectDeniedOutbound))
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	got := k.prevented(enforcer.Prevented{Time: at, Kind: enforcer.KindConnect, Mechanism: enforcer.MechanismCgroupBPF, Rule: l,
		ContainerID: "c1", CgroupID: 7, PID: uint32(os.Getpid()), Comm: "x", Addr: netip.MustParseAddrPort("[::ffff:198.51.100.1]:25")}) //nolint:gosec // a pid
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	want := Prevented{Time: at, Kind: rp.EnforceConnect, ContainerID: "c1", CgroupID: 7, PID: uint32(os.Getpid()), Exe: exe, //nolint:gosec // a pid
		Addr: "198.51.100.1", Port: 25, Rule: "no smtp", Detection: rp.DetectDeniedOutbound, Mechanism: "cgroup-bpf"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prevented (-want +got):\n%s", diff)
	}
	// A process gone: its comm.
	got = k.prevented(enforcer.Prevented{Kind: enforcer.KindBind, Rule: l, PID: 1 << 30, Comm: "nc"})
	if got.Exe != "nc" || got.Kind != rp.EnforceListen {
		t.Errorf("prevented of a gone process = %+v, want exe nc, kind listen", got)
	}
}

// TestKernelEnforcerInRuncContainer runs the Defender's enforcer against a
// real runc container in a runc root of the test's own: the container is
// listed with its cgroup, a denied copy of busybox fails with EPERM and the
// denial comes back with its rule and detection, a busybox applet is left
// to audits, the stopper stops the container and the next Apply finds it
// gone.
func TestKernelEnforcerInRuncContainer(t *testing.T) {
	runctest.Require(t)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF: " + err.Error())
	}
	root := t.TempDir()
	c := startRunc(t, root, "bwk-", false)
	id := c.ID
	c.Exec(t, "/bin/busybox", "sh", "-c", "busybox cat /bin/busybox > /dev/echo && busybox chmod 755 /dev/echo")

	cfg := Default()
	cfg.RuncRoots = []string{root}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	k, err := newKernelEnforcer(cfg, logger)
	if err != nil {
		t.Fatalf("newKernelEnforcer: %v", err)
	}
	defer func() {
		if err := k.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	for _, m := range k.Mechanisms() {
		if m.Mechanism == mechanismNone {
			t.Fatalf("Mechanisms() = %+v: nothing enforces %s here", k.Mechanisms(), m.Kind)
		}
	}
	cs, ok := k.list()
	if !ok || len(cs) != 1 || cs[0].Container.ID != id || cs[0].CgroupID == 0 {
		t.Fatalf("list() = %+v, %v; want the container with its cgroup", cs, ok)
	}
	rule := deny("deny echo", rp.DetectDeniedProcess)
	tg := EnforceTarget{ContainerID: id, CgroupID: cs[0].CgroupID, Enforcement: rp.Enforcement{
		Rule: "deny echo", Exec: []rp.ExecDeny{{Path: "/dev/echo", Deny: rule}, {Path: "/bin/sleep", Deny: rule}},
	}}
	host := EnforceTarget{Enforcement: rp.Enforcement{Write: []rp.PathDeny{{Prefix: "/etc/passwd", Deny: deny("h", rp.DetectDeniedFile)}}}}
	sts := k.Apply(t.Context(), []EnforceTarget{tg, host})
	if len(sts) != 2 || !slices.Equal(sts[0].Kinds, []string{rp.EnforceExec}) || sts[0].Gone || sts[0].Retry || sts[0].enforcesAll(rp.EnforceExec) ||
		!strings.Contains(sts[0].noteFor(rp.EnforceExec), "/bin/sleep is busybox") || sts[1].noteFor(rp.EnforceWrite) == "" || len(sts[1].Kinds) != 0 {
		t.Fatalf("Apply = %+v; want exec enforced in the container with a note on /bin/sleep, the host's write noted, not enforced", sts)
	}

	got := make(chan Prevented, 8)
	go k.forward(t.Context(), func(p Prevented) { got <- p })
	out, _ := c.TryExec(t, "/bin/sh", "-c", `/dev/echo DENIED-RAN; echo "status=$?"; sleep 0`)
	if strings.Contains(out, "DENIED-RAN") || !strings.Contains(out, "status=126") || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("the denied exec: %q; want EPERM and status 126", out)
	}
	select {
	case p := <-got:
		if p.ContainerID != id || p.Rule != "deny echo" || p.Detection != rp.DetectDeniedProcess || p.Kind != rp.EnforceExec ||
			p.Path != "/dev/echo" || p.PID == 0 || p.Mechanism == "" {
			t.Errorf("prevented = %+v; want the exec of /dev/echo in %s by rule deny echo", p, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no prevented report after 10s")
	}

	stop := runtimeStopper{rcfg: k.rcfg, logger: logger}
	if err := stop.Stop(t.Context(), event.Container{ID: id}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := c.State(t); st != "" {
		t.Errorf("runc state %s = %q after Stop: the container was not stopped and deleted", id, st)
	}
	if err := stop.Stop(t.Context(), event.Container{ID: id}); err == nil {
		t.Errorf("Stop of a stopped container = nil, want an error")
	}
	k.list()
	if sts := k.Apply(t.Context(), []EnforceTarget{tg}); len(sts) != 1 || !sts[0].Gone {
		t.Errorf("Apply after the container stopped = %+v, want it gone", sts)
	}
}

func TestStamps(t *testing.T) {
	dir := t.TempDir()
	roots := []string{filepath.Join(dir, "runc"), filepath.Join(dir, "containerd", "*")}
	if err := os.MkdirAll(filepath.Join(dir, "containerd", "k8s.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	s0 := stateStamp(roots)
	state := filepath.Join(dir, "containerd", "k8s.io", "c1", "state.json")
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	s1 := stateStamp(roots)
	if err := os.WriteFile(state, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := stateStamp(roots)
	if err := os.Chtimes(state, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s3 := stateStamp(roots)
	if s0 == s1 || s1 == s2 || s2 == s3 {
		t.Errorf("stateStamp did not change with a new container directory, its state.json and a rewrite: %q %q %q %q", s0, s1, s2, s3)
	}
	if again := stateStamp(roots); again != s3 {
		t.Errorf("stateStamp changed with nothing changed: %q, then %q", s3, again)
	}

	cg := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(cg, "cgroup.stat"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("nr_descendants 3\nnr_subsys_cpu 2\nnr_dying_descendants 0\n")
	a, ok := cgroupStamp(cg)
	write("nr_descendants 3\nnr_subsys_cpu 9\nnr_dying_descendants 0\n")
	b, _ := cgroupStamp(cg)
	write("nr_descendants 3\nnr_dying_descendants 1\n")
	c, _ := cgroupStamp(cg)
	if !ok || a != b || b == c {
		t.Errorf("cgroupStamp = %q (%v), %q, %q; want a change of dying descendants only to count", a, ok, b, c)
	}
	if _, ok := cgroupStamp(t.TempDir()); ok {
		t.Error("cgroupStamp of a directory without cgroup.stat = ok")
	}
}

func TestProcFacts(t *testing.T) {
	start, ok := startTicks("/proc", os.Getpid())
	first, ok1 := startTicks("/proc", 1)
	if !ok || !ok1 || start < first {
		t.Errorf("startTicks(self) = %d, %v; startTicks(1) = %d, %v; want both, pid 1 first", start, ok, first, ok1)
	}
	if _, ok := startTicks("/proc", 1<<30); ok {
		t.Error("startTicks of no process = ok")
	}
	if p, err := cgroupOf("/proc", os.Getpid()); err != nil || !strings.HasPrefix(p, "/") {
		t.Errorf("cgroupOf(self) = %q, %v; want a cgroup2 path", p, err)
	}
}

// TestEnforceConfig: the Enforcer in the Config is used and reported
// without a sensor; --enforce=off prevents and stops nothing and says so.
func TestEnforceConfig(t *testing.T) {
	if err := (func() Config { c := Default(); c.Enforce = "sometimes"; return c })().Validate(); err == nil || !strings.Contains(err.Error(), `enforce "sometimes"`) {
		t.Errorf("Validate(enforce sometimes) = %v, want an error naming it", err)
	}
	start := func(t *testing.T, mode string, enf Enforcer) *Defender {
		t.Helper()
		cfg := Default()
		cfg.Shim, cfg.Sensor, cfg.Compliance, cfg.Enforce, cfg.Enforcer = ShimOff, false, false, mode, enf
		cfg.BundleDir, cfg.StateDir, cfg.SpoolMaxBytes = testBundle(t, "enforce-"+mode), t.TempDir(), 16<<20
		d, err := New(cfg, "test", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	t.Run("auto", func(t *testing.T) {
		d := start(t, EnforceAuto, &enforcerDouble{})
		si := d.hello().Sensor
		if si == nil || len(si.Enforcement) != 4 || si.Enforcement[0].Mechanism != "fanotify" || len(si.Probes) != 0 {
			t.Errorf("hello sensor = %+v, want the double's 4 mechanisms and no probes", si)
		}
		if d.defense.stopper == nil {
			t.Error("no stopper with enforcement on")
		}
	})
	t.Run("off", func(t *testing.T) {
		d := start(t, EnforceOff, &enforcerDouble{})
		if si := d.hello().Sensor; si != nil {
			t.Errorf("hello sensor = %+v, want none: no sensor, no enforcer", si)
		}
		if d.defense.enforcer != nil || d.defense.stopper != nil || d.kernel != nil {
			t.Error("enforce off still has an enforcer or a stopper")
		}
		for _, m := range d.Status().Runtime.Enforcement {
			if m.Mechanism != mechanismNone || !strings.Contains(m.Reason, "--enforce=off") {
				t.Errorf("status enforcement %+v, want none because of --enforce=off", m)
			}
		}
	})
}
