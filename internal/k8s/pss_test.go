package k8s_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

func TestParsePSSVersion(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"latest", "latest", true},
		{"v1.30", "v1.30", true},
		{"v1.0", "v1.0", true},
		{"v1.99", "v1.99", true},
		{"1.30", "", false},
		{"v2.1", "", false},
		{"v1.x", "", false},
		{"", "", false},
		{"Latest", "", false},
	}
	for _, tc := range tests {
		v, err := k8s.ParsePSSVersion(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParsePSSVersion(%q) error = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && v.String() != tc.want {
			t.Errorf("ParsePSSVersion(%q) = %s, want %s", tc.in, v, tc.want)
		}
	}
}

// pssFinding is the part of a PSS finding a case pins down.
type pssFinding struct {
	Check, Message, Container string
	Paths                     []string
}

func TestPSSFindings(t *testing.T) {
	deployment := func(spec string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n" + spec
	}
	const hardenedContainer = `      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: web
          image: web:1
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
`
	tests := []struct {
		name     string
		manifest string
		level    psaapi.Level
		version  string
		want     []pssFinding
	}{
		{
			name:     "hardened pod passes restricted",
			manifest: deployment(hardenedContainer + "              drop: [ALL]\n"),
			level:    psaapi.LevelRestricted, version: "latest",
		},
		{
			name:     "a restricted control alone is pss-restricted",
			manifest: deployment(hardenedContainer + "              drop: [NET_RAW]\n"),
			level:    psaapi.LevelRestricted, version: "latest",
			want: []pssFinding{{
				Check:     k8s.CheckPSSRestricted,
				Message:   `Capabilities: unrestricted capabilities (container "web" must set securityContext.capabilities.drop=["ALL"])`,
				Container: "web",
				Paths:     []string{"spec.template.spec.containers[0].securityContext.capabilities.drop"},
			}},
		},
		{
			name:     "a restricted control that fails baseline too is pss-baseline",
			manifest: deployment(hardenedContainer + "              drop: [ALL]\n              add: [SYS_ADMIN]\n"),
			level:    psaapi.LevelRestricted, version: "latest",
			want: []pssFinding{{
				Check:     k8s.CheckPSSBaseline,
				Message:   `Capabilities: unrestricted capabilities (container "web" must not include "SYS_ADMIN" in securityContext.capabilities.add)`,
				Container: "web",
				Paths:     []string{"spec.template.spec.containers[0].securityContext.capabilities.add"},
			}},
		},
		{
			name:     "the same pod at baseline",
			manifest: deployment(hardenedContainer + "              drop: [ALL]\n              add: [SYS_ADMIN]\n"),
			level:    psaapi.LevelBaseline, version: "latest",
			want: []pssFinding{{
				Check:     k8s.CheckPSSBaseline,
				Message:   `Capabilities: non-default capabilities (container "web" must not include "SYS_ADMIN" in securityContext.capabilities.add)`,
				Container: "web",
				Paths:     []string{"spec.template.spec.containers[0].securityContext.capabilities.add"},
			}},
		},
		{
			name: "hostPath at restricted is the volume types control, failing baseline too",
			manifest: deployment(hardenedContainer + "              drop: [ALL]\n" +
				"      volumes: [{name: logs, hostPath: {path: /var/log}}, {name: cache, nfs: {server: nfs, path: /c}}]\n"),
			level: psaapi.LevelRestricted, version: "latest",
			want: []pssFinding{{
				Check:   k8s.CheckPSSBaseline,
				Message: `Volume Types: restricted volume types (volumes "logs", "cache" use restricted volume types "hostPath", "nfs")`,
				Paths:   []string{"spec.template.spec.volumes[0].hostPath", "spec.template.spec.volumes[1].nfs"},
			}},
		},
		{
			name:     "privileged level evaluates nothing",
			manifest: deployment("      hostPID: true\n      containers: [{name: web, image: web:1}]\n"),
			level:    psaapi.LevelPrivileged, version: "latest",
		},
		{
			name:     "a version's own rule without a Bulwark field check points at the pod spec",
			manifest: deployment("      containers: [{name: web, image: web:1, securityContext: {seLinuxOptions: {type: container_engine_t}}}]\n"),
			level:    psaapi.LevelBaseline, version: "v1.30",
			want: []pssFinding{{
				Check:   k8s.CheckPSSBaseline,
				Message: `SELinux: seLinuxOptions (container "web" set forbidden securityContext.seLinuxOptions: type "container_engine_t")`,
				Paths:   []string{"spec.template.spec"},
			}},
		},
		{
			name:     "the same pod at the latest version passes",
			manifest: deployment("      containers: [{name: web, image: web:1, securityContext: {seLinuxOptions: {type: container_engine_t}}}]\n"),
			level:    psaapi.LevelBaseline, version: "latest",
		},
		{
			name:     "host probes are a control from v1.34 only",
			manifest: deployment("      containers: [{name: web, image: web:1, livenessProbe: {httpGet: {host: 10.0.0.1, port: 80}}}]\n"),
			level:    psaapi.LevelBaseline, version: "v1.33",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := k8s.Decode("web.yaml", []byte(tc.manifest))
			if err != nil || len(objs) != 1 {
				t.Fatalf("Decode = %d objects, %v", len(objs), err)
			}
			v, err := k8s.ParsePSSVersion(tc.version)
			if err != nil {
				t.Fatal(err)
			}
			var got []pssFinding
			for _, f := range k8s.PSS(tc.level, v).Evaluate(objs[0].Workload) {
				c, _ := compliance.Lookup(f.Check)
				if f.Severity != c.Severity || f.Title != c.Title || f.PrismaID != "" {
					t.Errorf("finding %q: severity %s title %q id %q, want the catalog's %s %q and no ID", f.Message, f.Severity, f.Title, f.PrismaID, c.Severity, c.Title)
				}
				got = append(got, pssFinding{f.Check, f.Message, f.Container, f.Paths})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PSS(%s, %s) findings (-want +got):\n%s", tc.level, tc.version, diff)
			}
		})
	}
}

func TestPSSWithoutPod(t *testing.T) {
	w := compliance.Workload{Source: compliance.Source{Kind: compliance.SourceOCI}, Runtime: &compliance.Runtime{}}
	if got := k8s.PSS(psaapi.LevelRestricted, psaapi.LatestVersion()).Evaluate(w); len(got) != 0 {
		t.Errorf("PSS on a runtime workload = %v, want nothing", got)
	}
}
