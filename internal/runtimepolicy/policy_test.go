package runtimepolicy_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/collection"
	rp "bulwark/internal/runtimepolicy"
)

func TestParsePolicyRefuses(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"not json", `{`, []string{"unexpected EOF"}},
		{"no rules", `{}`, []string{`"rules" array is missing`}},
		{"unknown field", `{"rules":[{"name":"a","processes":{"bogus":1}}]}`, []string{`unknown field "bogus"`}},
		{"trailing data", `{"rules":[]} {}`, []string{"data after the policy"}},
		{"unnamed", `{"rules":[{"name":" "}]}`, []string{"rules[0]: name is empty"}},
		{"duplicate", `{"rules":[{"name":"a"},{"name":"a"}]}`, []string{`rules[1] ("a"): a rule of that name comes earlier`}},
		{"bad effect", `{"rules":[{"name":"r","processes":{"cryptoMinersEffect":"kill"}}]}`,
			[]string{`rules[0] ("r").processes.cryptoMinersEffect: "kill" is not alert, prevent, block or disable`}},
		{"bad denied list effect", `{"rules":[{"name":"r","filesystem":{"deniedList":{"effect":"ignore","paths":["/etc"]}}}]}`,
			[]string{`filesystem.deniedList.effect: "ignore"`}},
		{"relative file path", `{"rules":[{"name":"r","filesystem":{"deniedList":{"paths":["etc/passwd"]}}}]}`,
			[]string{`filesystem.deniedList.paths[0]: "etc/passwd" is not an absolute path`}},
		{"relative process path", `{"rules":[{"name":"r","processes":{"deniedList":{"paths":["bin/nc"]}}}]}`,
			[]string{`processes.deniedList.paths[0]: "bin/nc" is neither a name nor an absolute path`}},
		{"empty process", `{"rules":[{"name":"r","processes":{"allowedList":[""]}}]}`, []string{"processes.allowedList[0]: \"\" is empty"}},
		{"bad ip", `{"rules":[{"name":"r","network":{"deniedIPs":["10.0.0.300"]}}]}`, []string{`network.deniedIPs[0]: "10.0.0.300" is not an IP address or CIDR`}},
		{"bad cidr", `{"rules":[{"name":"r","network":{"allowedIPs":["10.0.0.0/33"]}}]}`, []string{`network.allowedIPs[0]`}},
		{"port zero", `{"rules":[{"name":"r","network":{"outboundPorts":{"denied":[{"start":0}]}}}]}`,
			[]string{"network.outboundPorts.denied[0]: port range 0-0"}},
		{"port range backwards", `{"rules":[{"name":"r","network":{"listeningPorts":{"allowed":[{"start":90,"end":80}]}}}]}`,
			[]string{"network.listeningPorts.allowed[0]: port range 90-80"}},
		{"port too high", `{"rules":[{"name":"r","network":{"listeningPorts":{"denied":[{"start":70000}]}}}]}`,
			[]string{"network.listeningPorts.denied[0]"}},
		{"empty collection", `{"rules":[{"name":"r","collections":[{}]}]}`, []string{`rules[0] ("r").collections[0]: neither a name nor any glob`}},
		{"several problems at once", `{"rules":[{"name":"a","network":{"effect":"x"}},{"name":"","filesystem":{"newFilesEffect":"y"}}]}`,
			[]string{`rules[0] ("a").network.effect: "x"`, "rules[1]: name is empty", `rules[1].filesystem.newFilesEffect: "y"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rp.ParsePolicy([]byte(tc.doc))
			if !errors.Is(err, rp.ErrInvalidPolicy) {
				t.Fatalf("ParsePolicy(%s) = %v, want ErrInvalidPolicy", tc.doc, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParsePolicy(%s) = %q, want it to contain %q", tc.doc, err, w)
				}
			}
		})
	}
}

func TestParsePolicyPrismaShape(t *testing.T) {
	// The cURL example of Prisma's PUT /policies/runtime/container, and a
	// rule with the fields Prisma clients send back.
	doc := `{"rules":[
	  {"name":"my-rule","collections":[{"name":"All"}],"processes":{"effect":"alert"},"network":{"effect":"alert"},
	   "dns":{"effect":"alert"},"filesystem":{"effect":"prevent"}},
	  {"name":"full","previousName":"","disabled":false,"advancedProtectionEffect":"alert","cloudMetadataEnforcementEffect":"alert",
	   "kubernetesEnforcementEffect":"block","wildFireAnalysis":"disable","skipExecSessions":true,"customRules":[],"notes":"n","owner":"o","modified":"2024-01-01T00:00:00Z",
	   "collections":[{"name":"web","images":["registry.local/web:*"],"namespaces":["prod"]}],
	   "processes":{"defaultEffect":"alert","allowedList":["/usr/sbin/nginx","sh"],"deniedList":{"effect":"prevent","paths":["nc","/tmp/*"]},
	     "modifiedProcessEffect":"block","cryptoMinersEffect":"prevent","lateralMovementEffect":"alert","reverseShellEffect":"alert",
	     "suidBinariesEffect":"alert","packageManagersEffect":"alert","checkParentChild":true,"disabled":false},
	   "network":{"allowedIPs":["10.0.0.0/8"],"deniedIPs":["192.0.2.7","2001:db8::/32"],"deniedIPsEffect":"prevent",
	     "listeningPorts":{"allowed":[{"start":80,"end":81,"deny":false}],"effect":"alert"},
	     "outboundPorts":{"denied":[{"start":25}],"effect":"prevent"},"defaultEffect":"alert","portScanEffect":"alert","rawSocketsEffect":"alert","modifiedProcEffect":"alert"},
	   "filesystem":{"allowedList":["/var/cache"],"deniedList":{"effect":"prevent","paths":["/etc/passwd"]},"backdoorFilesEffect":"alert",
	     "newFilesEffect":"alert","sensitiveFilesEffect":"alert","encryptedBinariesEffect":"alert","suspiciousElfHeadersEffect":"alert","defaultEffect":"alert"}}
	]}`
	p, err := rp.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	r := p.Rules[0]
	// The section-wide effect fills every effect of the section.
	if r.Processes.CryptoMinersEffect != rp.EffectAlert || r.Processes.DefaultEffect != rp.EffectAlert || r.Processes.DeniedList.Effect != rp.EffectAlert {
		t.Errorf("processes.effect alert did not fill the section: %+v", r.Processes)
	}
	if r.Filesystem.NewFilesEffect != rp.EffectPrevent || r.Filesystem.DeniedList.Effect != rp.EffectPrevent {
		t.Errorf("filesystem.effect prevent did not fill the section: %+v", r.Filesystem)
	}
	if r.KubernetesEnforcementEffect != rp.EffectNone {
		t.Errorf("kubernetesEnforcementEffect = %q, want unset", r.KubernetesEnforcementEffect)
	}
	if string(r.DNS) != `{"effect":"alert"}` {
		t.Errorf("dns = %s, want it kept", r.DNS)
	}
	full := p.Rules[1]
	if full.Processes.ModifiedProcessEffect != rp.EffectBlock || full.Network.OutboundPorts.Denied[0].Start != 25 || !p.Prevents() {
		t.Errorf("full rule = %+v", full)
	}
	// A parsed policy reads back the same.
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := rp.ParsePolicy(out)
	if err != nil {
		t.Fatalf("ParsePolicy(Marshal(p)): %v", err)
	}
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("round trip differs (-first +again):\n%s", diff)
	}
}

func TestDefaultPolicy(t *testing.T) {
	for _, k := range []rp.Kind{rp.Container, rp.Host} {
		t.Run(string(k), func(t *testing.T) {
			p := rp.DefaultPolicy(k)
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := rp.ParsePolicy(raw)
			if err != nil {
				t.Fatalf("ParsePolicy(DefaultPolicy(%s)): %v", k, err)
			}
			if diff := cmp.Diff(p, parsed); diff != "" {
				t.Errorf("DefaultPolicy(%s) does not parse to itself (-want +got):\n%s", k, diff)
			}
			if p.Rules[0].Name != rp.RuleIgnoreBulwark {
				t.Errorf("first rule = %q, want %q", p.Rules[0].Name, rp.RuleIgnoreBulwark)
			}
			if p.Prevents() {
				t.Errorf("DefaultPolicy(%s) prevents something; the default only alerts", k)
			}
		})
	}
	c := rp.DefaultPolicy(rp.Container)
	tests := []struct {
		res  collection.Resource
		want string
	}{
		{collection.Resource{Image: "registry.local/bulwark-defender:1.0", Container: "x", Host: "n"}, rp.RuleIgnoreBulwark},
		{collection.Resource{Image: "busybox", Container: "bulwark-console-0", Host: "n"}, rp.RuleIgnoreBulwark},
		{collection.Resource{Image: "nginx:1", Container: "web", Host: "n"}, rp.RuleDefault},
	}
	for _, tc := range tests {
		r, ok := rp.Decide(c.Rules, tc.res)
		if !ok || r.Name != tc.want {
			t.Errorf("Decide(default, %+v) = %q, %v; want %q", tc.res, r.Name, ok, tc.want)
		}
	}
}

func TestDecideSkipsDisabledAndUnmatched(t *testing.T) {
	rules := []rp.Rule{
		{Name: "off", Disabled: true},
		{Name: "prod", Collections: []collection.Collection{{Name: "prod", Namespaces: []string{"prod"}}}},
		{Name: "rest", Collections: []collection.Collection{{Name: "All"}}},
	}
	tests := []struct {
		res  collection.Resource
		want string
	}{
		{collection.Resource{Namespace: "prod", Image: "x"}, "prod"},
		{collection.Resource{Namespace: "dev", Image: "x"}, "rest"},
		{collection.Resource{Host: "node"}, "rest"},
	}
	for _, tc := range tests {
		if r, ok := rp.Decide(rules, tc.res); !ok || r.Name != tc.want {
			t.Errorf("Decide(%+v) = %q, %v; want %q", tc.res, r.Name, ok, tc.want)
		}
	}
	if _, ok := rp.Decide(rules[:2], collection.Resource{Namespace: "dev"}); ok {
		t.Error("Decide with no matching rule = true, want false")
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, k := range []rp.Kind{rp.Container, rp.Host} {
		raw, _ := json.Marshal(rp.DefaultPolicy(k))
		f.Add(raw)
	}
	f.Add([]byte(`{"rules":[{"name":"r","network":{"deniedIPs":["10.0.0.0/8","::1"],"outboundPorts":{"denied":[{"start":1,"end":65535}],"effect":"prevent"}}}]}`))
	f.Add([]byte(`{"rules":[{"name":"r","processes":{"effect":"block","deniedList":{"paths":["/bin/*","nc"]}},"filesystem":{"deniedList":{"paths":["/etc/*"]}}}]}`))
	f.Add([]byte(`{"rules":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := rp.ParsePolicy(doc)
		if err != nil {
			if !errors.Is(err, rp.ErrInvalidPolicy) {
				t.Fatalf("ParsePolicy error %v does not wrap ErrInvalidPolicy", err)
			}
			return
		}
		// What parses compiles and reads back.
		for _, r := range p.Rules {
			_ = rp.Compile(r, nil)
		}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.ParsePolicy(raw); err != nil {
			t.Fatalf("ParsePolicy(Marshal(ParsePolicy(%q))) = %v", doc, err)
		}
	})
}

func TestRuleWideEffect(t *testing.T) {
	p, err := rp.ParsePolicy([]byte(`{"rules":[{"name":"all","effect":"alert","network":{"effect":"prevent"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules[0]
	if r.Processes.ReverseShellEffect != rp.EffectAlert || r.Filesystem.NewFilesEffect != rp.EffectAlert || r.KubernetesEnforcementEffect != rp.EffectAlert {
		t.Errorf("the rule's effect did not fill the sections: %+v", r)
	}
	if r.Network.DefaultEffect != rp.EffectPrevent {
		t.Errorf("network.defaultEffect = %q, want the section's own prevent", r.Network.DefaultEffect)
	}
	if _, err := rp.ParsePolicy([]byte(`{"rules":[{"name":"x","effect":"ignore"}]}`)); err == nil || !strings.Contains(err.Error(), `rules[0] ("x").effect: "ignore"`) {
		t.Errorf("ParsePolicy(rule effect ignore) = %v", err)
	}
}
