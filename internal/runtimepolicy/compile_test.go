package runtimepolicy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	rp "bulwark/internal/runtimepolicy"
)

func TestCompileAlertOnlyIsEmpty(t *testing.T) {
	for _, k := range []rp.Kind{rp.Container, rp.Host} {
		for _, r := range rp.DefaultPolicy(k).Rules {
			e := rp.Compile(r, learned())
			if !e.Empty() || len(e.Unenforced) > 0 || len(e.Block) > 0 {
				t.Errorf("Compile(default %s rule %q) = %+v, want nothing: the default only alerts", k, r.Name, e)
			}
		}
	}
}

func TestCompileDenies(t *testing.T) {
	r := mustRule(t, `{"name":"lock","processes":{"deniedList":{"effect":"prevent","paths":["nc","/tmp/*"]},"modifiedProcessEffect":"block",
		"reverseShellEffect":"prevent","defaultEffect":"prevent"},
		"filesystem":{"deniedList":{"effect":"block","paths":["/etc/passwd","/data/*.key","/srv/"]},"sensitiveFilesEffect":"prevent"},
		"network":{"deniedIPs":["192.0.2.0/24","2001:db8::1"],"deniedIPsEffect":"prevent","outboundPorts":{"denied":[{"start":25}],"effect":"prevent"},
		"listeningPorts":{"denied":[{"start":22}],"effect":"prevent"}}}`)
	e := rp.Compile(r, nil)
	deny := func(d string) rp.Deny { return rp.Deny{Rule: "lock", Detection: d} }
	if diff := cmp.Diff([]rp.ExecDeny{{Name: "nc", Deny: deny(rp.DetectDeniedProcess)}, {Path: "/tmp/*", Deny: deny(rp.DetectDeniedProcess)}}, e.Exec); diff != "" {
		t.Errorf("Exec (-want +got):\n%s", diff)
	}
	if e.Drift == nil || *e.Drift != deny(rp.DetectDrift) {
		t.Errorf("Drift = %v, want denied by lock", e.Drift)
	}
	if diff := cmp.Diff([]rp.PathDeny{{Prefix: "/etc/passwd", Deny: deny(rp.DetectDeniedFile)}, {Prefix: "/srv", Deny: deny(rp.DetectDeniedFile)}}, e.Write); diff != "" {
		t.Errorf("Write (-want +got):\n%s", diff)
	}
	wantCIDRs := []rp.CIDRDeny{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Deny: deny(rp.DetectDeniedIP)}, {Prefix: netip.MustParsePrefix("2001:db8::1/128"), Deny: deny(rp.DetectDeniedIP)}}
	if diff := cmp.Diff(wantCIDRs, e.ConnectCIDRs, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ConnectCIDRs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rp.PortDeny{{Ports: rp.PortRange{Start: 25}, Deny: deny(rp.DetectDeniedOutbound)}}, e.ConnectPorts); diff != "" {
		t.Errorf("ConnectPorts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rp.PortDeny{{Ports: rp.PortRange{Start: 22}, Deny: deny(rp.DetectDeniedListen)}}, e.ListenDenied); diff != "" {
		t.Errorf("ListenDenied (-want +got):\n%s", diff)
	}
	if e.ListenAllowed != nil {
		t.Errorf("ListenAllowed = %v, want nil (any port but the denied)", e.ListenAllowed)
	}
	if !slices.Contains(e.Block, rp.DetectDrift) || !slices.Contains(e.Block, rp.DetectDeniedFile) || slices.Contains(e.Block, rp.DetectDeniedProcess) {
		t.Errorf("Block = %v, want drift and denied files only", e.Block)
	}
	for _, field := range []string{"processes.reverseShellEffect", "processes.defaultEffect", "filesystem.deniedList", "filesystem.sensitiveFilesEffect"} {
		if !slices.ContainsFunc(e.Unenforced, func(s string) bool { return strings.HasPrefix(s, field+":") }) {
			t.Errorf("Unenforced = %q, want a note on %s", e.Unenforced, field)
		}
	}
}

func TestCompileBuiltInNames(t *testing.T) {
	r := mustRule(t, `{"name":"tools","processes":{"cryptoMinersEffect":"prevent","packageManagersEffect":"block","lateralMovementEffect":"alert"},"kubernetesEnforcementEffect":"prevent",
		"filesystem":{"backdoorFilesEffect":"prevent","newFilesEffect":"prevent"}}`)
	e := rp.Compile(r, nil)
	has := func(name, det string) bool {
		return slices.ContainsFunc(e.Exec, func(x rp.ExecDeny) bool { return x.Name == name && x.Detection == det })
	}
	for _, c := range []struct{ name, det string }{{"xmrig", rp.DetectCryptoMiner}, {"apt-get", rp.DetectPackageManager}, {"kubectl", rp.DetectKubectl}} {
		if !has(c.name, c.det) {
			t.Errorf("Compile: %s is not denied as %s", c.name, c.det)
		}
	}
	if has("ssh", rp.DetectLateralMovement) {
		t.Error("Compile: ssh denied although lateral movement only alerts")
	}
	prefixes := map[string]string{}
	for _, w := range e.Write {
		prefixes[w.Prefix] = w.Detection
	}
	for p, det := range map[string]string{"/etc/shadow": rp.DetectAdminAccount, "/root/.ssh": rp.DetectSSHAccess, "/usr/bin": rp.DetectAlteredBinary} {
		if prefixes[p] != det {
			t.Errorf("Write[%s] = %q, want %q", p, prefixes[p], det)
		}
	}
	if !slices.ContainsFunc(e.Unenforced, func(s string) bool { return strings.Contains(s, "/home/*/.ssh/authorized_keys*") }) {
		t.Errorf("the authorized_keys glob is not noted as unenforced: %q", e.Unenforced)
	}
}

func TestCompileListenWithModel(t *testing.T) {
	m := learned() // listens on 80
	allowList := mustRule(t, `{"name":"l","network":{"listeningPorts":{"allowed":[{"start":8080,"end":8081}],"effect":"prevent"}}}`)
	if got := rp.Compile(allowList, m).ListenAllowed; !cmp.Equal(got, []rp.PortRange{{Start: 8080, End: 8081}, {Start: 80}}) {
		t.Errorf("ListenAllowed with an allowed list and a model = %v, want 8080-8081 and 80", got)
	}
	if got := rp.Compile(allowList, nil).ListenAllowed; !cmp.Equal(got, []rp.PortRange{{Start: 8080, End: 8081}}) {
		t.Errorf("ListenAllowed without a model = %v", got)
	}
	byModel := mustRule(t, `{"name":"m","network":{"defaultEffect":"prevent"}}`)
	if got := rp.Compile(byModel, m); !cmp.Equal(got.ListenAllowed, []rp.PortRange{{Start: 80}}) || got.ListenRule.Detection != rp.DetectUnexpectedListen {
		t.Errorf("Compile(model prevents) = %v %v, want only port 80, by unexpectedListeningPort", got.ListenAllowed, got.ListenRule)
	}
	learning := rp.NewModel(web.Image, t0, 1, 0)
	if got := rp.Compile(byModel, &learning).ListenAllowed; got != nil {
		t.Errorf("ListenAllowed while the model learns = %v, want nil", got)
	}
}

// TestEvaluateAgreesWithCompile: what Evaluate says the kernel prevents is
// what Compile puts into kernel state, for the denying rule's cases.
func TestEvaluateAgreesWithCompile(t *testing.T) {
	r := mustRule(t, `{"name":"x","processes":{"deniedList":{"effect":"prevent","paths":["nc"]},"cryptoMinersEffect":"prevent"},
		"filesystem":{"deniedList":{"effect":"prevent","paths":["/etc/passwd"]}},
		"network":{"deniedIPs":["192.0.2.0/24"],"deniedIPsEffect":"prevent","outboundPorts":{"denied":[{"start":25}],"effect":"prevent"},"defaultEffect":"prevent"}}`)
	m := learned()
	e := rp.Compile(r, m)
	cases := []rp.Facts{
		execIn(web, "/bin/nc"), execIn(web, "/bin/xmrig"), fileIn(web, "file.write", "/etc/passwd"),
		connectIn(web, "/app", "192.0.2.1", 80), connectIn(web, "/app", "10.0.0.1", 25), listenIn(web, 9000),
	}
	for _, f := range cases {
		for _, fd := range rp.Evaluate(r, m, f) {
			if fd.Enforce == "" {
				continue
			}
			ok := false
			switch fd.Enforce {
			case rp.EnforceExec:
				ok = slices.ContainsFunc(e.Exec, func(x rp.ExecDeny) bool { return x.Detection == fd.Detection })
			case rp.EnforceWrite:
				ok = slices.ContainsFunc(e.Write, func(x rp.PathDeny) bool { return x.Detection == fd.Detection })
			case rp.EnforceConnect:
				ok = slices.ContainsFunc(e.ConnectCIDRs, func(x rp.CIDRDeny) bool { return x.Detection == fd.Detection }) ||
					slices.ContainsFunc(e.ConnectPorts, func(x rp.PortDeny) bool { return x.Detection == fd.Detection })
			case rp.EnforceListen:
				ok = e.ListenAllowed != nil && e.ListenRule.Detection == fd.Detection
			}
			if !ok {
				t.Errorf("Evaluate(%s) says %s is enforced by %s, but Compile has no such deny: %+v", f.Kind, fd.Detection, fd.Enforce, e)
			}
		}
	}
}
