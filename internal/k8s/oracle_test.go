package k8s

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"bulwark/internal/compliance"
)

// oraclePods is how many pods the oracle tests generate.
const oraclePods = 3000

// TestPSAOracle generates pods (deterministic random values over every field
// the Pod Security Standards read, allowed and forbidden ones) and checks,
// control by control, that Bulwark's own field-level checks of the same
// control give k8s.io/pod-security-admission's verdict, at the latest
// policy version and at v1.30, whose rules differ. Every disagreement must
// be one of the intended differences below, each with its reason.
func TestPSAOracle(t *testing.T) {
	versions := []psaapi.Version{psaapi.LatestVersion(), psaapi.MajorMinorVersion(1, 30)}
	type tally struct{ allowed, forbidden, explained int }
	counts := map[string]*tally{}
	reasons := map[string]int{}
	r := rand.New(rand.NewPCG(7, 35))
	for i := range oraclePods {
		pod := genPod(r, i)
		obj := admitPod(t, pod)
		for _, v := range versions {
			for _, c := range policy.DefaultChecks() {
				vc, ok := pick(c, v)
				if !ok {
					continue
				}
				psaAllowed := vc.CheckPod(&pod.ObjectMeta, &pod.Spec).Allowed
				ours := controlOf(c.ID).findings(obj.Workload)
				key := fmt.Sprintf("%s@%s", c.ID, v)
				if counts[key] == nil {
					counts[key] = &tally{}
				}
				if psaAllowed {
					counts[key].allowed++
				} else {
					counts[key].forbidden++
				}
				if psaAllowed == (len(ours) == 0) {
					continue
				}
				if why := intendedDifference(c.ID, v, &pod, ours); why != "" {
					counts[key].explained++
					reasons[why]++
					continue
				}
				t.Errorf("pod %d, control %s at %s: pod-security-admission allowed=%v, Bulwark's checks %v found %s\n%s",
					i, c.ID, v, psaAllowed, controlOf(c.ID).checks, describeFindings(ours), podYAML(t, pod))
			}
		}
	}
	// The oracle means something only if every control saw pods it allows
	// and pods it forbids.
	for key, c := range counts {
		if c.allowed == 0 || c.forbidden == 0 {
			t.Errorf("control %s: %d pods allowed, %d forbidden; the generator must produce both", key, c.allowed, c.forbidden)
		}
	}
	for why, n := range reasons {
		t.Logf("%5d intended differences: %s", n, why)
	}
}

// intendedDifference returns why Bulwark's checks and the admission plugin
// may disagree on this pod for this control, or "" when they must not. A
// difference counts only if the plugin, asked again with that one
// difference taken away (a newer version, normalized capability names …),
// gives Bulwark's verdict, so that it cannot hide another disagreement.
func intendedDifference(id policy.CheckID, v psaapi.Version, pod *corev1.Pod, ours []compliance.Finding) string {
	s := &pod.Spec
	oursAllowed := len(ours) == 0
	userNS := s.HostUsers != nil && !*s.HostUsers
	psa := func(id policy.CheckID, v psaapi.Version, p *corev1.Pod) bool {
		for _, c := range policy.DefaultChecks() {
			if vc, ok := pick(c, v); ok && c.ID == id {
				return vc.CheckPod(&p.ObjectMeta, &p.Spec).Allowed
			}
		}
		return true
	}
	at := func(minor int) psaapi.Version { return psaapi.MajorMinorVersion(1, minor) }
	switch {
	case id == "seccompProfile_baseline" && !oursAllowed && onlyAnnotations(ours):
		return "seccomp-unconfined still reports the legacy seccomp annotations set to unconfined, which the PSS read only before v1.19: older kubelets apply them, and they state the intent to run unconfined"
	case id == "seLinuxOptions" && v.Older(at(31)) && psa(id, at(31), pod) == oursAllowed:
		return "selinux allows container_engine_t, as the PSS do from v1.31 (the checks follow the newest standard)"
	case (id == "runAsNonRoot" || id == "runAsUser" || id == "procMount") && userNS && v.Older(at(35)) && psa(id, at(35), pod) == oursAllowed:
		return "run-as-root and proc-mount relax for pods with hostUsers: false, as the PSS do from v1.35 (root in a user namespace is not root on the host)"
	case id == "procMount_restricted" && userNS && oursAllowed && psa("procMount", v, pod) == oursAllowed:
		return "proc-mount follows the baseline rule, relaxed for pods with hostUsers: false; restricted (v1.35) keeps the /proc masks even in a user namespace"
	case id == "sysctls" && v.Older(at(37)) && psa(id, psaapi.LatestVersion(), pod) == oursAllowed:
		return "sysctls allows the newest safe list (v1.37); older versions of the PSS allow fewer"
	case (id == "capabilities_baseline" || id == "capabilities_restricted") && psa(id, v, upperCaps(pod)) == oursAllowed:
		return "capabilities are compared without case or CAP_ prefix, as containerd and CRI-O apply them (chown is CHOWN, drop: [all] drops all); the admission plugin compares them byte for byte"
	}
	return ""
}

// onlyAnnotations reports whether every finding points at annotations only.
func onlyAnnotations(fs []compliance.Finding) bool {
	for _, f := range fs {
		for _, p := range f.Paths {
			if !strings.Contains(p, "annotations[") {
				return false
			}
		}
	}
	return true
}

// upperCaps is the pod with its capability names upper-cased.
func upperCaps(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	up := func(cs []corev1.Capability) {
		for i := range cs {
			cs[i] = corev1.Capability(strings.ToUpper(string(cs[i])))
		}
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if sc := cs[i].SecurityContext; sc != nil && sc.Capabilities != nil {
				up(sc.Capabilities.Add)
				up(sc.Capabilities.Drop)
			}
		}
	}
	for i := range p.Spec.EphemeralContainers {
		if sc := p.Spec.EphemeralContainers[i].SecurityContext; sc != nil && sc.Capabilities != nil {
			up(sc.Capabilities.Add)
			up(sc.Capabilities.Drop)
		}
	}
	return p
}

// TestPodSpecRoundTrip checks that the PSS evaluator, which rebuilds the pod
// from the compliance model, reports exactly what the admission plugin
// reports on the original pod, reason by reason and in its order, for both
// levels at several versions (v1.18 reads the legacy seccomp annotations).
func TestPodSpecRoundTrip(t *testing.T) {
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	versions := []psaapi.Version{psaapi.LatestVersion(), psaapi.MajorMinorVersion(1, 30), psaapi.MajorMinorVersion(1, 24), psaapi.MajorMinorVersion(1, 18)}
	r := rand.New(rand.NewPCG(11, 13))
	for i := range oraclePods {
		pod := genPod(r, i)
		obj := admitPod(t, pod)
		for _, v := range versions {
			for _, level := range []psaapi.Level{psaapi.LevelBaseline, psaapi.LevelRestricted} {
				res := policy.AggregateCheckResults(ev.EvaluatePod(psaapi.LevelVersion{Level: level, Version: v}, &pod.ObjectMeta, &pod.Spec))
				var want []string
				for j, reason := range res.ForbiddenReasons {
					if d := res.ForbiddenDetails[j]; d != "" {
						reason += " (" + d + ")"
					}
					want = append(want, reason)
				}
				var got []string
				for _, f := range PSS(level, v).Evaluate(obj.Workload) {
					_, reason, _ := strings.Cut(f.Message, ": ")
					got = append(got, reason)
					if f.Check != CheckPSSBaseline && f.Check != CheckPSSRestricted {
						t.Errorf("PSS finding check %q", f.Check)
					}
					if level == psaapi.LevelBaseline && f.Check != CheckPSSBaseline {
						t.Errorf("pod %d at baseline %s: finding %q is %s, want %s", i, v, f.Message, f.Check, CheckPSSBaseline)
					}
				}
				if !slices.Equal(want, got) {
					t.Fatalf("pod %d, %s %s: PSS = %q, admission plugin = %q\n%s", i, level, v, got, want, podYAML(t, pod))
				}
			}
		}
	}
}

// admitPod feeds the pod through DecodeObject, as the admission webhook
// will.
func admitPod(t *testing.T, pod corev1.Pod) Object {
	t.Helper()
	pod.APIVersion, pod.Kind = "v1", "Pod"
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := DecodeObject(raw)
	if err != nil {
		t.Fatalf("DecodeObject(%s): %v", raw, err)
	}
	return obj
}

func podYAML(t *testing.T, pod corev1.Pod) string {
	t.Helper()
	b, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func describeFindings(fs []compliance.Finding) string {
	if len(fs) == 0 {
		return "nothing"
	}
	var out []string
	for _, f := range fs {
		out = append(out, f.Check+" "+strings.Join(f.Paths, ","))
	}
	return strings.Join(out, "; ")
}

// gen draws pod fields.
type gen struct{ r *rand.Rand }

func (g gen) chance(p float64) bool { return g.r.Float64() < p }

func oneOf[T any](g gen, xs ...T) T { return xs[g.r.IntN(len(xs))] }

// boolPtr is nil most of the time, else true or false.
func (g gen) boolPtr(pTrue, pFalse float64) *bool {
	x := g.r.Float64()
	switch {
	case x < pTrue:
		return new(true)
	case x < pTrue+pFalse:
		return new(false)
	}
	return nil
}

func (g gen) int64Ptr(p float64, xs ...int64) *int64 {
	if !g.chance(p) {
		return nil
	}
	v := oneOf(g, xs...)
	return &v
}

func (g gen) seccomp(p float64) *corev1.SeccompProfile {
	if !g.chance(p) {
		return nil
	}
	sp := &corev1.SeccompProfile{Type: oneOf(g, corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeLocalhost, corev1.SeccompProfileTypeUnconfined)}
	if sp.Type == corev1.SeccompProfileTypeLocalhost {
		sp.LocalhostProfile = new("profiles/app.json")
	}
	return sp
}

func (g gen) appArmor(p float64) *corev1.AppArmorProfile {
	if !g.chance(p) {
		return nil
	}
	ap := &corev1.AppArmorProfile{Type: oneOf(g, corev1.AppArmorProfileTypeRuntimeDefault, corev1.AppArmorProfileTypeLocalhost, corev1.AppArmorProfileTypeUnconfined)}
	if ap.Type == corev1.AppArmorProfileTypeLocalhost {
		ap.LocalhostProfile = new("k8s-app")
	}
	return ap
}

func (g gen) seLinux(p float64) *corev1.SELinuxOptions {
	if !g.chance(p) {
		return nil
	}
	o := &corev1.SELinuxOptions{Type: oneOf(g, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t", "spc_t", "unconfined_t"), Level: oneOf(g, "", "s0:c1,c2")}
	if g.chance(0.15) {
		o.User = "system_u"
	}
	if g.chance(0.15) {
		o.Role = "system_r"
	}
	return o
}

func (g gen) windows(p float64) *corev1.WindowsSecurityContextOptions {
	if !g.chance(p) {
		return nil
	}
	return &corev1.WindowsSecurityContextOptions{HostProcess: g.boolPtr(0.5, 0.5)}
}

func (g gen) handler() (*corev1.HTTPGetAction, *corev1.TCPSocketAction) {
	host := ""
	if g.chance(0.2) {
		host = oneOf(g, "10.0.0.1", "169.254.169.254", "metadata.internal")
	}
	if g.chance(0.5) {
		return &corev1.HTTPGetAction{Path: "/", Host: host}, nil
	}
	return nil, &corev1.TCPSocketAction{Host: host}
}

func (g gen) probe(p float64) *corev1.Probe {
	if !g.chance(p) {
		return nil
	}
	http, tcp := g.handler()
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: http, TCPSocket: tcp}}
}

func (g gen) lifecycle(p float64) *corev1.LifecycleHandler {
	if !g.chance(p) {
		return nil
	}
	http, tcp := g.handler()
	return &corev1.LifecycleHandler{HTTPGet: http, TCPSocket: tcp}
}

func (g gen) caps(n int, names ...corev1.Capability) []corev1.Capability {
	var out []corev1.Capability
	for range g.r.IntN(n + 1) {
		if c := oneOf(g, names...); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (g gen) container(name string) corev1.Container {
	c := corev1.Container{Name: name, Image: "registry.example/" + name + ":1.0"}
	if g.chance(0.85) {
		sc := &corev1.SecurityContext{
			Privileged:               g.boolPtr(0.08, 0.1),
			AllowPrivilegeEscalation: g.boolPtr(0.2, 0.45),
			RunAsNonRoot:             g.boolPtr(0.4, 0.1),
			RunAsUser:                g.int64Ptr(0.3, 0, 1000, 65534),
			SeccompProfile:           g.seccomp(0.25),
			AppArmorProfile:          g.appArmor(0.1),
			SELinuxOptions:           g.seLinux(0.1),
			WindowsOptions:           g.windows(0.05),
		}
		if g.chance(0.6) {
			sc.Capabilities = &corev1.Capabilities{
				Add: g.caps(2, "NET_BIND_SERVICE", "CHOWN", "NET_RAW", "SYS_ADMIN", "NET_ADMIN", "KILL", "chown"),
			}
			switch x := g.r.Float64(); {
			case x < 0.5:
				sc.Capabilities.Drop = []corev1.Capability{"ALL"}
			case x < 0.6:
				sc.Capabilities.Drop = []corev1.Capability{"all"}
			case x < 0.8:
				sc.Capabilities.Drop = []corev1.Capability{"NET_RAW"}
			}
		}
		if g.chance(0.1) {
			pm := oneOf(g, corev1.DefaultProcMount, corev1.UnmaskedProcMount)
			sc.ProcMount = &pm
		}
		c.SecurityContext = sc
	}
	if g.chance(0.5) {
		p := corev1.ContainerPort{ContainerPort: 8080}
		if g.chance(0.2) {
			p.HostPort = oneOf[int32](g, 80, 8080)
		}
		c.Ports = []corev1.ContainerPort{p}
	}
	c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = g.probe(0.4), g.probe(0.3), g.probe(0.1)
	if post, pre := g.lifecycle(0.1), g.lifecycle(0.1); post != nil || pre != nil {
		c.Lifecycle = &corev1.Lifecycle{PostStart: post, PreStop: pre}
	}
	return c
}

func (g gen) volume(i int) corev1.Volume {
	v := corev1.Volume{Name: fmt.Sprintf("v%d", i)}
	switch oneOf(g, "emptyDir", "configMap", "secret", "hostPath", "hostPath", "nfs", "persistentVolumeClaim", "projected", "downwardAPI", "csi", "ephemeral", "image", "gitRepo", "iscsi") {
	case "emptyDir":
		v.EmptyDir = &corev1.EmptyDirVolumeSource{}
	case "configMap":
		v.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}
	case "secret":
		v.Secret = &corev1.SecretVolumeSource{SecretName: "s"}
	case "hostPath":
		v.HostPath = &corev1.HostPathVolumeSource{Path: oneOf(g, "/var/log", "/", "/run/containerd/containerd.sock")}
	case "nfs":
		v.NFS = &corev1.NFSVolumeSource{Server: "nfs", Path: "/x"}
	case "persistentVolumeClaim":
		v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}
	case "projected":
		v.Projected = &corev1.ProjectedVolumeSource{}
	case "downwardAPI":
		v.DownwardAPI = &corev1.DownwardAPIVolumeSource{}
	case "csi":
		v.CSI = &corev1.CSIVolumeSource{Driver: "d"}
	case "ephemeral":
		v.Ephemeral = &corev1.EphemeralVolumeSource{}
	case "image":
		v.Image = &corev1.ImageVolumeSource{Reference: "img:1"}
	case "gitRepo":
		v.GitRepo = &corev1.GitRepoVolumeSource{Repository: "https://git.example/r"}
	case "iscsi":
		v.ISCSI = &corev1.ISCSIVolumeSource{TargetPortal: "t", IQN: "i"}
	}
	return v
}

// genPod draws a pod. Most fields are unset most of the time, so that
// every control sees pods it allows as well as pods it forbids.
func genPod(r *rand.Rand, i int) corev1.Pod {
	g := gen{r}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Annotations: map[string]string{}}}
	s := &pod.Spec
	s.HostNetwork, s.HostPID, s.HostIPC = g.chance(0.08), g.chance(0.08), g.chance(0.08)
	s.HostUsers = g.boolPtr(0.1, 0.2)
	if g.chance(0.3) {
		s.OS = &corev1.PodOS{Name: oneOf(g, corev1.Linux, corev1.Windows)}
	}
	if g.chance(0.8) {
		sc := &corev1.PodSecurityContext{
			RunAsNonRoot:    g.boolPtr(0.4, 0.1),
			RunAsUser:       g.int64Ptr(0.3, 0, 1000),
			SeccompProfile:  g.seccomp(0.5),
			AppArmorProfile: g.appArmor(0.15),
			SELinuxOptions:  g.seLinux(0.15),
			WindowsOptions:  g.windows(0.05),
		}
		if g.chance(0.25) {
			for range 1 + g.r.IntN(2) {
				sc.Sysctls = append(sc.Sysctls, corev1.Sysctl{Name: oneOf(g,
					"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
					"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_rmem", "net.ipv4.tcp_slow_start_after_idle",
					"kernel.msgmax", "net.core.somaxconn"), Value: "1"})
			}
		}
		s.SecurityContext = sc
	}
	for j := range g.r.IntN(3) {
		s.Volumes = append(s.Volumes, g.volume(j))
	}
	for j := range 1 + g.r.IntN(2) {
		s.Containers = append(s.Containers, g.container(fmt.Sprintf("c%d", j)))
	}
	if g.chance(0.3) {
		s.InitContainers = append(s.InitContainers, g.container("i0"))
	}
	if g.chance(0.15) {
		s.EphemeralContainers = append(s.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(g.container("e0"))})
	}
	names := []string{"c0", "i0"}
	if g.chance(0.15) {
		pod.Annotations["container.apparmor.security.beta.kubernetes.io/"+oneOf(g, names...)] = oneOf(g, "runtime/default", "localhost/k8s-app", "unconfined", "", "bogus")
	}
	if g.chance(0.1) {
		pod.Annotations["seccomp.security.alpha.kubernetes.io/pod"] = oneOf(g, "runtime/default", "docker/default", "unconfined", "localhost/p.json")
	}
	if g.chance(0.1) {
		pod.Annotations["container.seccomp.security.alpha.kubernetes.io/"+oneOf(g, names...)] = oneOf(g, "runtime/default", "unconfined", "localhost/p.json")
	}
	return pod
}
