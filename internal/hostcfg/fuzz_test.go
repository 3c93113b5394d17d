package hostcfg

import (
	"strings"
	"testing"

	"bulwark/internal/compliance"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`/usr/bin/dockerd -H fd://`, []string{"/usr/bin/dockerd", "-H", "fd://"}},
		{`a "b c" 'd "e"' f\ g`, []string{"a", "b c", `d "e"`, "f g"}},
		{`--x="a b"c ""`, []string{"--x=a bc", ""}},
		{"  \t ", nil},
	}
	for _, tc := range tests {
		got, err := splitWords(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandCommand(t *testing.T) {
	env := map[string]string{"OPTS": "--icc=false  -H tcp://x", "CERT": "/a b/c.pem"}
	got, err := expandCommand(`/usr/bin/dockerd $OPTS --tlscert=${CERT} $UNSET "${OPTS}"`, env)
	want := []string{"/usr/bin/dockerd", "--icc=false", "-H", "tcp://x", "--tlscert=/a b/c.pem", "--icc=false  -H tcp://x"}
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("expandCommand = %q, %v; want %q", got, err, want)
	}
}

func TestParseFlags(t *testing.T) {
	args := []string{"-D", "-H", "unix:///a", "-H=tcp://b", "-Hfd://", "--icc", "--tlsverify=false", "--log-level", "debug",
		"--insecure-registry", "r:5000", "--userns-remap=default", "--tlskey", "--", "--icc=false", "--", "--experimental"}
	var got []string
	for _, f := range parseFlags(args, dockerdFlags()) {
		got = append(got, f.name+"="+f.value)
	}
	want := []string{"hosts=unix:///a", "hosts=tcp://b", "hosts=fd://", "icc=true", "tlsverify=false",
		"insecure-registries=r:5000", "userns-remap=default", "tlskey=--", "icc=false"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("parseFlags(%q) = %q, want %q", args, got, want)
	}
}

func FuzzDaemonJSON(f *testing.F) {
	for _, s := range []string{
		`{"icc": false, "hosts": ["tcp://0.0.0.0:2376"], "tlsverify": true, "insecure-registries": ["10.0.0.0/8"]}`,
		`{"ICC": true, "userns-remap": "default", "no-new-privileges": true, "live-restore": true, "userland-proxy": false, "experimental": true}`,
		``, `[]`, `{"icc": "no"}`, `{"tls": false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &compliance.Docker{Sources: map[string]string{}}
		if err := parseDaemonJSON(data, "/etc/docker/daemon.json", d); err != nil {
			return
		}
		for option, src := range d.Sources {
			if src != "/etc/docker/daemon.json#"+option {
				t.Errorf("source of %s = %q", option, src)
			}
		}
		compliance.EvaluateHost(compliance.Host{Docker: d})
	})
}

func FuzzDockerdCommand(f *testing.F) {
	for _, s := range []string{
		`/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock`,
		`/usr/bin/dockerd -H unix:///var/run/docker.sock $OPTIONS --tlscert=${CERT}`,
		`/usr/bin/docker daemon --icc=false --insecure-registry "r:5000" --tlsverify=maybe`,
		`dockerd "unterminated`, `dockerd -H`, `dockerd ${`, `dockerd \`,
	} {
		f.Add(s, "--experimental -H tcp://0.0.0.0:2375")
	}
	f.Fuzz(func(t *testing.T, line, options string) {
		argv, _ := expandCommand(line, map[string]string{"OPTIONS": options, "CERT": options})
		d := &compliance.Docker{Sources: map[string]string{}}
		applyDockerdFlags(dockerdArgs(argv), d)
		compliance.EvaluateHost(compliance.Host{Docker: d})
	})
}

func FuzzUnitFile(f *testing.F) {
	for _, s := range []string{
		"[Service]\nEnvironment=\"A=b c\" D=e\nEnvironmentFile=-/etc/default/docker\nExecStart=\nExecStart=/usr/bin/dockerd \\\n  --icc=false\n",
		"[Unit]\nDescription=x\n[Service]\nExecStart=-/usr/bin/kubelet $KUBELET_ARGS\n",
		"export DOCKER_OPTS='--icc=false'\n# comment\nOPTIONS=\"-H tcp://x\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, s := range serviceSettings(text) {
			if s.key == "" && s.value == "" {
				continue
			}
			if strings.ContainsRune(s.key, '\n') {
				t.Errorf("setting key %q spans lines", s.key)
			}
		}
		for k := range parseEnvFile(text) {
			if strings.ContainsRune(k, '\n') {
				t.Errorf("environment name %q spans lines", k)
			}
		}
	})
}

func FuzzKubeletConfig(f *testing.F) {
	for _, s := range []string{
		"authentication:\n  anonymous:\n    enabled: false\nauthorization:\n  mode: Webhook\nreadOnlyPort: 0\nprotectKernelDefaults: true\n",
		`{"readOnlyPort": 10255}`, "readOnlyPort: [", "- a\n- b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k := &compliance.Kubelet{Sources: map[string]string{}}
		if err := parseKubeletConfig(data, "/var/lib/kubelet/config.yaml", k); err != nil {
			return
		}
		kubeletDefaults(k)
		if k.AnonymousAuth == nil || k.AuthorizationMode == "" || k.ReadOnlyPort == nil {
			t.Errorf("kubeletDefaults left a setting unset: %+v", k)
		}
		compliance.EvaluateHost(compliance.Host{Kubelet: k})
	})
}
