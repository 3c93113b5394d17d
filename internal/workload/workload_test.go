package workload_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
	"bulwark/internal/workload"
)

var update = flag.Bool("update", false, "rewrite the expected results in testdata/*/*.want.json")

// want is testdata/<parser>/<case>.want.json: what parsing <case>.json and
// evaluating it with every check gives. Engine is an input (FromOCI's
// engine argument) that -update keeps.
type want struct {
	Engine    string         `json:"engine,omitempty"`
	Workloads []wantWorkload `json:"workloads"`
}

type wantWorkload struct {
	Source   compliance.Source   `json:"source"`
	Runtime  *compliance.Runtime `json:"runtime"`
	Findings []wantFinding       `json:"findings"`
}

type wantFinding struct {
	Check     string   `json:"check"`
	PrismaID  string   `json:"prismaId,omitempty"`
	Severity  string   `json:"severity"`
	Container string   `json:"container,omitempty"`
	Message   string   `json:"message"`
	Paths     []string `json:"paths"`
}

func TestTestdata(t *testing.T) {
	parsers := map[string]func(data []byte, engine string) ([]compliance.Workload, error){
		"oci": func(data []byte, engine string) ([]compliance.Workload, error) {
			w, err := workload.FromOCI(data, engine)
			return []compliance.Workload{w}, err
		},
		"docker": func(data []byte, _ string) ([]compliance.Workload, error) { return workload.FromDockerInspect(data) },
		"image": func(data []byte, _ string) ([]compliance.Workload, error) {
			w, err := workload.FromImageConfig(data)
			return []compliance.Workload{w}, err
		},
	}
	for dir, parse := range parsers {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for _, file := range files {
			if strings.HasSuffix(file, ".want.json") {
				continue
			}
			n++
			name := dir + "/" + strings.TrimSuffix(filepath.Base(file), ".json")
			t.Run(name, func(t *testing.T) {
				wantFile := strings.TrimSuffix(file, ".json") + ".want.json"
				var w want
				if b, err := os.ReadFile(wantFile); err == nil {
					if err := json.Unmarshal(b, &w); err != nil {
						t.Fatalf("%s: %v", wantFile, err)
					}
				} else if !*update {
					t.Fatalf("%s is missing: run the test with -update and review it", wantFile)
				}
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				ws, err := parse(data, w.Engine)
				if err != nil {
					t.Fatalf("parse %s: %v", file, err)
				}
				got := want{Engine: w.Engine}
				for _, wl := range ws {
					gw := wantWorkload{Source: wl.Source, Runtime: wl.Runtime, Findings: []wantFinding{}}
					gw.Source.Annotations = nil // the input's, verbatim
					for _, f := range compliance.Evaluate(wl, compliance.Options{}) {
						gw.Findings = append(gw.Findings, wantFinding{f.Check, f.PrismaID, string(f.Severity), f.Container, f.Message, f.Paths})
					}
					got.Workloads = append(got.Workloads, gw)
				}
				if *update {
					b, err := json.MarshalIndent(got, "", "  ")
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(wantFile, append(b, '\n'), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				// Compare as JSON: the golden file is what a reviewer reads.
				gotJSON, _ := json.Marshal(got)
				var gotBack want
				if err := json.Unmarshal(gotJSON, &gotBack); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(w, gotBack); diff != "" {
					t.Errorf("parse and Evaluate(%s) mismatch (-want +got):\n%s", file, diff)
				}
			})
		}
		if n == 0 {
			t.Errorf("testdata/%s has no cases", dir)
		}
	}
}

// findings returns "<check>@<path>" for every finding of w.
func findings(w compliance.Workload) []string {
	var out []string
	for _, f := range compliance.Evaluate(w, compliance.Options{}) {
		out = append(out, f.Check+"@"+strings.Join(f.Paths, ","))
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestOCINamespaces(t *testing.T) {
	tests := []struct {
		name       string
		namespaces string
		want       []compliance.HostNamespace
	}{
		{
			name:       "all private",
			namespaces: `[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"user"},{"type":"mount"},{"type":"cgroup"}]`,
		},
		{
			name:       "no entries: every namespace is the host's",
			namespaces: `[]`,
			want: []compliance.HostNamespace{
				{Type: "network", Key: "linux.namespaces"}, {Type: "pid", Key: "linux.namespaces"}, {Type: "ipc", Key: "linux.namespaces"},
				{Type: "uts", Key: "linux.namespaces"}, {Type: "user", Key: "linux.namespaces"}, {Type: "mount", Key: "linux.namespaces"},
				{Type: "cgroup", Key: "linux.namespaces"},
			},
		},
		{
			name:       "paths to PID 1's namespaces are the host's",
			namespaces: `[{"type":"pid","path":"/proc/1/ns/pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"ipc","path":"/proc/1//ns/ipc"},{"type":"uts"},{"type":"user"},{"type":"mount","path":"/proc/1/ns/mnt"},{"type":"cgroup"}]`,
			want: []compliance.HostNamespace{
				{Type: "network", Key: "linux.namespaces[1].path"}, {Type: "pid", Key: "linux.namespaces[0].path"},
				{Type: "ipc", Key: "linux.namespaces[2].path"}, {Type: "mount", Key: "linux.namespaces[5].path"},
			},
		},
		{
			name:       "paths to a pod sandbox's namespaces are not",
			namespaces: `[{"type":"pid","path":"/proc/4123/ns/pid"},{"type":"network","path":"/var/run/netns/cni-1234"},{"type":"ipc","path":"/proc/11/ns/ipc"},{"type":"uts","path":"/proc/1/ns/net"},{"type":"user"},{"type":"mount"},{"type":"cgroup"}]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := `{"ociVersion":"1.1.0","process":{"user":{"uid":0,"gid":0},"cwd":"/"},"linux":{"namespaces":` + tc.namespaces + `}}`
			w, err := workload.FromOCI([]byte(spec), "")
			if err != nil {
				t.Fatalf("FromOCI(%s): %v", tc.namespaces, err)
			}
			if diff := cmp.Diff(tc.want, w.Runtime.HostNamespaces); diff != "" {
				t.Errorf("FromOCI(%s) host namespaces mismatch (-want +got):\n%s", tc.namespaces, diff)
			}
		})
	}
}

func TestOCIFacts(t *testing.T) {
	tests := []struct {
		name    string
		linux   string
		process string
		want    []string // findings that must be there
		not     []string // findings that must not
	}{
		{
			name:  "deny-all devices then specific allows: not every device",
			linux: `"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}`,
			not:   []string{"host-devices@linux.resources.devices[0]", "host-devices@linux.resources.devices[1]"},
		},
		{
			name:  "an allow-all after a deny-all allows every device",
			linux: `"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"access":"rwm"}]}`,
			want:  []string{"host-devices@linux.resources.devices[1]"},
		},
		{
			name:  "a deny-all after an allow-all wins",
			linux: `"resources":{"devices":[{"allow":true,"access":"rwm"},{"allow":false,"access":"rwm"}]}`,
			not:   []string{"host-devices@linux.resources.devices[0]", "host-devices@linux.resources.devices[1]"},
		},
		{
			name:  "an allow-everything seccomp profile confines nothing",
			linux: `"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}`,
			want:  []string{"seccomp-unconfined@linux.seccomp"},
		},
		{
			name:  "an errno-by-default profile confines",
			linux: `"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`,
			not:   []string{"seccomp-unconfined@linux.seccomp"},
		},
		{
			name:  "extra host devices",
			linux: `"devices":[{"path":"/dev/null","type":"c","major":1,"minor":3},{"path":"/dev/kvm","type":"c","major":10,"minor":232}]`,
			want:  []string{"host-devices@linux.devices"},
		},
		{
			name:  "only the default devices",
			linux: `"devices":[{"path":"/dev/null","type":"c","major":1,"minor":3},{"path":"/dev/urandom","type":"c","major":1,"minor":9}]`,
			not:   []string{"host-devices@linux.devices"},
		},
		{
			name:    "no capabilities listed: runc grants none",
			process: `"user":{"uid":1000,"gid":1000},"cwd":"/"`,
			not:     []string{"net-raw@process.capabilities", "caps-drop-all@process.capabilities"},
		},
		{
			name:    "a supplementary root group",
			process: `"user":{"uid":1000,"gid":1000,"additionalGids":[4,0]},"cwd":"/"`,
			want:    []string{"root-group@process.user.additionalGids[1]"},
		},
		{
			name:    "root",
			process: `"user":{"uid":0,"gid":0},"cwd":"/"`,
			want:    []string{"run-as-root@process.user.uid", "root-group@process.user.gid"},
		},
		{
			name:  "shared root propagation and unsafe sysctl",
			linux: `"rootfsPropagation":"rshared","sysctl":{"kernel.sem":"250 32000 100 128"}`,
			want:  []string{"mount-propagation@linux.rootfsPropagation", "sysctls@linux.sysctl[kernel.sem]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			process := tc.process
			if process == "" {
				process = `"user":{"uid":1000,"gid":1000},"cwd":"/","capabilities":{"bounding":["CAP_NET_BIND_SERVICE"]}`
			}
			spec := `{"ociVersion":"1.1.0","process":{` + process + `},"linux":{` + tc.linux + `}}`
			w, err := workload.FromOCI([]byte(spec), "")
			if err != nil {
				t.Fatalf("FromOCI(%s): %v", spec, err)
			}
			got := findings(w)
			for _, f := range tc.want {
				if !has(got, f) {
					t.Errorf("FromOCI(%s) findings = %v, want %s among them", spec, got, f)
				}
			}
			for _, f := range tc.not {
				if has(got, f) {
					t.Errorf("FromOCI(%s) findings = %v, want no %s", spec, got, f)
				}
			}
		})
	}
}

func TestEngine(t *testing.T) {
	tests := []struct {
		name        string
		annotations string
		engine      string
		want        string
		wantPID     string // Prisma ID of host-pid for a spec without a pid namespace
	}{
		{"plain runc is reported like CRI", `{}`, workload.EngineOf("runc"), compliance.EngineContainerd, "5515"},
		{"docker's containers get docker IDs", `{}`, workload.EngineOf("docker"), compliance.EngineDocker, "515"},
		{"CRI annotations mean containerd", `{"io.kubernetes.cri.container-name":"web"}`, "", compliance.EngineContainerd, "5515"},
		{"CRI-O annotations", `{"io.kubernetes.cri-o.ContainerName":"web"}`, "", compliance.EngineCRIO, "5515"},
		{"nerdctl", `{"nerdctl/name":"web"}`, "", compliance.EngineContainerd, "5515"},
		{"unknown", `{}`, "", "", "515"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := `{"ociVersion":"1.1.0","process":{"user":{"uid":0,"gid":0},"cwd":"/"},"annotations":` + tc.annotations + `,"linux":{"namespaces":[{"type":"network"}]}}`
			w, err := workload.FromOCI([]byte(spec), tc.engine)
			if err != nil {
				t.Fatal(err)
			}
			if w.Source.Engine != tc.want {
				t.Errorf("FromOCI(annotations %s, engine %q) engine = %q, want %q", tc.annotations, tc.engine, w.Source.Engine, tc.want)
			}
			fs := compliance.Evaluate(w, compliance.Options{Checks: []string{"host-pid"}})
			if len(fs) != 1 || fs[0].PrismaID != tc.wantPID {
				t.Errorf("Evaluate(host-pid) = %+v, want one finding with ID %s", fs, tc.wantPID)
			}
		})
	}
}

func TestDockerSecurityOpt(t *testing.T) {
	tests := []struct {
		opts      string
		priv      bool
		wantNNP   bool
		wantSecc  bool
		wantLabel string
	}{
		{`null`, false, false, true, ""},
		{`["no-new-privileges"]`, false, true, true, ""},
		{`["no-new-privileges:true"]`, false, true, true, ""},
		{`["no-new-privileges=false"]`, false, false, true, ""},
		{`["seccomp=unconfined"]`, false, false, false, ""},
		{`["seccomp:unconfined"]`, false, false, false, ""},
		{`["seccomp=/etc/docker/seccomp.json"]`, false, false, true, ""},
		{`["label=type:svirt_apache_t"]`, false, false, true, "type:svirt_apache_t"},
		{`["label=disable"]`, false, false, true, ""},
		{`null`, true, false, false, ""},
	}
	for _, tc := range tests {
		in := `{"Id":"x","Name":"/c","Config":{"Image":"busybox:1.36"},"HostConfig":{"Privileged":` + map[bool]string{true: "true", false: "false"}[tc.priv] + `,"SecurityOpt":` + tc.opts + `}}`
		ws, err := workload.FromDockerInspect([]byte(in))
		if err != nil {
			t.Fatalf("FromDockerInspect(%s): %v", in, err)
		}
		r := ws[0].Runtime
		if r.NoNewPrivileges.Value != tc.wantNNP || r.Seccomp.Value != tc.wantSecc || r.SELinuxLabel.Value != tc.wantLabel {
			t.Errorf("FromDockerInspect(SecurityOpt %s, privileged %v) = no-new-privs %v, seccomp %v, label %q; want %v, %v, %q",
				tc.opts, tc.priv, r.NoNewPrivileges.Value, r.Seccomp.Value, r.SELinuxLabel.Value, tc.wantNNP, tc.wantSecc, tc.wantLabel)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) error
		in    string
		want  string
	}{
		{"oci: empty", ociErr, ``, "not a JSON object"},
		{"oci: an array", ociErr, `[{}]`, "not a JSON object"},
		{"oci: trailing data", ociErr, `{"ociVersion":"1.0.0"} {}`, "data after the object"},
		{"oci: wrong type", ociErr, `{"process":{"user":{"uid":"root"}}}`, "cannot unmarshal"},
		{"docker: not JSON", dockerErr, `hello`, "neither an array nor an object"},
		{"docker: an image", dockerErr, `[{"Id":"sha256:x","RepoTags":["a:1"],"Config":{}}]`, "not a container"},
		{"docker: bad element", dockerErr, `[{"Id":"a","Config":{},"HostConfig":{}}, 7]`, "element 1"},
		{"docker: trailing", dockerErr, `[] []`, "data after the array"},
		{"image: two images", imageErr, `[{"Config":{}},{"Config":{}}]`, "has 2 images"},
		{"image: a string", imageErr, `"x"`, "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse([]byte(tc.in))
			if err == nil || !errors.Is(err, workload.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parse(%q) = %v, want an ErrInvalid mentioning %q", tc.in, err, tc.want)
			}
		})
	}
}

func ociErr(b []byte) error    { _, err := workload.FromOCI(b, ""); return err }
func dockerErr(b []byte) error { _, err := workload.FromDockerInspect(b); return err }
func imageErr(b []byte) error  { _, err := workload.FromImageConfig(b); return err }

// seeds adds every testdata input of dir to f's corpus.
func seeds(f *testing.F, dir string) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	for _, file := range files {
		if strings.HasSuffix(file, ".want.json") {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// evaluate checks what every parser promises on success: a Runtime, and
// findings that name where they come from.
func evaluate(t *testing.T, w compliance.Workload) {
	if w.Runtime == nil {
		t.Fatal("a parsed workload has no Runtime")
	}
	for _, f := range compliance.Evaluate(w, compliance.Options{}) {
		if len(f.Paths) == 0 {
			t.Errorf("finding %s has no path", f.Check)
		}
	}
}

func FuzzFromOCI(f *testing.F) {
	seeds(f, "oci")
	f.Add([]byte(`{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}],"resources":{"devices":[{"allow":true}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := workload.FromOCI(data, "")
		if err != nil {
			return
		}
		evaluate(t, w)
	})
}

func FuzzFromDockerInspect(f *testing.F) {
	seeds(f, "docker")
	f.Add([]byte(`{"Config":{"ExposedPorts":{"22":{}}},"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"x"}]},"SecurityOpt":["label:"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, err := workload.FromDockerInspect(data)
		if err != nil {
			return
		}
		for _, w := range ws {
			evaluate(t, w)
		}
	})
}

func FuzzFromImageConfig(f *testing.F) {
	seeds(f, "image")
	f.Add([]byte(`[{"Config":{"User":"0","Healthcheck":{"Test":[]}}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := workload.FromImageConfig(data)
		if err != nil {
			return
		}
		evaluate(t, w)
	})
}

// TestRuntimeManagedMounts: the files the kubelet and Docker mount into
// every container from its own directory are not sensitive host mounts;
// the same paths of another pod or container, or elsewhere, are.
func TestRuntimeManagedMounts(t *testing.T) {
	const uid = "5d0c3a8e-1b2f-4c7d-9e6a-0f1b2c3d4e5f"
	const id = "4f66ad9a0b2e8c3d1f5a7b9c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e"
	tests := []struct {
		name  string
		mount string
		want  bool // reported as a sensitive mount
	}{
		{"the pod's own hosts file", `{"destination":"/etc/hosts","type":"bind","source":"/var/lib/kubelet/pods/` + uid + `/etc-hosts","options":["rbind","rw"]}`, false},
		{"the pod's own secret volume", `{"destination":"/var/run/secrets/kubernetes.io/serviceaccount","type":"bind","source":"/var/lib/kubelet/pods/` + uid + `/volumes/kubernetes.io~projected/kube-api-access-7xk2p","options":["rbind","ro"]}`, false},
		{"another pod's directory", `{"destination":"/x","type":"bind","source":"/var/lib/kubelet/pods/0000/volumes","options":["rbind","rw"]}`, true},
		{"the kubelet's directory", `{"destination":"/kubelet","type":"bind","source":"/var/lib/kubelet","options":["rbind","rw"]}`, true},
		{"docker's resolv.conf", `{"destination":"/etc/resolv.conf","type":"bind","source":"/var/lib/docker/containers/` + id + `/resolv.conf","options":["rbind","rprivate"]}`, false},
		{"docker's shm", `{"destination":"/dev/shm","type":"bind","source":"/var/lib/docker/containers/` + id + `/mounts/shm","options":["rbind","rprivate"]}`, false},
		{"docker's files elsewhere", `{"destination":"/x/resolv.conf","type":"bind","source":"/var/lib/docker/containers/` + id + `/resolv.conf","options":["rbind"]}`, true},
		{"a container's whole directory", `{"destination":"/etc/hosts","type":"bind","source":"/var/lib/docker/containers/` + id + `","options":["rbind"]}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := `{"process":{"user":{"uid":1000,"gid":1000},"cwd":"/"},"annotations":{"io.kubernetes.cri.sandbox-uid":"` + uid + `"},"mounts":[` + tc.mount + `]}`
			w, err := workload.FromOCI([]byte(spec), "")
			if err != nil {
				t.Fatal(err)
			}
			got := has(findings(w), "sensitive-mount@mounts[0]")
			if got != tc.want {
				t.Errorf("FromOCI(mount %s): sensitive-mount reported %v, want %v", tc.mount, got, tc.want)
			}
		})
	}
}
