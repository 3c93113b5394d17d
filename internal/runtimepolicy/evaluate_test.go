package runtimepolicy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

var web = &event.Container{ID: "c0ffee", Name: "web", Image: "registry.local/web:1", Namespace: "prod"}

func proc(exe string, argv ...string) event.Process {
	return event.Process{PID: 42, PPID: 1, UID: 1000, Exe: exe, Argv: append([]string{exe}, argv...)}
}

func execIn(c *event.Container, exe string, argv ...string) rp.Facts {
	return rp.Facts{Kind: event.KindProcessExec, Runtime: event.Runtime{Process: proc(exe, argv...), Container: c, Host: "node-a"}}
}

func fileIn(c *event.Container, kind, path string) rp.Facts {
	return rp.Facts{Kind: kind, Runtime: event.Runtime{Process: proc("/bin/sh"), Container: c, Host: "node-a", File: &event.File{Path: path}}}
}

func connectIn(c *event.Container, exe, addr string, port uint16) rp.Facts {
	return rp.Facts{Kind: event.KindNetConnect, Runtime: event.Runtime{Process: proc(exe), Container: c, Host: "node-a",
		Net: &event.Net{Protocol: "tcp", Family: "inet", DstAddr: addr, DstPort: port}}}
}

func listenIn(c *event.Container, port uint16) rp.Facts {
	return rp.Facts{Kind: event.KindNetListen, Runtime: event.Runtime{Process: proc("/usr/sbin/nginx"), Container: c, Host: "node-a",
		Net: &event.Net{Protocol: "tcp", Family: "inet", SrcAddr: "0.0.0.0", SrcPort: port}}}
}

// learned is an active model of web's image: nginx and sh run, port 80
// listens, 5432 is dialled, /var/cache/nginx is written.
func learned() *rp.Model {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := rp.NewModel(web.Image, t0, time.Hour, 0)
	for _, f := range []rp.Facts{
		execIn(web, "/usr/sbin/nginx"), execIn(web, "/bin/sh"), listenIn(web, 80),
		connectIn(web, "/usr/sbin/nginx", "10.0.0.5", 5432), fileIn(web, event.KindFileCreate, "/var/cache/nginx/a"),
	} {
		m.Learn(f.Kind, f.Runtime, t0)
	}
	m.Tick(t0.Add(time.Hour))
	return &m
}

type found struct {
	Detection string
	Effect    rp.Effect
	Enforce   string
}

func TestEvaluate(t *testing.T) {
	def := rp.DefaultPolicy(rp.Container).Rules[1]
	hostDef := rp.DefaultPolicy(rp.Host).Rules[1]
	denying := mustRule(t, `{"name":"deny","processes":{"deniedList":{"effect":"prevent","paths":["nc","/tmp/*"]},"allowedList":["apk","/opt/tool"],
		"packageManagersEffect":"alert","modifiedProcessEffect":"block","defaultEffect":"alert","cryptoMinersEffect":"prevent"},
		"filesystem":{"deniedList":{"effect":"prevent","paths":["/etc/passwd","/data/*.key"]},"allowedList":["/usr/local/bin/plugins"],"newFilesEffect":"alert"},
		"network":{"deniedIPs":["192.0.2.0/24"],"deniedIPsEffect":"prevent","outboundPorts":{"denied":[{"start":25},{"start":6660,"end":6669}],"effect":"block"},
		"allowedIPs":["10.1.0.0/16"],"listeningPorts":{"allowed":[{"start":8080}],"effect":"prevent"},"defaultEffect":"alert"}}`)
	tests := []struct {
		name  string
		rule  rp.Rule
		model *rp.Model
		facts rp.Facts
		want  []found
	}{
		{"learned process is quiet", def, learned(), execIn(web, "/usr/sbin/nginx"), nil},
		{"unseen process deviates", def, learned(), execIn(web, "/bin/ls"), []found{{rp.DetectUnexpectedProcess, rp.EffectAlert, ""}}},
		{"no deviation while learning", def, ptr(rp.NewModel(web.Image, time.Now(), time.Hour, 0)), execIn(web, "/bin/ls"), nil},
		{"no model, no deviation", def, nil, execIn(web, "/bin/ls"), nil},
		{"existing processes are not judged", def, learned(), func() rp.Facts {
			f := execIn(web, "/bin/ls")
			f.Runtime.Existing = true
			return f
		}(), nil},
		{"drift", def, learned(), func() rp.Facts { f := execIn(web, "/bin/sh"); f.Drift = true; return f }(),
			[]found{{rp.DetectDrift, rp.EffectAlert, ""}}},
		{"drift on a host is no drift", hostDef, nil, func() rp.Facts { f := execIn(nil, "/tmp/x"); f.Drift = true; return f }(), nil},
		{"miner by name", def, nil, execIn(web, "/tmp/xmrig"), []found{{rp.DetectCryptoMiner, rp.EffectAlert, ""}}},
		{"miner by argument", def, nil, execIn(web, "/app/worker", "-o", "stratum+tcp://pool:3333"), []found{{rp.DetectCryptoMiner, rp.EffectAlert, ""}}},
		{"miner on a host", hostDef, nil, execIn(nil, "/usr/bin/minerd"), []found{{rp.DetectCryptoMiner, rp.EffectAlert, ""}}},
		{"miner pool port", def, nil, connectIn(web, "/app/worker", "203.0.113.9", 14444), []found{{rp.DetectCryptoMiner, rp.EffectAlert, ""}}},
		{"reverse shell at exec", def, nil, func() rp.Facts { f := execIn(web, "/bin/bash", "-i"); f.StdioSockets = true; return f }(),
			[]found{{rp.DetectReverseShell, rp.EffectAlert, ""}}},
		{"sockets on a non-shell", def, nil, func() rp.Facts { f := execIn(web, "/usr/bin/socat"); f.StdioSockets = true; return f }(), nil},
		{"shell connects out", def, nil, connectIn(web, "/bin/sh", "203.0.113.9", 4444), []found{{rp.DetectReverseShell, rp.EffectAlert, ""}}},
		{"shell connects to loopback", def, nil, connectIn(web, "/bin/sh", "127.0.0.1", 4444), nil},
		{"reverse shell on a host", hostDef, nil, connectIn(nil, "/bin/bash", "203.0.113.9", 4444), []found{{rp.DetectReverseShell, rp.EffectAlert, ""}}},
		{"package manager", def, nil, execIn(web, "/sbin/apk", "add", "curl"), []found{{rp.DetectPackageManager, rp.EffectAlert, ""}}},
		{"package manager on a host is fine", hostDef, nil, execIn(nil, "/usr/bin/apt-get", "install", "x"), nil},
		{"ssh", def, nil, execIn(web, "/usr/bin/ssh", "root@10.0.0.1"), []found{{rp.DetectLateralMovement, rp.EffectAlert, ""}}},
		{"kubectl", def, nil, execIn(web, "/usr/local/bin/kubectl", "get", "secrets"), []found{{rp.DetectKubectl, rp.EffectAlert, ""}}},
		{"setuid binary", def, nil, func() rp.Facts { f := execIn(web, "/bin/su"); f.SetuidRoot = true; return f }(),
			[]found{{rp.DetectSuidBinary, rp.EffectAlert, ""}}},
		{"setuid to root", def, nil, rp.Facts{Kind: event.KindSetuid, Runtime: event.Runtime{Process: proc("/tmp/exploit"), Container: web,
			Setuid: &event.Setuid{Call: "setresuid", UID: 0}}}, []found{{rp.DetectPrivEscalation, rp.EffectAlert, ""}}},
		{"failed setuid", def, nil, rp.Facts{Kind: event.KindSetuid, Runtime: event.Runtime{Process: proc("/tmp/exploit"), Container: web,
			Setuid: &event.Setuid{Call: "setuid", UID: 0}, Result: -1}}, nil},
		{"root drops to a user", def, nil, rp.Facts{Kind: event.KindSetuid, Runtime: event.Runtime{Process: event.Process{PID: 1, UID: 0, Exe: "/usr/sbin/nginx"},
			Container: web, Setuid: &event.Setuid{Call: "setuid", UID: 101}}}, nil},
		{"write to a binary directory", def, learned(), fileIn(web, event.KindFileCreate, "/usr/bin/evil"),
			[]found{{rp.DetectAlteredBinary, rp.EffectAlert, ""}, {rp.DetectUnexpectedWrite, rp.EffectAlert, ""}}},
		{"write to passwd", def, nil, fileIn(web, event.KindFileWrite, "/etc/passwd"), []found{{rp.DetectAdminAccount, rp.EffectAlert, ""}}},
		{"authorized keys", def, nil, fileIn(web, event.KindFileCreate, "/home/app/.ssh/authorized_keys"), []found{{rp.DetectSSHAccess, rp.EffectAlert, ""}}},
		{"backdoor on a host", hostDef, nil, fileIn(nil, event.KindFileRename, "/etc/shadow"), []found{{rp.DetectAdminAccount, rp.EffectAlert, ""}}},
		{"learned directory", def, learned(), fileIn(web, event.KindFileCreate, "/var/cache/nginx/b/c"), nil},
		{"read shadow", def, nil, fileIn(web, event.KindFileRead, "/etc/shadow"), []found{{rp.DetectSecretFile, rp.EffectAlert, ""}}},
		{"read ssh host key", def, nil, fileIn(web, event.KindFileRead, "/etc/ssh/ssh_host_ed25519_key"), []found{{rp.DetectSecretFile, rp.EffectAlert, ""}}},
		{"read ssh config", def, nil, fileIn(web, event.KindFileRead, "/etc/ssh/ssh_config"), nil},
		{"learned outbound port", def, learned(), connectIn(web, "/usr/sbin/nginx", "10.9.9.9", 5432), nil},
		{"unseen outbound port", def, learned(), connectIn(web, "/usr/sbin/nginx", "10.0.0.5", 6379), []found{{rp.DetectUnexpectedOut, rp.EffectAlert, ""}}},
		{"learned listen", def, learned(), listenIn(web, 80), nil},
		{"unseen listen", def, learned(), listenIn(web, 9999), []found{{rp.DetectUnexpectedListen, rp.EffectAlert, ""}}},

		// The denying rule.
		{"denied by name", denying, nil, execIn(web, "/usr/bin/nc", "-l"), []found{{rp.DetectDeniedProcess, rp.EffectPrevent, rp.EnforceExec}}},
		{"denied by glob", denying, nil, execIn(web, "/tmp/payload"), []found{{rp.DetectDeniedProcess, rp.EffectPrevent, rp.EnforceExec}}},
		{"denied on the host too (the rule decides)", denying, nil, execIn(nil, "/bin/nc"), []found{{rp.DetectDeniedProcess, rp.EffectPrevent, rp.EnforceExec}}},
		{"allowed list silences the package manager", denying, nil, execIn(web, "/sbin/apk", "add"), nil},
		{"allowed list silences model and drift", denying, learned(), func() rp.Facts { f := execIn(web, "/opt/tool"); f.Drift = true; return f }(), nil},
		{"denied list wins over drift allowance", denying, learned(), func() rp.Facts { f := execIn(web, "/tmp/payload"); f.Drift = true; return f }(),
			[]found{{rp.DetectDeniedProcess, rp.EffectPrevent, rp.EnforceExec}, {rp.DetectDrift, rp.EffectBlock, ""}, {rp.DetectUnexpectedProcess, rp.EffectAlert, ""}}},
		{"prevented miner by name", denying, nil, execIn(web, "/opt/x/xmrig"), []found{{rp.DetectCryptoMiner, rp.EffectPrevent, rp.EnforceExec}}},
		{"miner by argument is not prevented", denying, nil, execIn(web, "/app/w", "stratum+ssl://p"), []found{{rp.DetectCryptoMiner, rp.EffectPrevent, ""}}},
		{"denied write", denying, nil, fileIn(web, event.KindFileWrite, "/etc/passwd"), []found{{rp.DetectDeniedFile, rp.EffectPrevent, rp.EnforceWrite}}},
		{"denied unlink is seen after", denying, nil, fileIn(web, event.KindFileUnlink, "/etc/passwd"), []found{{rp.DetectDeniedFile, rp.EffectPrevent, ""}}},
		{"denied glob write is seen after", denying, nil, fileIn(web, event.KindFileWrite, "/data/tls.key"), []found{{rp.DetectDeniedFile, rp.EffectPrevent, ""}}},
		{"rename into a denied path", denying, nil, rp.Facts{Kind: event.KindFileRename, Runtime: event.Runtime{Process: proc("/bin/mv"), Container: web,
			File: &event.File{Path: "/tmp/p", NewPath: "/etc/passwd"}}}, []found{{rp.DetectDeniedFile, rp.EffectPrevent, ""}}},
		{"allowed binary directory", denying, nil, fileIn(web, event.KindFileCreate, "/usr/local/bin/plugins/x"), nil},
		{"denied ip", denying, nil, connectIn(web, "/app/w", "192.0.2.99", 443), []found{{rp.DetectDeniedIP, rp.EffectPrevent, rp.EnforceConnect}}},
		{"denied ip as ipv4-mapped ipv6", denying, nil, connectIn(web, "/app/w", "::ffff:192.0.2.99", 443), []found{{rp.DetectDeniedIP, rp.EffectPrevent, rp.EnforceConnect}}},
		{"denied port range", denying, nil, connectIn(web, "/app/w", "10.1.2.3", 6667), []found{{rp.DetectDeniedOutbound, rp.EffectBlock, rp.EnforceConnect}}},
		{"allowed ip is no deviation", denying, learned(), connectIn(web, "/usr/sbin/nginx", "10.1.2.3", 9000), nil},
		{"listen outside the allowed list", denying, learned(), listenIn(web, 9000), []found{{rp.DetectDeniedListen, rp.EffectPrevent, rp.EnforceListen}}},
		{"listen on an allowed port", denying, learned(), listenIn(web, 8080), nil},
		{"listen on a learned port beside the allowed list", denying, learned(), listenIn(web, 80), nil},

		{"disabled sections", mustRule(t, `{"name":"off","processes":{"disabled":true,"effect":"block"},"filesystem":{"disabled":true,"effect":"block"},"network":{"disabled":true,"effect":"block"}}`),
			learned(), execIn(web, "/usr/bin/xmrig"), nil},
		{"disable effect", mustRule(t, `{"name":"quiet","processes":{"effect":"disable"}}`), learned(), execIn(web, "/usr/bin/xmrig"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := rp.Evaluate(tc.rule, tc.model, tc.facts)
			var got []found
			for _, f := range fs {
				got = append(got, found{f.Detection, f.Effect, f.Enforce})
				if f.Rule != tc.rule.Name || f.Message == "" || f.Category == "" {
					t.Errorf("finding %+v: want the rule %q, a message and a category", f, tc.rule.Name)
				}
				if (f.Detection == rp.DetectUnexpectedProcess) != (f.ModelID != "") && f.Category == rp.CategoryProcesses {
					t.Errorf("finding %+v: a model ID belongs to model deviations only", f)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Evaluate(%s) (-want +got):\n%s", tc.name, diff)
			}
		})
	}
}

func mustRule(t testing.TB, doc string) rp.Rule {
	t.Helper()
	p, err := rp.ParsePolicy([]byte(`{"rules":[` + doc + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return p.Rules[0]
}

func ptr[T any](v T) *T { return &v }

func TestStrongest(t *testing.T) {
	tests := []struct {
		in   []rp.Effect
		want rp.Effect
	}{
		{nil, rp.EffectNone},
		{[]rp.Effect{rp.EffectAlert}, rp.EffectAlert},
		{[]rp.Effect{rp.EffectAlert, rp.EffectBlock, rp.EffectPrevent}, rp.EffectBlock},
		{[]rp.Effect{rp.EffectPrevent, rp.EffectAlert}, rp.EffectPrevent},
	}
	for _, tc := range tests {
		var fs []rp.Finding
		for _, e := range tc.in {
			fs = append(fs, rp.Finding{Effect: e})
		}
		if got := rp.Strongest(fs); got != tc.want {
			t.Errorf("Strongest(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSensitiveReadPaths(t *testing.T) {
	got := rp.SensitiveReadPaths()
	for _, want := range []string{"/etc/shadow", "/etc/ssh", "/root/.ssh"} {
		if !slices.Contains(got, want) {
			t.Errorf("SensitiveReadPaths() = %v, want it to contain %s", got, want)
		}
	}
	for _, p := range got {
		if p == "" || p[0] != '/' || slices.ContainsFunc([]byte(p), func(c byte) bool { return c == '*' || c == '?' }) {
			t.Errorf("SensitiveReadPaths() has %q: want absolute prefixes without wildcards", p)
		}
	}
}

func TestProgramNameOfMultiCallBinaries(t *testing.T) {
	tests := []struct {
		p    event.Process
		want string
	}{
		{event.Process{Exe: "/usr/bin/nc", Argv: []string{"nc"}}, "nc"},
		{event.Process{Exe: "/bin/busybox", Argv: []string{"nc", "-l"}}, "nc"},                 // sh's applet via /proc/self/exe
		{event.Process{Exe: "/bin/busybox", Argv: []string{"/bin/busybox", "nc", "-e"}}, "nc"}, // busybox nc
		{event.Process{Exe: "/bin/busybox", Argv: []string{"busybox", "--list"}}, "busybox"},
		{event.Process{Exe: "/bin/busybox", Argv: []string{"busybox"}}, "busybox"},
		{event.Process{Exe: "/bin/nc", Argv: []string{"nc"}}, "nc"}, // a symlink to busybox: exec names it
		{event.Process{Comm: "worker"}, "worker"},
	}
	for _, tc := range tests {
		if got := rp.ProgramName(tc.p); got != tc.want {
			t.Errorf("ProgramName(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
	// A deny list names the applet; the model tells applets apart.
	r := mustRule(t, `{"name":"no nc","processes":{"deniedList":{"effect":"alert","paths":["nc"]}}}`)
	f := rp.Facts{Kind: event.KindProcessExec, Runtime: event.Runtime{Process: event.Process{Exe: "/bin/busybox", Argv: []string{"nc", "-l"}}, Container: web}}
	if fs := rp.Evaluate(r, nil, f); len(fs) != 1 || fs[0].Detection != rp.DetectDeniedProcess {
		t.Errorf("Evaluate(busybox as nc) = %+v, want the deny list to match", fs)
	}
	m := rp.NewModel(web.Image, t0, time.Minute, 0)
	m.Learn(event.KindProcessExec, event.Runtime{Process: event.Process{Exe: "/bin/busybox", Argv: []string{"cat"}}}, t0)
	m.Tick(t0.Add(time.Minute))
	if !m.HasProcess(event.Process{Exe: "/bin/busybox", Argv: []string{"cat", "x"}}) || m.HasProcess(event.Process{Exe: "/bin/busybox", Argv: []string{"nc"}}) {
		t.Errorf("model %v: want busybox-as-cat learned and busybox-as-nc not", m.Processes)
	}
}
