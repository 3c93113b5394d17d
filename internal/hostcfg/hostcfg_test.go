package hostcfg_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
	"bulwark/internal/hostcfg"
)

var update = flag.Bool("update", false, "rewrite testdata/hosts/*.want.json")

// hostTree copies testdata/hosts/<name> to a temporary root and gives its
// files the modes and groups that <name>.modes lists (git keeps neither),
// with an /etc/passwd and /etc/group that name the test's own user and
// group root, and a second group docker, so that the owners read back as
// on a real host whoever runs the test.
func hostTree(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("testdata", "hosts", name)
	root := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	dockerGID := 4242
	if uid != 0 {
		others := slices.DeleteFunc(must(os.Getgroups()), func(g int) bool { return g == gid })
		if len(others) == 0 {
			t.Skip("needs root, or a second group of this user, to give a file a group other than root's")
		}
		dockerGID = others[0]
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "etc", "passwd"), fmt.Sprintf("root:x:%d:%d:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", uid, gid), 0o644)
	writeFile(t, filepath.Join(root, "etc", "group"), fmt.Sprintf("root:x:%d:\ndocker:x:%d:\n", gid, dockerGID), 0o644)

	f, err := os.Open(filepath.Join("testdata", "hosts", name+".modes"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if fields[0] == "symlink" {
			if err := os.Symlink(fields[2], filepath.Join(root, fields[1])); err != nil {
				t.Fatal(err)
			}
			continue
		}
		p := filepath.Join(root, fields[0])
		mode, err := strconv.ParseUint(fields[1], 8, 32)
		if err != nil {
			t.Fatalf("%s.modes: %q: %v", name, sc.Text(), err)
		}
		if err := os.Chmod(p, fs.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		if len(fields) > 2 && fields[2] == "docker" {
			if err := os.Chown(p, uid, dockerGID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func writeFile(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// hostWant is testdata/hosts/<name>.want.json.
type hostWant struct {
	Host     compliance.Host `json:"host"`
	Findings []hostFinding   `json:"findings"`
}

type hostFinding struct {
	Check    string   `json:"check"`
	PrismaID string   `json:"prismaId,omitempty"`
	Message  string   `json:"message"`
	Paths    []string `json:"paths"`
}

func TestTrees(t *testing.T) {
	for _, name := range []string{"hardened", "insecure", "bare"} {
		t.Run(name, func(t *testing.T) {
			root := hostTree(t, name)
			h, err := hostcfg.Read(root)
			if err != nil {
				t.Fatalf("Read(%s): %v", name, err)
			}
			got := hostWant{Host: h, Findings: []hostFinding{}}
			for _, f := range compliance.EvaluateHost(h) {
				got.Findings = append(got.Findings, hostFinding{f.Check, f.PrismaID, f.Message, f.Paths})
			}
			file := filepath.Join("testdata", "hosts", name+".want.json")
			if *update {
				b, err := json.MarshalIndent(got, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			var want hostWant
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update and review)", err)
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Read(%s) and EvaluateHost mismatch (-want +got):\n%s", name, diff)
			}
		})
	}
}

// TestEveryHostCheck: the insecure tree fails every host check, the
// hardened one none, and a host without Docker or a kubelet has nothing
// for them to look at.
func TestEveryHostCheck(t *testing.T) {
	var slugs []string
	for _, c := range compliance.Catalog() {
		if c.Applies(compliance.ScopeHost) && !c.External {
			slugs = append(slugs, c.Slug)
		}
	}
	if len(slugs) != 12 {
		t.Errorf("the catalog has %d host checks %v, want 12", len(slugs), slugs)
	}
	failing := func(name string) []string {
		h, err := hostcfg.Read(hostTree(t, name))
		if err != nil {
			t.Fatalf("Read(%s): %v", name, err)
		}
		var out []string
		for _, f := range compliance.EvaluateHost(h) {
			if !slices.Contains(out, f.Check) {
				out = append(out, f.Check)
			}
		}
		return out
	}
	if got := failing("insecure"); !cmp.Equal(got, slugs) {
		t.Errorf("EvaluateHost(insecure) fails %v, want every host check %v", got, slugs)
	}
	if got := failing("hardened"); len(got) != 0 {
		t.Errorf("EvaluateHost(hardened) fails %v, want none", got)
	}
	h, err := hostcfg.Read(hostTree(t, "bare"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Docker != nil || h.Kubelet != nil || h.Audit != nil || len(h.Files) != 0 || h.Name != "bare" {
		t.Errorf("Read(bare) = %+v, want only the name", h)
	}
}

// tree writes files (host path → content) under a new root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		writeFile(t, filepath.Join(root, p), content, 0o644)
	}
	return root
}

func TestDockerSources(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  *compliance.Docker
	}{
		{
			name: "sysvinit: /etc/default/docker DOCKER_OPTS",
			files: map[string]string{
				"/usr/bin/dockerd":    "",
				"/etc/default/docker": "# Docker Upstart and SysVinit configuration file\nexport DOCKER_OPTS=\"--icc=false -H tcp://127.0.0.1:2375 --userns-remap=default\"\n",
			},
			want: &compliance.Docker{
				ICC: ptr(false), Hosts: []string{"tcp://127.0.0.1:2375"}, UsernsRemap: "default",
				Sources:    map[string]string{"icc": "dockerd --icc", "hosts": "dockerd --host", "userns-remap": "dockerd --userns-remap"},
				ConfigFile: "/etc/docker/daemon.json",
			},
		},
		{
			name: "a unit that does not read /etc/default/docker ignores it",
			files: map[string]string{
				"/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
				"/etc/default/docker":                "DOCKER_OPTS=\"--icc=false\"\n",
			},
			want: &compliance.Docker{Hosts: []string{"fd://"}, Sources: map[string]string{"hosts": "dockerd --host"}, ConfigFile: "/etc/docker/daemon.json"},
		},
		{
			name: "--config-file moves daemon.json; the drop-in's later ExecStart wins",
			files: map[string]string{
				"/lib/systemd/system/docker.service":                 "[Service]\nExecStart=/usr/bin/dockerd --icc=true\n",
				"/etc/systemd/system/docker.service.d/10-local.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --config-file /srv/docker.json\n",
				"/srv/docker.json":                                   `{"icc": false, "live-restore": true, "tls": false, "hosts": ["unix:///srv/docker.sock"]}`,
			},
			want: &compliance.Docker{
				ICC: ptr(false), LiveRestore: ptr(true), TLSVerify: ptr(false), Hosts: []string{"unix:///srv/docker.sock"},
				Sources: map[string]string{
					"icc": "/srv/docker.json#icc", "live-restore": "/srv/docker.json#live-restore", "tls": "/srv/docker.json#tls",
					"hosts": "/srv/docker.json#hosts",
				},
				ConfigFile: "/srv/docker.json",
			},
		},
		{
			name: "old `docker daemon` units and Environment= variables",
			files: map[string]string{
				"/etc/systemd/system/docker.service": "[Service]\nEnvironment=\"EXTRA=--experimental --tlsverify=false\" CERT=/etc/d/cert.pem\nExecStart=/usr/bin/docker daemon $EXTRA --tlscert=${CERT}\n",
			},
			want: &compliance.Docker{
				Experimental: ptr(true), TLSVerify: ptr(false), TLSCert: "/etc/d/cert.pem",
				Sources:    map[string]string{"experimental": "dockerd --experimental", "tlsverify": "dockerd --tlsverify", "tlscert": "dockerd --tlscert"},
				ConfigFile: "/etc/docker/daemon.json",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hostcfg.Read(tree(t, tc.files))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(tc.want, h.Docker); diff != "" {
				t.Errorf("Read(%v).Docker mismatch (-want +got):\n%s", tc.files, diff)
			}
		})
	}
}

func TestKubeletSources(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  *compliance.Kubelet
	}{
		{
			name:  "flags only: the kubelet's flag defaults",
			files: map[string]string{"/usr/lib/systemd/system/kubelet.service": "[Service]\nExecStart=/usr/bin/kubelet --kubeconfig=/etc/k/kubelet.conf\n"},
			want: &compliance.Kubelet{
				AnonymousAuth: ptr(true), AuthorizationMode: "AlwaysAllow", ReadOnlyPort: ptr(10255),
				Sources: map[string]string{
					"authentication.anonymous.enabled": "kubelet --anonymous-auth (default)",
					"authorization.mode":               "kubelet --authorization-mode (default)",
					"readOnlyPort":                     "kubelet --read-only-port (default)",
					"protectKernelDefaults":            "kubelet --protect-kernel-defaults (default)",
				},
			},
		},
		{
			name: "a config file's defaults, and flags over it",
			files: map[string]string{
				"/usr/bin/kubelet":                        "",
				"/usr/lib/systemd/system/kubelet.service": "[Service]\nExecStart=/usr/bin/kubelet --config /etc/kubelet.yaml --read-only-port=10255 --protect-kernel-defaults\n",
				"/etc/kubelet.yaml":                       "kind: KubeletConfiguration\nreadOnlyPort: 0\nprotectKernelDefaults: false\n",
			},
			want: &compliance.Kubelet{
				AnonymousAuth: ptr(false), AuthorizationMode: "Webhook", ReadOnlyPort: ptr(10255), ProtectKernelDefaults: ptr(true),
				Sources: map[string]string{
					"authentication.anonymous.enabled": "/etc/kubelet.yaml#authentication.anonymous.enabled (kubelet default)",
					"authorization.mode":               "/etc/kubelet.yaml#authorization.mode (kubelet default)",
					"readOnlyPort":                     "kubelet --read-only-port",
					"protectKernelDefaults":            "kubelet --protect-kernel-defaults",
				},
				ConfigFile: "/etc/kubelet.yaml",
			},
		},
		{
			name:  "no unit: the default config path (JSON is YAML too)",
			files: map[string]string{"/var/lib/kubelet/config.yaml": `{"authentication":{"anonymous":{"enabled":true}},"authorization":{"mode":"AlwaysAllow"},"readOnlyPort":10255}`},
			want: &compliance.Kubelet{
				AnonymousAuth: ptr(true), AuthorizationMode: "AlwaysAllow", ReadOnlyPort: ptr(10255),
				Sources: map[string]string{
					"authentication.anonymous.enabled": "/var/lib/kubelet/config.yaml#authentication.anonymous.enabled",
					"authorization.mode":               "/var/lib/kubelet/config.yaml#authorization.mode",
					"readOnlyPort":                     "/var/lib/kubelet/config.yaml#readOnlyPort",
					"protectKernelDefaults":            "/var/lib/kubelet/config.yaml#protectKernelDefaults (kubelet default)",
				},
				ConfigFile: "/var/lib/kubelet/config.yaml",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hostcfg.Read(tree(t, tc.files))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(tc.want, h.Kubelet); diff != "" {
				t.Errorf("Read(%v).Kubelet mismatch (-want +got):\n%s", tc.files, diff)
			}
		})
	}
}

// TestSymlinksStayInRoot: an absolute symbolic link resolves against the
// host root, not the reader's own root.
func TestSymlinksStayInRoot(t *testing.T) {
	root := tree(t, map[string]string{
		"/usr/bin/dockerd":             "",
		"/srv/etc-docker/daemon.json":  `{"icc": false}`,
		"/run/containerd/placeholder":  "",
		"/etc/audit/rules.d/a.rules":   "-w /usr/bin/dockerd -k docker\n",
		"/lib/systemd/system/x.target": "",
	})
	if err := os.Symlink("/srv/etc-docker", filepath.Join(root, "etc", "docker")); err != nil {
		t.Fatal(err)
	}
	// A link climbing out of the root lands on the root.
	if err := os.Symlink("../../../../../../../../etc/passwd", filepath.Join(root, "srv", "escape")); err != nil {
		t.Fatal(err)
	}
	h, err := hostcfg.Read(root)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if h.Docker == nil || h.Docker.ICC == nil || *h.Docker.ICC {
		t.Errorf("Read through /etc/docker → /srv/etc-docker: Docker = %+v, want icc false from the root's file", h.Docker)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
		check func(compliance.Host) bool // what must still be read
	}{
		{
			name:  "broken daemon.json",
			files: map[string]string{"/usr/bin/dockerd": "", "/etc/docker/daemon.json": `{"icc": "no"`, "/var/lib/kubelet/config.yaml": "readOnlyPort: 0\n"},
			want:  "invalid daemon.json: /etc/docker/daemon.json",
			check: func(h compliance.Host) bool { return h.Docker != nil && h.Kubelet != nil },
		},
		{
			name:  "wrong type in daemon.json",
			files: map[string]string{"/etc/docker/daemon.json": `{"icc": "false"}`},
			want:  "cannot unmarshal string",
			check: func(h compliance.Host) bool { return h.Docker != nil },
		},
		{
			name:  "bad kubelet flag",
			files: map[string]string{"/lib/systemd/system/kubelet.service": "[Service]\nExecStart=/usr/bin/kubelet --read-only-port=http\n"},
			want:  "kubelet --read-only-port=http: not a port",
			check: func(h compliance.Host) bool { return h.Kubelet != nil },
		},
		{
			name:  "unterminated quote",
			files: map[string]string{"/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd --icc=false \"-H\n"},
			want:  "unterminated quote",
			check: func(h compliance.Host) bool { return h.Docker != nil && h.Docker.ICC != nil && !*h.Docker.ICC },
		},
		{
			name:  "missing --config-file",
			files: map[string]string{"/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd --config-file=/nope.json\n"},
			want:  "dockerd --config-file /nope.json",
			check: func(h compliance.Host) bool { return h.Docker != nil && h.Docker.ConfigFile == "/nope.json" },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hostcfg.Read(tree(t, tc.files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Read(%v) error = %v, want one mentioning %q", tc.files, err, tc.want)
			}
			if !tc.check(h) {
				t.Errorf("Read(%v) = %+v; the rest of the host should still be read", tc.files, h)
			}
		})
	}
	if _, err := hostcfg.Read(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("Read(absent root) = nil error")
	}
}

func ptr[T any](v T) *T { return &v }

func TestSecurity(t *testing.T) {
	tests := []struct {
		name          string
		files         map[string]string
		wantAppArmor  bool
		wantSELinuxOn bool
	}{
		{"neither", map[string]string{"/etc/hostname": "x\n"}, false, false},
		{"AppArmor", map[string]string{"/sys/module/apparmor/parameters/enabled": "Y\n"}, true, false},
		{"AppArmor off", map[string]string{"/sys/module/apparmor/parameters/enabled": "N\n"}, false, false},
		{"SELinux enforcing", map[string]string{"/sys/fs/selinux/enforce": "1"}, false, true},
		{"SELinux permissive", map[string]string{"/sys/fs/selinux/enforce": "0"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			aa, se := hostcfg.Security(tree(t, tc.files))
			if aa != tc.wantAppArmor || se != tc.wantSELinuxOn {
				t.Errorf("Security(%v) = %v, %v; want %v, %v", tc.files, aa, se, tc.wantAppArmor, tc.wantSELinuxOn)
			}
		})
	}
}
