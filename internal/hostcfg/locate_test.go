package hostcfg_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
	"bulwark/internal/hostcfg"
)

func TestLocate(t *testing.T) {
	root := tree(t, map[string]string{
		"/usr/bin/dockerd":                   "",
		"/lib/systemd/system/docker.service": "[Unit]\nDescription=Docker\n\n[Service]\nEnvironmentFile=-/etc/sysconfig/docker\nExecStart=/usr/bin/dockerd \\\n  -H fd:// \\\n  $OPTIONS\n",
		"/etc/sysconfig/docker":              "# options\nOPTIONS=\"--insecure-registry 10.0.0.0/8 --tlsverify=false\"\n",
		"/etc/docker/daemon.json":            "{\n  \"icc\": true,\n  \"live-restore\": false\n}\n",
		"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf": "[Service]\n" +
			"Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n" +
			"EnvironmentFile=-/etc/default/kubelet\n" +
			"ExecStart=\n" +
			"ExecStart=/usr/bin/kubelet $KUBELET_CONFIG_ARGS $KUBELET_EXTRA_ARGS\n",
		"/etc/default/kubelet":            "KUBELET_EXTRA_ARGS=--read-only-port=10255\n",
		"/var/lib/kubelet/config.yaml":    "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  webhook:\n    enabled: true\n  anonymous:\n    enabled: true\nauthorization:\n  mode: AlwaysAllow\n",
		"/etc/audit/rules.d/docker.rules": "-w /usr/bin/dockerd -k docker\n",
	})
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/run", filepath.Join(root, "var", "run")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "run", "docker.sock"), "", 0o666)

	// The paths are those Read records for this host.
	h, err := hostcfg.Read(root)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	sources := map[string]bool{}
	for _, f := range compliance.EvaluateHost(h) {
		for _, p := range f.Paths {
			sources[p] = true
		}
	}
	at := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	tests := []struct {
		where string
		want  hostcfg.Location
	}{
		{"/etc/docker/daemon.json#icc", hostcfg.Location{Path: "/etc/docker/daemon.json", File: at("/etc/docker/daemon.json"), Line: 2}},
		{"/etc/docker/daemon.json#live-restore", hostcfg.Location{Path: "/etc/docker/daemon.json", File: at("/etc/docker/daemon.json"), Line: 3}},
		{"/etc/docker/daemon.json#userns-remap", hostcfg.Location{Path: "/etc/docker/daemon.json", File: at("/etc/docker/daemon.json")}},
		{"dockerd --host", hostcfg.Location{Path: "/lib/systemd/system/docker.service", File: at("/lib/systemd/system/docker.service"), Line: 7}},
		{"dockerd --insecure-registry", hostcfg.Location{Path: "/etc/sysconfig/docker", File: at("/etc/sysconfig/docker"), Line: 2}},
		{"dockerd --tlsverify", hostcfg.Location{Path: "/etc/sysconfig/docker", File: at("/etc/sysconfig/docker"), Line: 2}},
		{"kubelet --read-only-port", hostcfg.Location{Path: "/etc/default/kubelet", File: at("/etc/default/kubelet"), Line: 1}},
		{"kubelet --protect-kernel-defaults (default)", hostcfg.Location{
			Path: "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", File: at("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"), Line: 5}},
		{"/var/lib/kubelet/config.yaml#authentication.anonymous.enabled", hostcfg.Location{
			Path: "/var/lib/kubelet/config.yaml", File: at("/var/lib/kubelet/config.yaml"), Line: 7}},
		{"/var/lib/kubelet/config.yaml#authorization.mode", hostcfg.Location{Path: "/var/lib/kubelet/config.yaml", File: at("/var/lib/kubelet/config.yaml"), Line: 9}},
		{"/var/lib/kubelet/config.yaml#protectKernelDefaults", hostcfg.Location{Path: "/var/lib/kubelet/config.yaml", File: at("/var/lib/kubelet/config.yaml")}},
		{"auditctl -l", hostcfg.Location{Path: "/etc/audit/rules.d/docker.rules", File: at("/etc/audit/rules.d/docker.rules")}},
		// A link inside the root resolves inside it.
		{"/var/run/docker.sock", hostcfg.Location{Path: "/var/run/docker.sock", File: at("/run/docker.sock")}},
		{"/etc/docker", hostcfg.Location{Path: "/etc/docker", File: at("/etc/docker")}},
		{"something else", hostcfg.Location{}},
	}
	for _, tc := range tests {
		t.Run(tc.where, func(t *testing.T) {
			if got := hostcfg.Locate(root, tc.where); got != tc.want {
				t.Errorf("Locate(%q) = %+v, want %+v", tc.where, got, tc.want)
			}
		})
	}
	// Every path the host checks report here is located in a file.
	for p := range sources {
		if loc := hostcfg.Locate(root, p); loc.Path == "" || loc.File == "" {
			t.Errorf("Locate(%q) = %+v: a finding's path that names no file", p, loc)
		}
	}
}

func TestLocateWithoutSystemd(t *testing.T) {
	root := tree(t, map[string]string{
		"/usr/bin/dockerd":    "",
		"/etc/default/docker": "# defaults\nexport DOCKER_OPTS=\"--icc=false -Htcp://0.0.0.0:2375\"\n",
	})
	tests := []struct {
		where string
		want  hostcfg.Location
	}{
		{"dockerd --host", hostcfg.Location{Path: "/etc/default/docker", File: filepath.Join(root, "etc", "default", "docker"), Line: 2}},
		{"dockerd --userns-remap", hostcfg.Location{Path: "/etc/default/docker", File: filepath.Join(root, "etc", "default", "docker")}},
		{"kubelet --anonymous-auth", hostcfg.Location{}},
	}
	for _, tc := range tests {
		if got := hostcfg.Locate(root, tc.where); !cmp.Equal(got, tc.want) {
			t.Errorf("Locate(%q) = %+v, want %+v", tc.where, got, tc.want)
		}
	}
}
