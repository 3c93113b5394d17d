package deploy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"bulwark/api"
	"bulwark/internal/cli"
	"bulwark/internal/compliance"
	"bulwark/internal/console"
	"bulwark/internal/console/consoletest"
	"bulwark/internal/defender"
	"bulwark/internal/k8s"
)

// defenderCapabilities are the capabilities the Defender needs, the one list
// that the DaemonSet, the systemd unit and the seed's DaemonSet in
// internal/k8s are held to.
var defenderCapabilities = defender.Capabilities()

const (
	k8sDir         = "kubernetes"
	systemdDir     = "systemd"
	defenderName   = "bulwark-defender"
	consoleName    = "bulwark-console"
	bundleSecret   = "bulwark-defender-bundles"
	nodeNameEnv    = "NODE_NAME"
	defenderState  = "/var/lib/bulwark-defender"
	probePath      = "/api/v1/_ping"
	kustomizeFile  = "kustomization.yaml"
	bulwarkNS      = "bulwark"
	ignoreRuleName = compliance.RuleIgnoreBulwark
)

// kinds are the objects deploy/kubernetes may hold, by apiVersion and kind.
// Another kind is an error until it is added here.
var kinds = map[string]func() any{
	"v1/Namespace":        func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":   func() any { return &corev1.ServiceAccount{} },
	"v1/Service":          func() any { return &corev1.Service{} },
	"apps/v1/StatefulSet": func() any { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":   func() any { return &appsv1.DaemonSet{} },
}

// decodeStrict decodes one YAML document as the API server does, but
// refusing what it would drop or warn about: unknown fields (a typo such as
// hostPid), duplicate keys, and fields in the wrong case.
func decodeStrict(doc []byte) (any, error) {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, err
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, errors.New("unexpected apiVersion/kind " + tm.APIVersion + "/" + tm.Kind + " (add it to kinds)")
	}
	obj := newObj()
	strict, err := k8sjson.UnmarshalStrict(data, obj)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return obj, nil
}

// documents splits a YAML stream into its non-empty documents.
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		if v != nil {
			out = append(out, doc)
		}
	}
}

// manifests are the objects of deploy/kubernetes, strictly decoded.
type manifests struct {
	files     []string // the YAML files but the kustomization, sorted
	objects   []any
	console   *appsv1.StatefulSet
	defender  *appsv1.DaemonSet
	services  []*corev1.Service
	namespace *corev1.Namespace
}

func loadManifests(t testing.TB) manifests {
	t.Helper()
	var m manifests
	entries, err := os.ReadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == kustomizeFile || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		file := filepath.Join(k8sDir, e.Name())
		m.files = append(m.files, e.Name())
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := documents(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for i, doc := range docs {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Fatalf("%s: document %d: %v", file, i+1, err)
			}
			m.objects = append(m.objects, obj)
			switch o := obj.(type) {
			case *appsv1.StatefulSet:
				if o.Name == consoleName {
					m.console = o
				}
			case *appsv1.DaemonSet:
				if o.Name == defenderName {
					m.defender = o
				}
			case *corev1.Service:
				m.services = append(m.services, o)
			case *corev1.Namespace:
				m.namespace = o
			}
		}
	}
	sort.Strings(m.files)
	if m.console == nil || m.defender == nil || m.namespace == nil {
		t.Fatalf("%s: want the Namespace, the StatefulSet %s and the DaemonSet %s", k8sDir, consoleName, defenderName)
	}
	return m
}

// TestStrictDecoding proves that the decoder refuses what the API server
// would silently drop, so that TestManifests' decoding means something.
func TestStrictDecoding(t *testing.T) {
	tests := []struct {
		name, doc string
		ok        bool
	}{
		{"valid", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", true},
		{"unknown field", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec: {hostPid: true}\n", false},
		{"wrong case", "apiVersion: v1\nkind: Namespace\nMetadata: {name: x}\n", false},
		{"duplicate key", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, name: y}\n", false},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tc.doc))
			if (err == nil) != tc.ok {
				t.Errorf("decodeStrict(%q) = %v, want ok %v", tc.doc, err, tc.ok)
			}
		})
	}
}

// TestManifests: every document decodes strictly; the kustomization lists
// every file and image; everything is in the bulwark namespace; Services
// select the Console's pods and name its ports.
func TestManifests(t *testing.T) {
	m := loadManifests(t)

	raw, err := os.ReadFile(filepath.Join(k8sDir, kustomizeFile))
	if err != nil {
		t.Fatal(err)
	}
	var kz struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name   string `json:"name"`
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	data, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		t.Fatalf("%s: %v", kustomizeFile, err)
	}
	if strict, err := k8sjson.UnmarshalStrict(data, &kz); err != nil || len(strict) > 0 {
		t.Fatalf("%s: %v %v", kustomizeFile, err, strict)
	}
	if kz.APIVersion != "kustomize.config.k8s.io/v1beta1" || kz.Kind != "Kustomization" {
		t.Errorf("%s: apiVersion/kind = %s/%s", kustomizeFile, kz.APIVersion, kz.Kind)
	}
	if diff := cmp.Diff(m.files, slices.Sorted(slices.Values(kz.Resources))); diff != "" {
		t.Errorf("%s resources differ from the files in %s (-files +resources):\n%s", kustomizeFile, k8sDir, diff)
	}
	images := map[string]bool{}
	for _, im := range kz.Images {
		images[im.Name+":"+im.NewTag] = true
	}

	for _, obj := range m.objects {
		meta := obj.(metav1.ObjectMetaAccessor).GetObjectMeta()
		if _, ok := obj.(*corev1.Namespace); !ok && meta.GetNamespace() != bulwarkNS {
			t.Errorf("%T %s: namespace %q, want %q", obj, meta.GetName(), meta.GetNamespace(), bulwarkNS)
		}
		if meta.GetLabels()["app.kubernetes.io/part-of"] != "bulwark" {
			t.Errorf("%T %s: no label app.kubernetes.io/part-of=bulwark", obj, meta.GetName())
		}
	}
	for _, spec := range []*corev1.PodTemplateSpec{&m.console.Spec.Template, &m.defender.Spec.Template} {
		for _, c := range spec.Spec.Containers {
			if !images[c.Image] {
				t.Errorf("container %s: image %s is not in %s's images, so 'kustomize edit set image' would miss it", c.Name, c.Image, kustomizeFile)
			}
		}
	}

	// Services select the Console's pods by its labels and forward to its
	// named ports.
	pod := m.console.Spec.Template
	ports := map[string]int32{}
	for _, p := range pod.Spec.Containers[0].Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, svc := range m.services {
		for k, v := range svc.Spec.Selector {
			if pod.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the Console's pods do not carry", svc.Name, k, v)
			}
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := ports[p.TargetPort.String()]; !ok {
				t.Errorf("Service %s port %s: target port %q is not a port of the Console", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if m.console.Spec.ServiceName == "" || !slices.ContainsFunc(m.services, func(s *corev1.Service) bool { return s.Name == m.console.Spec.ServiceName }) {
		t.Errorf("StatefulSet serviceName %q is not one of the Services", m.console.Spec.ServiceName)
	}
	if m.namespace.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("Namespace %s: the Defender needs pod-security.kubernetes.io/enforce=privileged where a cluster enforces baseline", m.namespace.Name)
	}
}

// TestKustomizeBuild renders the directory with kubectl's kustomize, when
// kubectl is installed: the kustomization is valid and renders the same
// objects as the files (the images' tags are already the kustomization's).
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the kustomization is not rendered")
	}
	out, err := exec.CommandContext(t.Context(), kubectl, "kustomize", k8sDir).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("kubectl kustomize %s: %v\n%s", k8sDir, err, ee.Stderr)
	} else if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", k8sDir, err)
	}
	docs, err := documents(out)
	if err != nil {
		t.Fatal(err)
	}
	byName := func(objs []any) map[string]any {
		m := map[string]any{}
		for _, o := range objs {
			m[fmt.Sprintf("%T %s", o, o.(metav1.ObjectMetaAccessor).GetObjectMeta().GetName())] = o
		}
		return m
	}
	var rendered []any
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("kubectl kustomize: document %d: %v", i+1, err)
		}
		rendered = append(rendered, obj)
	}
	if diff := cmp.Diff(byName(loadManifests(t).objects), byName(rendered)); diff != "" {
		t.Errorf("kubectl kustomize renders other objects than the files (-files +rendered):\n%s", diff)
	}
}

// TestDefenderDaemonSet: exactly the six capabilities, ALL dropped, not
// privileged, the host's PID and network namespaces, every node, and no
// writable host path but its state directory.
func TestDefenderDaemonSet(t *testing.T) {
	ds := loadManifests(t).defender
	spec := ds.Spec.Template.Spec
	if !spec.HostPID || !spec.HostNetwork {
		t.Errorf("hostPID %v, hostNetwork %v; want both", spec.HostPID, spec.HostNetwork)
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q: with hostNetwork the Defender resolves the Console's Service only with %s", spec.DNSPolicy, corev1.DNSClusterFirstWithHostNet)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Key == "" && tl.Operator == corev1.TolerationOpExists && tl.Effect == ""
	}) {
		t.Errorf("tolerations %+v: want {operator: Exists}, to run on every node", spec.Tolerations)
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%d containers and %d init containers, want one container", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("the Defender's container has no capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the Defender is privileged")
	}
	if diff := cmp.Diff([]corev1.Capability{"ALL"}, sc.Capabilities.Drop); diff != "" {
		t.Errorf("capabilities.drop (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(defenderCapabilities)), sortedCaps(sc.Capabilities.Add)); diff != "" {
		t.Errorf("capabilities.add (-want +got):\n%s", diff)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the Defender's root file system is writable")
	}
	// The API server refuses allowPrivilegeEscalation=false with SYS_ADMIN.
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation: false with SYS_ADMIN added: the API server refuses the DaemonSet")
	}
	if spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot ||
		sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("the Defender must run as uid 0: Kubernetes gives added capabilities to root only")
	}

	// Host paths: read-only but for the state directory.
	hostPaths := map[string]string{}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	var writable []string
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Errorf("volume mount %s: no such volume", vm.Name)
		}
		if p, ok := hostPaths[vm.Name]; ok && !vm.ReadOnly {
			writable = append(writable, p)
		}
		if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional {
			t.Errorf("volume mount %s: bidirectional propagation", vm.Name)
		}
	}
	if diff := cmp.Diff([]string{defenderState}, writable); diff != "" {
		t.Errorf("writable host paths (-want +got):\n%s", diff)
	}

	// Flags: the binary's configuration accepts them, and the bundle and
	// state directories are the mounts.
	cfg := defenderConfig(t, c.Args)
	if err := cfg.Validate(); err != nil {
		t.Errorf("the DaemonSet's args do not make a valid Defender configuration: %v", err)
	}
	if cfg.StateDir != defenderState || !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.MountPath == cfg.StateDir && hostPaths[vm.Name] == cfg.StateDir
	}) {
		t.Errorf("--state-dir %s is not the host's %s mounted at the same path", cfg.StateDir, defenderState)
	}
	if cfg.Shim != defender.ShimOff {
		t.Errorf("--shim=%s: a Defender in a container cannot put the shim in place of the host's runc", cfg.Shim)
	}
	var bundleFiles []string
	for _, vm := range c.VolumeMounts {
		if v := volumes[vm.Name]; v.Secret != nil {
			if v.Secret.SecretName != bundleSecret || !vm.ReadOnly || path.Dir(vm.MountPath) != cfg.BundleDir {
				t.Errorf("bundle mount %+v: want Secret %s, read-only, under --bundle %s", vm, bundleSecret, cfg.BundleDir)
			}
			// One bundle per node: the Console drops the older of two
			// connections with the same Defender ID.
			prefix := "$(" + nodeNameEnv + ")."
			file, ok := strings.CutPrefix(vm.SubPathExpr, prefix)
			if !ok || file != path.Base(vm.MountPath) {
				t.Errorf("bundle mount %s: subPathExpr %q, want %s%s", vm.MountPath, vm.SubPathExpr, prefix, path.Base(vm.MountPath))
			}
			bundleFiles = append(bundleFiles, file)
			if m := v.Secret.DefaultMode; m == nil || *m&0o077 != 0 {
				t.Errorf("bundle Secret mode %v: the Defender refuses a key others may read", m)
			}
		}
	}
	want := []string{defender.BundleCA, defender.BundleCert, defender.BundleKey, defender.BundleConfig}
	if diff := cmp.Diff(slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(bundleFiles))); diff != "" {
		t.Errorf("bundle files mounted (-want +got):\n%s", diff)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == nodeNameEnv && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Errorf("no %s from spec.nodeName for the bundle's subPathExpr", nodeNameEnv)
	}
}

// TestSeedDaemonSetCapabilities: internal/k8s's test DaemonSet, which the
// compliance tests read, grants the same capabilities.
func TestSeedDaemonSetCapabilities(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "internal", "k8s", "testdata", "defender-daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := documents(data)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatal(err)
		}
		if ds, ok := obj.(*appsv1.DaemonSet); ok {
			found = true
			got := sortedCaps(ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add)
			if diff := cmp.Diff(slices.Sorted(slices.Values(defenderCapabilities)), got); diff != "" {
				t.Errorf("internal/k8s/testdata/defender-daemonset.yaml capabilities (-want +got):\n%s", diff)
			}
		}
	}
	if !found {
		t.Fatal("no DaemonSet in internal/k8s/testdata/defender-daemonset.yaml")
	}
}

func sortedCaps(caps []corev1.Capability) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		out = append(out, string(c))
	}
	slices.Sort(out)
	return out
}

// eachFlag calls set for each --flag=value of args. A flag set does not
// know (it returns false) fails the test: add it to the caller after
// checking the command takes it.
func eachFlag(t testing.TB, args []string, set func(name, value string) bool) {
	t.Helper()
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("arg %q: want --flag=value", a)
			continue
		}
		if !set(name, value) {
			t.Errorf("arg %q: unknown to this test", a)
		}
	}
}

// defenderConfig reads the DaemonSet's args into the Defender's
// configuration.
func defenderConfig(t testing.TB, args []string) defender.Config {
	t.Helper()
	cfg := defender.Default()
	eachFlag(t, args, func(name, value string) bool {
		switch name {
		case "bundle":
			cfg.BundleDir = value
		case "state-dir":
			cfg.StateDir = value
		case "host-root":
			cfg.HostRoot = value
		case "shim":
			cfg.Shim = value
		default:
			return false
		}
		return true
	})
	return cfg
}

// consoleConfig does the same for the StatefulSet's args.
func consoleConfig(t testing.TB, args []string) console.Config {
	t.Helper()
	cfg := console.Default()
	split := func(s string) []string { return strings.Split(s, ",") }
	eachFlag(t, args, func(name, value string) bool {
		switch name {
		case "data-dir":
			cfg.DataDir = value
		case "hosts":
			cfg.Hosts = split(value)
		case "channel-url":
			cfg.ChannelURL = value
		case "admission-addr":
			cfg.AdmissionAddr = value
		case "admission-dns":
			cfg.AdmissionHosts = split(value)
		default:
			return false
		}
		return true
	})
	return cfg
}

// TestConsoleStatefulSet: one replica, not root, read-only root file
// system, its data directory on a volume claim, ports and probes that a
// real Console with the StatefulSet's flags answers on, and certificates
// that name the Services Defenders and the API server use.
func TestConsoleStatefulSet(t *testing.T) {
	m := loadManifests(t)
	sts := m.console
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: the embedded store has one writer", sts.Spec.Replicas)
	}
	spec := sts.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	psc, sc := spec.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Error("the Console's pod must run as a user other than root")
	case psc.FSGroupChangePolicy == nil || *psc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch:
		// Always would chmod g+rw the keys at every mount, and the Console
		// refuses keys that others may read.
		t.Error("fsGroupChangePolicy must be OnRootMismatch")
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the Console's root file system is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("the Console may escalate privileges")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("the Console must drop ALL capabilities and add none")
	}

	cfg := consoleConfig(t, c.Args)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the StatefulSet's args do not make a valid Console configuration: %v", err)
	}
	if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(pvc corev1.PersistentVolumeClaim) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == pvc.Name && vm.MountPath == cfg.DataDir })
	}) {
		t.Errorf("--data-dir %s is not a volume claim's mount", cfg.DataDir)
	}
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = ":" + strconv.Itoa(int(p.ContainerPort))
	}
	for name, addr := range map[string]string{"api": cfg.APIAddr, "channel": cfg.ChannelAddr, "admission": cfg.AdmissionAddr} {
		if _, port, _ := net.SplitHostPort(addr); ":"+port != ports[name] {
			t.Errorf("container port %s is %s, the Console listens on %s", name, ports[name], addr)
		}
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != probePath || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "api" {
			t.Errorf("probe %+v: want GET %s over HTTPS on port api", p, probePath)
		}
	}

	// A real Console with those names.
	cs := consoletest.Start(t, consoletest.WithAdmission(cfg.AdmissionHosts...), consoletest.WithConfig(func(c *console.Config) {
		c.Hosts, c.ChannelURL = cfg.Hosts, cfg.ChannelURL
	}))
	// The probe answers without credentials, as the kubelet asks.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, cs.URL+probePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cs.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s without credentials = %d, want 200", probePath, resp.StatusCode)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cs.CACertPEM())
	// The API's certificate names the Service.
	for _, host := range cfg.Hosts {
		if err := handshake(cs.APIAddr().String(), &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			t.Errorf("API certificate for %s: %v", host, err)
		}
	}
	if err := handshake(cs.APIAddr().String(), &tls.Config{RootCAs: roots, ServerName: "elsewhere.example", MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("the API certificate verified for elsewhere.example: the handshake check proves nothing")
	}
	// The admission certificate names the Service the webhook calls.
	svc := "bulwark-admission." + bulwarkNS + ".svc"
	if !slices.ContainsFunc(m.services, func(s *corev1.Service) bool { return s.Name+"."+s.Namespace+".svc" == svc }) {
		t.Errorf("no Service behind %s", svc)
	}
	if err := handshake(cs.AdmissionAddr().String(), &tls.Config{RootCAs: roots, ServerName: svc, MinVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("admission certificate for %s: %v", svc, err)
	}

	// A Defender's bundle from this Console holds the files the DaemonSet
	// mounts and reaches the channel at the Service's name.
	if cs.ChannelURL() != cfg.ChannelURL {
		t.Errorf("bundles say %s, want %s", cs.ChannelURL(), cfg.ChannelURL)
	}
	u, err := url.Parse(cfg.ChannelURL)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(m.services, func(s *corev1.Service) bool {
		return s.Name+"."+s.Namespace+".svc" == u.Hostname() &&
			slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
				return p.TargetPort.String() == "channel" && ":"+u.Port() == ports["channel"]
			})
	}) {
		t.Errorf("--channel-url %s is no Service's channel port", cfg.ChannelURL)
	}
	dir := writeBundle(t, issueBundle(t, cs), loadManifests(t).defender)
	b, err := defender.LoadBundle(dir)
	if err != nil {
		t.Fatalf("LoadBundle(the DaemonSet's files and mode) = %v", err)
	}
	tc := b.TLS.Clone()
	tc.ServerName = u.Hostname()
	if err := handshake(cs.ChannelAddr().String(), tc); err != nil {
		t.Errorf("channel handshake as %s with the bundle: %v", u.Hostname(), err)
	}
}

// handshake completes a TLS handshake with addr. With a client
// certificate it also waits a second for the server's verdict on it, which
// TLS 1.3 sends after the handshake: silence means accepted.
func handshake(addr string, cfg *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if len(cfg.Certificates) == 0 {
		return nil
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

func issueBundle(t testing.TB, cs *consoletest.Console) api.Bundle {
	t.Helper()
	body := strings.NewReader(`{"id":"node-1"}`)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, cs.URL+"/api/v1/defenders/bundle", body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", consoletest.AdminPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := cs.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b api.Bundle
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/defenders/bundle = %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeBundle lays the bundle out as the DaemonSet's mounts do: each file
// the DaemonSet mounts, with the Secret's mode. A file the Console's bundle
// lacks, or one it has that the DaemonSet does not mount, fails the test.
func writeBundle(t testing.TB, b api.Bundle, ds *appsv1.DaemonSet) string {
	t.Helper()
	dir := t.TempDir()
	spec := ds.Spec.Template.Spec
	mode := fs.FileMode(0o400)
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.DefaultMode != nil {
			mode = fs.FileMode(*v.Secret.DefaultMode)
		}
	}
	mounted := map[string]bool{}
	for _, vm := range spec.Containers[0].VolumeMounts {
		if vm.SubPathExpr == "" {
			continue
		}
		name := path.Base(vm.MountPath)
		mounted[name] = true
		content, ok := b.Files[name]
		if !ok {
			t.Errorf("the DaemonSet mounts %s, which a bundle does not have", name)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	for name := range b.Files {
		if !mounted[name] {
			t.Errorf("a bundle has %s, which the DaemonSet does not mount", name)
		}
	}
	return dir
}

// TestOwnWorkloadsUnderDefaultPolicy mirrors internal/k8s's seed test on the
// real manifests: under the default compliance rules Bulwark's own
// workloads have no finding; with "Default - ignore Bulwark components"
// disabled the DaemonSet shows 5515 and 5059, and the Console nothing at all.
func TestOwnWorkloadsUnderDefaultPolicy(t *testing.T) {
	opts := compliance.Options{Evaluators: []compliance.Evaluator{k8s.PSS(psaapi.LevelBaseline, psaapi.LatestVersion())}}
	workloads := map[string]compliance.Workload{}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := k8s.Decode(file, data)
		if err != nil {
			t.Fatalf("Decode(%s): %v", file, err)
		}
		for _, o := range objs {
			workloads[o.Workload.Source.Object.Kind+"/"+o.Workload.Source.Object.Name] = o.Workload
		}
	}
	if diff := cmp.Diff([]string{"DaemonSet/" + defenderName, "StatefulSet/" + consoleName}, slices.Sorted(mapsKeys(workloads))); diff != "" {
		t.Fatalf("workloads in %s (-want +got):\n%s", k8sDir, diff)
	}

	rules := compliance.DefaultRules()
	if rules[0].Name != ignoreRuleName {
		t.Fatalf("DefaultRules()[0] = %q, want %q first", rules[0].Name, ignoreRuleName)
	}
	for name, w := range workloads {
		if fs := compliance.Apply(rules, w, opts); len(fs) != 0 {
			t.Errorf("Apply(default rules, %s) = %v, want no finding for Bulwark's own workload", name, findingNames(fs))
		}
	}

	rules[0].Disabled = true
	want := []string{
		"5059 - Do not share the host's network namespace",
		"5515 - Do not share the host's process namespace",
	}
	var got []string
	for _, f := range compliance.Apply(rules, workloads["DaemonSet/"+defenderName], opts) {
		if f.Check == "host-network" || f.Check == "host-pid" {
			got = append(got, f.String())
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply(%q disabled, DaemonSet) host-namespace findings (-want +got):\n%s", ignoreRuleName, diff)
	}
	if fs := compliance.Apply(rules, workloads["StatefulSet/"+consoleName], opts); len(fs) != 0 {
		t.Errorf("Apply(%q disabled, Console) = %v, want none: the Console needs no exception", ignoreRuleName, findingNames(fs))
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func findingNames(fs []compliance.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}

// scanReport is what this test reads of 'bulwarkctl scan -o json'.
type scanReport struct {
	Summary struct {
		Failing    int `json:"failing"`
		Suppressed int `json:"suppressed"`
		Errors     int `json:"errors"`
	} `json:"summary"`
	Findings []struct {
		Object struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"object"`
		Check      string `json:"check"`
		Severity   string `json:"severity"`
		Suppressed *struct {
			Annotation string `json:"annotation"`
		} `json:"suppressed"`
	} `json:"findings"`
}

func scan(t testing.TB, args ...string) (int, scanReport, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Execute(t.Context(), append([]string{"scan", "k8s", "-o", "json"}, args...), strings.NewReader(""), &stdout, &stderr,
		func(string) string { return "" })
	var rep scanReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("bulwarkctl scan k8s %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	return code, rep, stderr.String()
}

// TestScanK8s runs 'bulwarkctl scan k8s deploy/kubernetes', which evaluates
// every check without a policy: it exits 0, every finding at or above high
// is on the DaemonSet and ignored by an annotation that says why, every
// annotation is used, and what is left below high is known.
func TestScanK8s(t *testing.T) {
	code, rep, stderr := scan(t, k8sDir)
	if code != 0 || rep.Summary.Failing != 0 || rep.Summary.Errors != 0 {
		t.Errorf("bulwarkctl scan k8s %s = exit %d, %d failing, %d errors; want 0 (stderr %q)", k8sDir, code, rep.Summary.Failing, rep.Summary.Errors, stderr)
	}

	_, rep, _ = scan(t, "--severity-threshold", "info", k8sDir)
	var open []string
	suppressed := map[string]bool{}
	for _, f := range rep.Findings {
		obj := f.Object.Kind + "/" + f.Object.Name
		if f.Suppressed != nil {
			if obj != "DaemonSet/"+defenderName {
				t.Errorf("%s: %s ignored by annotation; only the Defender has reasons to", obj, f.Check)
			}
			suppressed[strings.TrimPrefix(f.Suppressed.Annotation, k8s.IgnoreAnnotation)] = true
			continue
		}
		open = append(open, obj+" "+f.Severity+" "+f.Check)
	}
	slices.Sort(open)
	// What remains, all low: user namespaces need a recent kubelet and
	// runtime; a Defender probe would restart it for a slow Console.
	wantOpen := []string{
		"DaemonSet/" + defenderName + " low healthcheck",
		"DaemonSet/" + defenderName + " low host-userns",
		"StatefulSet/" + consoleName + " low host-userns",
	}
	if diff := cmp.Diff(wantOpen, open); diff != "" {
		t.Errorf("findings not ignored, at any severity (-want +got):\n%s", diff)
	}

	ds := loadManifests(t).defender
	var annotated []string
	for k := range ds.Annotations {
		if slug, ok := strings.CutPrefix(k, k8s.IgnoreAnnotation); ok {
			annotated = append(annotated, slug)
		}
	}
	slices.Sort(annotated)
	if diff := cmp.Diff(annotated, slices.Sorted(mapsKeys(suppressed))); diff != "" {
		t.Errorf("ignore annotations on the DaemonSet (-annotated +used): an unused one hides nothing and should go:\n%s", diff)
	}
	for _, slug := range []string{"privileged", "runtime-socket", "seccomp-unconfined", "host-ipc", "secrets-in-env"} {
		if suppressed[slug] {
			t.Errorf("the DaemonSet ignores %s, which it has no reason to break", slug)
		}
	}
}

// unitLines returns the values of key in a unit file, in order.
func unitLines(t testing.TB, file, key string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestSystemdCapabilities: the Defender's unit bounds it to exactly the
// DaemonSet's capabilities (and raises them as ambient ones); the Console's
// unit gives it none.
func TestSystemdCapabilities(t *testing.T) {
	var want []string
	for _, c := range loadManifests(t).defender.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
		want = append(want, "CAP_"+string(c))
	}
	slices.Sort(want)
	if len(want) != len(defenderCapabilities) {
		t.Fatalf("the DaemonSet adds %v", want)
	}
	unit := filepath.Join(systemdDir, "bulwark-defender.service")
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		vals := unitLines(t, unit, key)
		if len(vals) != 1 {
			t.Errorf("%s: %d %s= lines, want 1", unit, len(vals), key)
			continue
		}
		got := strings.Fields(vals[0])
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s %s (-DaemonSet +unit):\n%s", unit, key, diff)
		}
	}
	for _, kv := range [][2]string{{"NoNewPrivileges", "yes"}, {"Restart", "on-failure"}, {"ProtectSystem", "strict"}, {"User", "root"}} {
		if got := unitLines(t, unit, kv[0]); !slices.Equal(got, []string{kv[1]}) {
			t.Errorf("%s: %s=%q, want %s", unit, kv[0], got, kv[1])
		}
	}
	// PrivateDevices= would take CAP_MKNOD away from the bounding set.
	if got := unitLines(t, unit, "PrivateDevices"); len(got) > 0 {
		t.Errorf("%s: PrivateDevices=%v removes CAP_MKNOD", unit, got)
	}

	unit = filepath.Join(systemdDir, "bulwark-console.service")
	for _, kv := range [][2]string{{"CapabilityBoundingSet", ""}, {"AmbientCapabilities", ""}, {"NoNewPrivileges", "yes"}, {"Restart", "on-failure"}, {"DynamicUser", "yes"}} {
		if got := unitLines(t, unit, kv[0]); !slices.Equal(got, []string{kv[1]}) {
			t.Errorf("%s: %s=%q, want %q", unit, kv[0], got, kv[1])
		}
	}
	for _, u := range []string{"bulwark-console", "bulwark-defender"} {
		file := filepath.Join(systemdDir, u+".service")
		env := unitLines(t, file, "EnvironmentFile")
		want := "-/etc/bulwark/" + strings.TrimPrefix(u, "bulwark-") + ".env"
		if !slices.Equal(env, []string{want}) {
			t.Errorf("%s: EnvironmentFile=%q, want %s", file, env, want)
		}
		if _, err := os.Stat(filepath.Join(systemdDir, path.Base(strings.TrimPrefix(want, "-")))); err != nil {
			t.Errorf("%s: no example %s beside it: %v", file, path.Base(want), err)
		}
	}
}

// TestSystemdVerify runs systemd-analyze verify on the units, with their
// binaries replaced by stubs (verify checks that ExecStart is executable),
// and holds the Console to a low exposure score in systemd-analyze security.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): the units' syntax is not checked")
	}
	dir := t.TempDir()
	units := map[string]string{}
	for _, u := range []string{"bulwark-console", "bulwark-defender"} {
		data, err := os.ReadFile(filepath.Join(systemdDir, u+".service"))
		if err != nil {
			t.Fatal(err)
		}
		bin := "/usr/local/bin/" + u
		if !bytes.Contains(data, []byte("ExecStart="+bin+"\n")) {
			t.Fatalf("%s.service: ExecStart is not %s", u, bin)
		}
		stub := filepath.Join(dir, u)
		if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil { //nolint:gosec // an executable stub
			t.Fatal(err)
		}
		units[u] = filepath.Join(dir, u+".service")
		if err := os.WriteFile(units[u], bytes.ReplaceAll(data, []byte(bin), []byte(stub)), 0o644); err != nil { //nolint:gosec // not secret
			t.Fatal(err)
		}
	}
	verify := func(file string) (string, error) {
		out, err := exec.CommandContext(t.Context(), analyze, "verify", "--man=no", file).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for u, file := range units {
		// verify warns about unknown keys and bad values but exits 0: any
		// output is a failure.
		if out, err := verify(file); err != nil || out != "" {
			t.Errorf("systemd-analyze verify %s.service: %v\n%s", u, err, out)
		}
	}
	// The check fails where it should: a misspelt key.
	bad := filepath.Join(dir, "bad.service")
	data, _ := os.ReadFile(units["bulwark-defender"])
	if err := os.WriteFile(bad, bytes.Replace(data, []byte("NoNewPrivileges="), []byte("NoNewPrivilege="), 1), 0o644); err != nil { //nolint:gosec // not secret
		t.Fatal(err)
	}
	if out, err := verify(bad); err == nil && out == "" {
		t.Error("systemd-analyze verify accepted NoNewPrivilege= without a word; the check above proves nothing")
	}

	// The Console needs nothing: an exposure of at most 2.0 of 10.
	out, err := exec.CommandContext(t.Context(), analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", units["bulwark-console"]).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security bulwark-console.service: exposure above 2.0 (%v):\n%s", err, lastLine(out))
	}
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	return s[strings.LastIndex(s, "\n")+1:]
}
