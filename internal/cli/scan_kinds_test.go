package cli

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
)

const scanData = "testdata/scan"

func TestScanRuntimeInputs(t *testing.T) {
	redis, err := os.ReadFile(filepath.Join(scanData, "image", "redis.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind string
		scanCase
	}{
		// OCI: a directory of bundles (the sandbox and the bundle's rootfs
		// left out), one bundle directory, a config.json.
		{"oci", scanCase{name: "bundles", args: []string{"testdata/scan/oci"}, code: 1, golden: "oci.txt"}},
		{"oci", scanCase{name: "bundles json", args: []string{"testdata/scan/oci", "-o", "json", "--severity-threshold", "medium"}, code: 1, golden: "oci.json"}},
		{"oci", scanCase{name: "docker engine sarif", args: []string{"testdata/scan/oci/node-exporter", "--engine", "docker", "-o", "sarif", "--checks", "host-pid,host-network,sensitive-mount"}, code: 1, golden: "oci-docker.sarif"}},
		{"oci", scanCase{name: "junit", args: []string{"testdata/scan/oci/restricted/config.json", "-o", "junit", "--severity-threshold", "low", "--checks", "run-as-root,readonly-rootfs,caps-drop-all,host-userns,host-pid"}, code: 1, golden: "oci-junit.xml"}},
		{"oci", scanCase{name: "a sandbox named", args: []string{"testdata/scan/oci/sandbox/config.json", "testdata/scan/oci/restricted"}, code: 0, golden: "oci-sandbox.txt",
			stderr: []string{"warning: testdata/scan/oci/sandbox/config.json: a pod sandbox (pause container), not scanned"}}},
		{"oci", scanCase{name: "syntax error", args: []string{"testdata/scan/oci-broken.json", "-o", "json"}, code: 2, golden: "oci-broken.json",
			stderr: []string{"bulwarkctl: testdata/scan/oci-broken.json:4: invalid JSON: invalid character '}'"}}},

		// docker inspect: an array of two containers.
		{"docker", scanCase{name: "inspect", args: []string{"testdata/scan/docker/inspect.json"}, code: 1, golden: "docker.txt"}},
		{"docker", scanCase{name: "inspect sarif", args: []string{"testdata/scan/docker/inspect.json", "-o", "sarif", "--severity-threshold", "medium", "--skip", "host-ports"}, code: 1, golden: "docker.sarif"}},
		{"docker", scanCase{name: "an image is no container", args: []string{"testdata/scan/image/redis.json"}, code: 2,
			stderr: []string{"bulwarkctl: testdata/scan/image/redis.json: docker inspect element 0 has no Config or HostConfig"}}},

		// Image configs: a directory, docker image inspect on stdin.
		{"image", scanCase{name: "directory", args: []string{"testdata/scan/image", "--severity-threshold", "low"}, code: 1, golden: "image.txt"}},
		{"image", scanCase{name: "stdin json", args: []string{"-", "-o", "json", "--severity-threshold", "info"}, stdin: string(redis), code: 1, golden: "image-stdin.json"}},
		{"image", scanCase{name: "not JSON", args: []string{"testdata/scan/clean.yaml"}, code: 2,
			stderr: []string{"bulwarkctl: testdata/scan/clean.yaml:1: invalid JSON: invalid character '#' looking for beginning of value"}}},
	}
	for _, tc := range tests {
		t.Run(tc.kind+" "+tc.name, func(t *testing.T) { checkScan(t, tc.kind, tc.scanCase, goldenDir) })
	}
}

// hostRoot copies testdata/scan/host to dir/host with the modes a host
// would have (git keeps none) and daemon.json writable by everyone, and
// an /etc/passwd and /etc/group that name this test's user and group root.
func hostRoot(t *testing.T, dir string) {
	t.Helper()
	src := filepath.Join(scanData, "host")
	root := filepath.Join(dir, "host")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			return os.Chmod(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		return os.Chmod(dst, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"passwd": fmt.Sprintf("root:x:%d:%d:root:/root:/bin/bash\n", os.Getuid(), os.Getgid()),
		"group":  fmt.Sprintf("root:x:%d:\n", os.Getgid()),
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "etc", "docker", "daemon.json"), 0o666); err != nil {
		t.Fatal(err)
	}
}

// TestScanHost scans a host tree by a relative root, from the directory
// that holds it, so that the reports' paths do not depend on where the
// test runs.
func TestScanHost(t *testing.T) {
	golden, err := filepath.Abs(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostRoot(t, dir)
	t.Chdir(dir)
	tests := []scanCase{
		{name: "table", args: []string{"host", "--severity-threshold", "low"}, code: 1, golden: "host.txt"},
		{name: "json", args: []string{"host", "-o", "json"}, code: 1, golden: "host.json"},
		{name: "sarif", args: []string{"host", "-o", "sarif", "--severity-threshold", "medium"}, code: 1, golden: "host.sarif"},
		{name: "junit", args: []string{"host", "-o", "junit", "--checks", "docker-tls,docker-icc,kubelet-anon-auth,8215"}, code: 1, golden: "host-junit.xml"},
		{name: "clean at critical without the kubelet", args: []string{"host", "--severity-threshold", "critical", "--skip", "kubelet-anon-auth"}, code: 0, golden: "host-clean.txt"},
		{name: "a file is no root", args: []string{"host/etc/hostname"}, code: 2, stderr: []string{"bulwarkctl: scan host/etc/hostname: not a directory (the host's root)"}},
		{name: "no root", args: []string{"nope"}, code: 2, stderr: []string{"bulwarkctl: scan nope: no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkScan(t, "host", tc, golden) })
	}

	// A daemon.json that does not parse: the other files are still read,
	// and the error names the file.
	if err := os.WriteFile(filepath.Join("host", "etc", "docker", "daemon.json"), []byte("{\"icc\": tru\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, scanEnv(), "", "scan", "host", "host", "-o", "json")
	var rep scanReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, stderr %q: %v", r.code, r.stderr, err)
	}
	if r.code != exitUsage || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Message, "/etc/docker/daemon.json") || rep.Summary.Failing == 0 {
		t.Errorf("scan of a host with a broken daemon.json: exit %d, errors %+v, %d findings; want 2, the file named, the other findings", r.code, rep.Errors, rep.Summary.Failing)
	}
}

// customFindings are the findings of custom checks (IDs from 9000).
func customFindings(fs []scanFinding) []scanFinding {
	return slices.DeleteFunc(slices.Clone(fs), func(f scanFinding) bool {
		id, err := strconv.Atoi(f.ID)
		return err != nil || id < 9000
	})
}

func TestScanCustomChecks(t *testing.T) {
	tests := []struct {
		kind string
		scanCase
	}{
		{"k8s", scanCase{name: "json", args: []string{repo, "--custom-checks", "testdata/scan/custom", "--custom-checks", "testdata/scan/custom-export.json", "--severity-threshold", "medium", "--checks", "9000,no-docker-hub,memory-limits,privileged", "-o", "json"}, code: 1, golden: "custom-k8s.json"}},
		{"k8s", scanCase{name: "sarif", args: []string{repo, "--custom-checks", "testdata/scan/custom", "--checks", "plaintext-secrets,no-docker-hub,host-pid", "-o", "sarif"}, code: 1, golden: "custom-k8s.sarif"}},
		{"docker", scanCase{name: "json", args: []string{"testdata/scan/docker/inspect.json", "--custom-checks", "testdata/scan/custom", "--checks", "9000,9001", "-o", "json"}, code: 1, golden: "custom-docker.json"}},
		{"oci", scanCase{name: "sarif", args: []string{"testdata/scan/oci", "--custom-checks", "testdata/scan/custom/plaintext-secrets.rego", "--checks", "plaintext-secrets", "-o", "sarif"}, code: 1, golden: "custom-oci.sarif"}},
		{"image", scanCase{name: "table", args: []string{"testdata/scan/image", "--custom-checks", "testdata/scan/custom", "--skip", "image-run-as-root"}, code: 1, golden: "custom-image.txt"}},
	}
	for _, tc := range tests {
		t.Run(tc.kind+" "+tc.name, func(t *testing.T) {
			checkScan(t, tc.kind, tc.scanCase, goldenDir)
			args := slices.Clone(tc.args)
			if i := slices.Index(args, "-o"); i >= 0 {
				args[i+1] = "json"
			} else {
				args = append(args, "-o", "json")
			}
			r := run(t, scanEnv(), "", append([]string{"scan", tc.kind}, args...)...)
			var rep scanReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("exit %d, stderr %q: %v", r.code, r.stderr, err)
			}
			custom := customFindings(rep.Findings)
			if len(custom) == 0 {
				t.Fatalf("scan %s %q found nothing by custom checks: %+v", tc.kind, tc.args, rep.Findings)
			}
			for _, f := range custom {
				if f.Name != f.ID+" - "+f.Title || f.Check == "" || f.Message == "" || f.Line < 1 {
					t.Errorf("custom finding %+v: want a name from its ID and title, a check, a message and a line", f)
				}
				if f.Check == "always-fails" {
					t.Errorf("the disabled check of the export ran: %+v", f)
				}
			}
		})
	}
}

// TestScanCustomChecksSARIF checks that the SARIF rules of custom checks
// carry their ID, severity and remediation, tagged custom.
func TestScanCustomChecksSARIF(t *testing.T) {
	r := run(t, scanEnv(), "", "scan", "docker", "testdata/scan/docker/inspect.json", "--custom-checks", "testdata/scan/custom", "-o", "sarif")
	log, err := sarif.FromString(r.stdout)
	if err != nil {
		t.Fatalf("exit %d, stderr %q: %v", r.code, r.stderr, err)
	}
	rules := map[string]*sarif.ReportingDescriptor{}
	for _, rule := range log.Runs[0].Tool.Driver.Rules {
		rules[*rule.ID] = rule
	}
	hub := rules["no-docker-hub"]
	if hub == nil {
		t.Fatalf("no rule for the custom check no-docker-hub among %d rules", len(rules))
	}
	if got := *hub.ShortDescription.Text; got != "9001 - Images come from our registries" {
		t.Errorf("rule no-docker-hub short description %q, want its ID and title", got)
	}
	if !strings.Contains(*hub.Help.Text, "Remediation: Push the image to registry.acme.example") {
		t.Errorf("rule no-docker-hub help %q lacks the remediation", *hub.Help.Text)
	}
	if tags := hub.Properties.Tags; !slices.Contains(tags, "custom") || !slices.Contains(tags, "containers") {
		t.Errorf("rule no-docker-hub tags %v, want custom and containers", tags)
	}
	found := false
	for _, res := range log.Runs[0].Results {
		if *res.RuleID == "no-docker-hub" {
			found = true
			if loc := res.Locations[0].PhysicalLocation; *loc.ArtifactLocation.URI != "testdata/scan/docker/inspect.json" || *loc.Region.StartLine != 219 {
				t.Errorf("no-docker-hub result at %s:%d, want the line of Config.Image, 219", *loc.ArtifactLocation.URI, *loc.Region.StartLine)
			}
		}
	}
	if !found {
		t.Error("no SARIF result from the custom check no-docker-hub")
	}
}

func TestScanCustomChecksErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const deny = "\ndeny contains \"x\" if false\n"
	noMeta := write("nometa/a.rego", "package a\n"+deny)
	both := write("both/b.rego", "# METADATA\n# custom:\n#   severity: low\npackage b\n"+deny)
	write("both/b.yaml", "severity: low\n")
	typo := write("typo/c.rego", "package c\n"+deny)
	write("typo/c.yaml", "severty: low\n")
	dupA := write("dup/a.rego", "# METADATA\n# custom:\n#   id: 9005\n#   severity: low\npackage a\n"+deny)
	write("dup/b.rego", "# METADATA\n# custom:\n#   id: 9005\n#   severity: low\npackage b\n"+deny)
	badID := write("range/d.rego", "# METADATA\n# custom:\n#   id: 42\n#   severity: low\npackage d\n"+deny)
	notJSON := write("notes.txt", "just notes\n")
	unknown := write("export.json", `[{"_id": 9000, "name": "x", "title": "x", "type": "rego", "script": "package x", "severity": "low", "colour": "red"}]`)
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"does not compile", "testdata/scan/custom-broken", []string{"testdata/scan/custom-broken/bad.rego: line 9: rego_parse_error: unexpected eof token"}},
		{"no metadata", noMeta, []string{noMeta + ": no metadata: give the check's severity"}},
		{"metadata twice", both, []string{both + ": has a METADATA comment and a sidecar b.yaml"}},
		{"a sidecar with an unknown key", typo, []string{typo + ": c.yaml: ", `unknown field "severty"`}},
		{"an ID twice", filepath.Dir(dupA), []string{"id 9005 is also " + dupA + "'s"}},
		{"an ID out of range", badID, []string{badID + ": invalid custom check: check 42 \"d\": id 42 is outside the custom check range 9000-9999"}},
		{"neither rego nor JSON", notJSON, []string{notJSON + ": not a .rego file nor exported custom checks (JSON)"}},
		{"an export with an unknown field", unknown, []string{unknown + ": ", `unknown field "colour"`}},
		{"a directory without checks", empty, []string{empty + ": no *.rego files"}},
		{"missing", "testdata/scan/nope", []string{"testdata/scan/nope: no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, scanEnv(), "", "scan", "k8s", "--custom-checks", tc.path, repo)
			if r.code != exitUsage || r.stdout != "" {
				t.Errorf("scan k8s --custom-checks %s: exit %d, stdout %q; want 2 and no report", tc.path, r.code, r.stdout)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr = %q, want it to contain %q", r.stderr, want)
				}
			}
		})
	}
}

func TestScanKindsUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"engine", []string{"scan", "oci", "--engine", "podman", "x"}, "--engine must be runc, containerd, cri-o or docker"},
		{"a check for manifests only", []string{"scan", "docker", "--checks", "hostpath", "x"}, `--checks: check "hostpath" does not apply to docker inspect output`},
		{"a runtime check on images", []string{"scan", "image", "--skip", "privileged", "x"}, `--skip: check "privileged" does not apply to image configs`},
		{"a check that needs events", []string{"scan", "host", "--checks", "exec-root"}, `--checks: check "exec-root" is not evaluated from configuration`},
		{"a catalog check on hosts", []string{"scan", "host", "--checks", "host-pid"}, `check "host-pid" does not apply to hosts`},
		{"an unknown check", []string{"scan", "image", "--checks", "nope", "x"}, `no check "nope" in the catalog ('bulwarkctl scan image --help' lists them)`},
		{"no path", []string{"scan", "docker"}, "expected PATH"},
		{"two roots", []string{"scan", "host", "/", "/tmp"}, "expected at most one ROOT"},
		{"a host from stdin", []string{"scan", "host", "-"}, "not from standard input"},
		{"no custom checks for hosts", []string{"scan", "host", "--custom-checks", "x"}, "unknown flag: --custom-checks"},
		{"no PSS for containers", []string{"scan", "oci", "--pss-level", "restricted", "x"}, "unknown flag: --pss-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, baseEnv(t), "", tc.args...)
			if r.code != exitUsage {
				t.Errorf("Execute(%q) = %d, want %d; stderr:\n%s", tc.args, r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--help") {
				t.Errorf("Execute(%q) stderr = %q, want it to contain %q and point to --help", tc.args, r.stderr, tc.want)
			}
		})
	}
}

func TestScanKindsHelp(t *testing.T) {
	tests := []struct {
		kind string
		want []string
	}{
		{"k8s", []string{"--custom-checks", "# METADATA", "bulwarkctl scan k8s --custom-checks policy/ deploy/"}},
		{"oci", []string{"Examples:", "--engine", "--custom-checks", "host-pid             5515  high", "pids-limit", "/run/containerd/io.containerd.runtime.v2.task/k8s.io", "Exit codes"}},
		{"docker", []string{"Examples:", "docker inspect $(docker ps -q) | bulwarkctl scan docker -", "host-pid             515   high", "restart-policy", "--custom-checks"}},
		{"image", []string{"Examples:", "docker image inspect", "image-run-as-root    41    high", "--custom-checks"}},
		{"host", []string{"Examples:", "/proc/1/root", "docker-icc", "kubelet-anon-auth    8212  critical", "--severity-threshold", "--checks", "--skip"}},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			r := run(t, scanEnv(), "", "scan", tc.kind, "--help")
			if r.code != 0 {
				t.Fatalf("scan %s --help exit %d: %s", tc.kind, r.code, r.stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("scan %s --help lacks %q", tc.kind, want)
				}
			}
			if tc.kind == "host" && strings.Contains(r.stdout, "exec-root") {
				t.Error("scan host --help lists exec-root, which needs runtime events")
			}
			if tc.kind != "k8s" && strings.Contains(r.stdout, "--pss-level") {
				t.Errorf("scan %s --help offers --pss-level", tc.kind)
			}
		})
	}
	r := run(t, scanEnv(), "", "scan", "--help")
	for _, kind := range []string{"k8s", "oci", "docker", "image", "host"} {
		if !strings.Contains(r.stdout, "  "+kind+" ") {
			t.Errorf("scan --help does not list %s", kind)
		}
	}
}

func TestIndexJSON(t *testing.T) {
	doc := `{
  "process": {
    "user": {"uid": 0},
    "env": [
      "A=1",
      "B=2"
    ]
  },
  "linux": {
    "sysctl": {
      "net.ipv4.ip_forward": "1"
    },
    "namespaces": [
      {"type": "pid"},
      {
        "type": "network",
        "path": "/proc/1/ns/net"
      }
    ]
  },
  "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
}`
	x, err := indexJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		base, path string
		want       int
	}{
		{"", "process.user.uid", 3},
		{"", "process.env[1]", 6},
		{"", "process.noNewPrivileges", 2}, // absent: its parent
		{"", "linux.sysctl[net.ipv4.ip_forward]", 11},
		{"", `linux.sysctl["net.ipv4.ip_forward"]`, 11},
		{"", "linux.namespaces", 13},
		{"", "linux.namespaces[1].path", 17},
		{"", "linux.namespaces[7]", 13},
		{"", "linux.seccomp", 9},
		{"", "hostconfig.portbindings[80/tcp][0]", 21}, // keys without case, as encoding/json decodes
		{"", "nothing.at.all", 1},
		{"", "", 1},
		{"[3]", "process", 1}, // not an array
	}
	for _, tc := range tests {
		if got := x.line(tc.base, tc.path); got != tc.want {
			t.Errorf("line(%q, %q) = %d, want %d", tc.base, tc.path, got, tc.want)
		}
	}

	arr, err := indexJSON([]byte("[\n  {\"Id\": \"a\",\n   \"Config\": {\"User\": \"\"}},\n  {\n    \"Id\": \"b\"\n  }\n]"))
	if err != nil {
		t.Fatal(err)
	}
	if !arr.array || arr.line("[0]", "Config.User") != 3 || arr.line("[1]", "") != 4 || arr.line("[1]", "Config.User") != 4 {
		t.Errorf("array index: array %v, [0] Config.User at %d, [1] at %d, [1] Config.User at %d; want true, 3, 4, 4",
			arr.array, arr.line("[0]", "Config.User"), arr.line("[1]", ""), arr.line("[1]", "Config.User"))
	}

	for _, bad := range []string{"{\n  \"a\": 1,\n}", "{\"a\": [1, 2}", "{"} {
		if _, err := indexJSON([]byte(bad)); err == nil {
			t.Errorf("indexJSON(%q) = nil error, want a syntax error", bad)
		}
	}
}

func TestSplitKeyPath(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"HostConfig.PortBindings[443/tcp][0]", []string{"hostconfig", "portbindings", "443/tcp", "0"}},
		{"annotations[io.kubernetes.cri.image-name]", []string{"annotations", "io.kubernetes.cri.image-name"}},
		{`metadata.annotations["a.b/c]"]`, []string{"metadata", "annotations", "a.b/c]"}},
		{"[2].Config", []string{"2", "config"}},
		{"a[unclosed", []string{"a", "unclosed"}},
		{"", nil},
	}
	for _, tc := range tests {
		if got := splitKeyPath(tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("splitKeyPath(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func FuzzIndexJSON(f *testing.F) {
	for _, seed := range []struct{ doc, path string }{
		{`{"linux": {"namespaces": [{"type": "pid"}]}}`, "linux.namespaces[0].type"},
		{"[\n{\"Config\": {\"Env\": [\"A=1\"]}}\n]", "[0].Config.Env[0]"},
		{`{"a": {"b.c": 1}}`, `a["b.c"]`},
		{`{"a": 1,}`, "a"},
		{`"scalar"`, "x"},
		{"", "[]]..["},
	} {
		f.Add([]byte(seed.doc), seed.path)
	}
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		x, err := indexJSON(doc)
		if err != nil && json.Valid(doc) {
			t.Errorf("indexJSON(%q) = %v for valid JSON", doc, err)
		}
		lines := strings.Count(string(doc), "\n") + 1
		for _, base := range []string{"", "[0]"} {
			if got := x.line(base, path); got < 1 || got > lines {
				t.Errorf("indexJSON(%q).line(%q, %q) = %d, want 1..%d", doc, base, path, got, lines)
			}
		}
	})
}

// TestScanCustomCheckFailsAtRunTime: a check that compiles but cannot be
// evaluated on an input is an error naming the input and the check (exit
// 2); the other checks' findings are still reported.
func TestScanCustomCheckFailsAtRunTime(t *testing.T) {
	dir := t.TempDir()
	module := "# METADATA\n# custom:\n#   id: 9050\n#   severity: high\npackage numbers\n\ndeny contains 42 if input.runtime\n"
	if err := os.WriteFile(filepath.Join(dir, "numbers.rego"), []byte(module), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, scanEnv(), "", "scan", "docker", "--custom-checks", dir, "-o", "json", "testdata/scan/docker/inspect.json")
	var rep scanReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, stderr %q: %v", r.code, r.stderr, err)
	}
	want := `evaluate check 9050 "numbers": deny element 0 is a number; want a string or an object with msg`
	if r.code != exitUsage || len(rep.Errors) != 2 || rep.Errors[0].File != "testdata/scan/docker/inspect.json" || rep.Errors[0].Message != want {
		t.Errorf("exit %d, errors %+v; want 2 and one error per container: %q", r.code, rep.Errors, want)
	}
	if rep.Summary.Failing == 0 {
		t.Error("the catalog's findings are missing")
	}
	if !strings.Contains(r.stderr, "bulwarkctl: testdata/scan/docker/inspect.json:2: "+want) {
		t.Errorf("stderr = %q, want the error at the container's line", r.stderr)
	}
}
