package k8s_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	psaapi "k8s.io/pod-security-admission/api"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

func decodeFile(t *testing.T, file string) []k8s.Object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := k8s.Decode(file, data)
	if err != nil {
		t.Fatalf("Decode(%s): %v", file, err)
	}
	return objs
}

func hostNamespaceFindings(fs []compliance.Finding) []string {
	var out []string
	for _, f := range fs {
		if slices.Contains([]string{"host-network", "host-pid", "host-ipc", "host-uts", "host-userns"}, f.Check) {
			out = append(out, f.String())
		}
	}
	return out
}

// TestSeedDefenderDaemonSet is the seed's acceptance test: Bulwark's own
// Defender DaemonSet, read from YAML, shows 5515 and 5059 when the built-in
// rule that ignores Bulwark's components is disabled, and neither when it is
// first and enabled.
func TestSeedDefenderDaemonSet(t *testing.T) {
	objs := decodeFile(t, filepath.Join("testdata", "defender-daemonset.yaml"))
	if len(objs) != 1 {
		t.Fatalf("Decode(defender-daemonset.yaml) = %d objects, want the DaemonSet alone (Namespace and ServiceAccount skipped)", len(objs))
	}
	w := objs[0].Workload
	if got := w.Source.Object; got != (compliance.Object{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "bulwark-defender", Namespace: "bulwark"}) {
		t.Fatalf("Decode(defender-daemonset.yaml) object = %+v", got)
	}
	opts := compliance.Options{Evaluators: []compliance.Evaluator{k8s.PSS(psaapi.LevelBaseline, psaapi.LatestVersion())}}

	rules := compliance.DefaultRules()
	if rules[0].Name != compliance.RuleIgnoreBulwark {
		t.Fatalf("DefaultRules()[0] = %q, want %q first", rules[0].Name, compliance.RuleIgnoreBulwark)
	}
	rules[0].Disabled = true
	want := []string{
		"5059 - Do not share the host's network namespace",
		"5515 - Do not share the host's process namespace",
	}
	if diff := cmp.Diff(want, hostNamespaceFindings(compliance.Apply(rules, w, opts))); diff != "" {
		t.Errorf("Apply(%q disabled) host-namespace findings (-want +got):\n%s", compliance.RuleIgnoreBulwark, diff)
	}

	if got := hostNamespaceFindings(compliance.Apply(compliance.DefaultRules(), w, opts)); len(got) != 0 {
		t.Errorf("Apply(default rules) host-namespace findings = %q, want none for Bulwark's Defender", got)
	}
}

// podWith is a Pod whose pod, container, init container and ephemeral
// container security contexts get the YAML given for each (indented for
// its place), or nothing.
func podWith(pod, container, initContainer, ephemeral string) string {
	sc := func(indent, body string) string {
		if body == "" {
			return ""
		}
		return "\n" + indent + "securityContext:\n" + indent + "  " + body
	}
	return `apiVersion: v1
kind: Pod
metadata: {name: win}
spec:` + sc("  ", pod) + `
  containers:
    - name: app
      image: app:1` + sc("      ", container) + `
  initContainers:
    - name: init
      image: init:1` + sc("      ", initContainer) + `
  ephemeralContainers:
    - name: debug
      image: debug:1` + sc("      ", ephemeral) + "\n"
}

// TestDisallowHostProcess is the seed's "Disallow Host Process" control: a
// hardened Deployment and pods that leave hostProcess unset or false pass;
// hostProcess: true fails in each of the four places it can be set, in the
// windows-hostprocess check and in the PSS baseline.
func TestDisallowHostProcess(t *testing.T) {
	const on, off = "windowsOptions: {hostProcess: true}", "windowsOptions: {hostProcess: false}"
	hardened, err := os.ReadFile(filepath.Join("testdata", "decode", "deployment-hardened.txt"))
	if err != nil {
		t.Fatal(err)
	}
	_, manifest, _ := strings.Cut(string(hardened), "-- web.yaml --\n")
	manifest, _, _ = strings.Cut(manifest, "\n-- ")
	tests := []struct {
		name     string
		manifest string
		want     []string // windows-hostprocess paths
	}{
		{"hardened deployment", manifest, nil},
		{"unset", podWith("", "", "", ""), nil},
		{"false everywhere", podWith(off, off, off, off), nil},
		{"pod", podWith(on, "", "", ""), []string{"spec.securityContext.windowsOptions.hostProcess"}},
		{"container", podWith("", on, "", ""), []string{"spec.containers[0].securityContext.windowsOptions.hostProcess"}},
		{"init container", podWith("", "", on, ""), []string{"spec.initContainers[0].securityContext.windowsOptions.hostProcess"}},
		{"ephemeral container", podWith("", "", "", on), []string{"spec.ephemeralContainers[0].securityContext.windowsOptions.hostProcess"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := k8s.Decode("pod.yaml", []byte(tc.manifest))
			if err != nil || len(objs) != 1 {
				t.Fatalf("Decode = %d objects, %v; want 1", len(objs), err)
			}
			var paths, pss []string
			opts := compliance.Options{
				Checks:     []string{"windows-hostprocess", k8s.CheckPSSBaseline},
				Evaluators: []compliance.Evaluator{k8s.PSS(psaapi.LevelBaseline, psaapi.LatestVersion())},
			}
			for _, f := range compliance.Evaluate(objs[0].Workload, opts) {
				switch f.Check {
				case "windows-hostprocess":
					paths = append(paths, f.Paths...)
				case k8s.CheckPSSBaseline:
					pss = append(pss, f.Message)
				}
			}
			if diff := cmp.Diff(tc.want, paths); diff != "" {
				t.Errorf("windows-hostprocess paths (-want +got):\n%s", diff)
			}
			hostProcess := slices.ContainsFunc(pss, func(m string) bool { return strings.HasPrefix(m, "HostProcess: ") })
			if hostProcess != (tc.want != nil) {
				t.Errorf("PSS baseline findings %q: HostProcess reported %v, want %v", pss, hostProcess, tc.want != nil)
			}
		})
	}
}
