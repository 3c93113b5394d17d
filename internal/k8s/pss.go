package k8s

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"bulwark/internal/compliance"
)

// The catalog checks the Pod Security Standards profiles report as.
const (
	CheckPSSBaseline   = "pss-baseline"
	CheckPSSRestricted = "pss-restricted"
)

// ParsePSSVersion parses a Pod Security Standards version: "latest" or
// "v1.N". A version newer than the library knows evaluates as its newest.
func ParsePSSVersion(s string) (psaapi.Version, error) {
	v, err := psaapi.ParseVersion(s)
	if err != nil {
		return psaapi.Version{}, fmt.Errorf("pod security standards version %q: want \"latest\" or v1.N", s)
	}
	return v, nil
}

// PSS returns an evaluator of the Pod Security Standards profile level
// (baseline or restricted; privileged evaluates nothing, and any other level
// evaluates as restricted, as the admission plugin does with a bad label) at
// the policy version, computed by k8s.io/pod-security-admission.
//
// It reports one finding per failed control, exactly the controls the
// admission plugin refuses at that level and version (at restricted, a
// restricted control replaces the baseline one it overrides: capabilities,
// hostPath volumes, seccomp, /proc mount). A finding's Check is
// CheckPSSBaseline when the pod fails the control at baseline too, else
// CheckPSSRestricted, with the catalog's severity and title; its Message is
// the control's name with the plugin's reason and detail; Paths are the
// fields Bulwark's own checks of the same control point at (the pod spec when
// they do not model that version's rule), and Container is set when those
// name one container.
//
// The evaluator reads Workload.Pod, so it serves any workload with a pod
// spec; workloads without one get no findings.
func PSS(level psaapi.Level, version psaapi.Version) compliance.Evaluator {
	e := &pss{}
	e.baseline, _ = compliance.Lookup(CheckPSSBaseline)
	e.restricted, _ = compliance.Lookup(CheckPSSRestricted)
	if level == psaapi.LevelPrivileged {
		return e
	}
	restricted := level != psaapi.LevelBaseline
	checks := policy.DefaultChecks()
	overridden := map[policy.CheckID]bool{}
	baseline := map[policy.CheckID]policy.CheckPodFn{}
	for _, c := range checks {
		vc, ok := pick(c, version)
		if !ok {
			continue
		}
		switch c.Level {
		case psaapi.LevelBaseline:
			baseline[c.ID] = vc.CheckPod
		case psaapi.LevelRestricted:
			if restricted {
				for _, id := range vc.OverrideCheckIDs {
					overridden[id] = true
				}
			}
		}
	}
	for _, c := range checks {
		vc, ok := pick(c, version)
		if !ok || (c.Level == psaapi.LevelRestricted && !restricted) || (c.Level == psaapi.LevelBaseline && overridden[c.ID]) {
			continue
		}
		pc := pssCheck{id: c.ID, level: c.Level, fn: vc.CheckPod}
		for _, id := range vc.OverrideCheckIDs {
			if fn, ok := baseline[id]; ok {
				pc.overrides = append(pc.overrides, fn)
			}
		}
		e.checks = append(e.checks, pc)
	}
	// The admission plugin reports baseline controls first, then restricted
	// ones, each by ID.
	slices.SortStableFunc(e.checks, func(a, b pssCheck) int {
		if a.level != b.level {
			if a.level == psaapi.LevelBaseline {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.id), string(b.id))
	})
	return e
}

// pick returns the version of check c in force at version v: the last whose
// minimum version is not newer than v.
func pick(c policy.Check, v psaapi.Version) (policy.VersionedCheck, bool) {
	for i := len(c.Versions) - 1; i >= 0; i-- {
		if min := c.Versions[i].MinimumVersion; !v.Older(min) {
			return c.Versions[i], true
		}
	}
	return policy.VersionedCheck{}, false
}

type pss struct {
	checks               []pssCheck
	baseline, restricted compliance.Check // the catalog's entries
}

type pssCheck struct {
	id        policy.CheckID
	level     psaapi.Level
	fn        policy.CheckPodFn
	overrides []policy.CheckPodFn // the baseline checks this restricted one replaces
}

// Evaluate implements compliance.Evaluator.
func (e *pss) Evaluate(w compliance.Workload) []compliance.Finding {
	if w.Pod == nil || len(e.checks) == 0 {
		return nil
	}
	meta, spec := podSpec(w.Pod)
	type failure struct {
		cat compliance.Check
		ctl control
		msg string
	}
	var failed []failure
	var slugs []string
	for _, c := range e.checks {
		r := c.fn(meta, spec)
		if r.Allowed {
			continue
		}
		cat := e.restricted
		if c.level == psaapi.LevelBaseline || slices.ContainsFunc(c.overrides, func(fn policy.CheckPodFn) bool { return !fn(meta, spec).Allowed }) {
			cat = e.baseline
		}
		ctl := controlOf(c.id)
		reason := r.ForbiddenReason
		if reason == "" {
			reason = policy.UnknownForbiddenReason
		}
		msg := ctl.name + ": " + reason
		if r.ForbiddenDetail != "" {
			msg += " (" + r.ForbiddenDetail + ")"
		}
		failed = append(failed, failure{cat, ctl, msg})
		slugs = append(slugs, ctl.checks...)
	}
	if len(failed) == 0 {
		return nil
	}
	// One evaluation of Bulwark's own checks of the failed controls finds
	// their fields.
	var own []compliance.Finding
	if len(slugs) > 0 {
		own = compliance.Evaluate(w, compliance.Options{Checks: slugs})
	}
	out := make([]compliance.Finding, 0, len(failed))
	for _, f := range failed {
		paths, container := f.ctl.locate(w, own)
		out = append(out, compliance.Finding{
			Check:     f.cat.Slug,
			Severity:  f.cat.Severity,
			Title:     f.cat.Title,
			Message:   f.msg,
			Paths:     paths,
			Container: container,
		})
	}
	return out
}

// control is a Pod Security Standards control as the admission plugin checks
// it, and the catalog checks of Bulwark that model the same rule.
type control struct {
	name   string
	checks []string
	// field keeps only the paths that end with it (run-as-root models two
	// controls).
	field string
}

func controlOf(id policy.CheckID) control {
	switch id {
	case "windowsHostProcess":
		return control{name: "HostProcess", checks: []string{"windows-hostprocess"}}
	case "hostNamespaces":
		return control{name: "Host Namespaces", checks: []string{"host-network", "host-pid", "host-ipc"}}
	case "privileged":
		return control{name: "Privileged Containers", checks: []string{"privileged"}}
	case "capabilities_baseline":
		return control{name: "Capabilities", checks: []string{"caps-added"}}
	case "capabilities_restricted":
		return control{name: "Capabilities", checks: []string{"caps-drop-all"}}
	case "hostPathVolumes":
		return control{name: "HostPath Volumes", checks: []string{"hostpath"}}
	case "hostPorts":
		return control{name: "Host Ports", checks: []string{"host-ports"}}
	case "appArmorProfile":
		return control{name: "AppArmor", checks: []string{"apparmor"}}
	case "seLinuxOptions":
		return control{name: "SELinux", checks: []string{"selinux"}}
	case "procMount", "procMount_restricted":
		return control{name: "/proc Mount Type", checks: []string{"proc-mount"}}
	case "seccompProfile_baseline":
		return control{name: "Seccomp", checks: []string{"seccomp-unconfined"}}
	case "seccompProfile_restricted":
		return control{name: "Seccomp", checks: []string{"seccomp-required"}}
	case "sysctls":
		return control{name: "Sysctls", checks: []string{"sysctls"}}
	case "hostProbesAndHostLifecycle":
		return control{name: "Host Probes / Lifecycle Hooks", checks: []string{"host-probe"}}
	case "restrictedVolumes":
		return control{name: "Volume Types", checks: []string{"volume-types"}}
	case "allowPrivilegeEscalation":
		return control{name: "Privilege Escalation", checks: []string{"allow-priv-esc"}}
	case "runAsNonRoot":
		return control{name: "Running as Non-root", checks: []string{"run-as-root"}, field: "runAsNonRoot"}
	case "runAsUser":
		return control{name: "Running as Non-root user", checks: []string{"run-as-root"}, field: "runAsUser"}
	}
	return control{name: string(id)}
}

// findings are what Bulwark's own checks of the control report on w.
func (c control) findings(w compliance.Workload) []compliance.Finding {
	if len(c.checks) == 0 {
		return nil
	}
	return c.own(compliance.Evaluate(w, compliance.Options{Checks: c.checks}))
}

// own keeps the findings of the control's checks.
func (c control) own(fs []compliance.Finding) []compliance.Finding {
	var out []compliance.Finding
	for _, f := range fs {
		if slices.Contains(c.checks, f.Check) && (c.field == "" || slices.ContainsFunc(f.Paths, c.hasField)) {
			out = append(out, f)
		}
	}
	return out
}

func (c control) hasField(p string) bool { return strings.HasSuffix(p, "."+c.field) }

// locate returns the fields and the container the control's failure is
// about, as far as Bulwark's own checks tell (their findings on w are
// given).
func (c control) locate(w compliance.Workload, findings []compliance.Finding) (paths []string, container string) {
	fs := c.own(findings)
	for i, f := range fs {
		for _, p := range f.Paths {
			if (c.field == "" || c.hasField(p)) && !slices.Contains(paths, p) {
				paths = append(paths, p)
			}
		}
		switch {
		case i == 0:
			container = f.Container
		case f.Container != container:
			container = ""
		}
	}
	if len(paths) == 0 {
		paths = []string{w.Pod.Path}
		if w.Pod.Path == "" {
			paths = []string{"spec"}
		}
		container = ""
	}
	return paths, container
}

// podSpec rebuilds the pod's metadata and spec from the compliance model,
// with every field the admission plugin's checks read. TestPodSpecRoundTrip
// proves that the plugin's verdicts on it equal those on the original.
func podSpec(p *compliance.Pod) (*metav1.ObjectMeta, *corev1.PodSpec) {
	meta := &metav1.ObjectMeta{Annotations: p.Annotations}
	s := &corev1.PodSpec{
		HostNetwork:                  isTrue(p.HostNetwork),
		HostPID:                      isTrue(p.HostPID),
		HostIPC:                      isTrue(p.HostIPC),
		HostUsers:                    p.HostUsers,
		AutomountServiceAccountToken: p.AutomountServiceAccountToken,
	}
	if p.OS != "" {
		s.OS = &corev1.PodOS{Name: corev1.OSName(p.OS)}
	}
	psc := p.SecurityContext
	s.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:       psc.RunAsNonRoot,
		RunAsUser:          psc.RunAsUser,
		RunAsGroup:         psc.RunAsGroup,
		FSGroup:            psc.FSGroup,
		SupplementalGroups: psc.SupplementalGroups,
		SeccompProfile:     seccompSpec(psc.SeccompProfile),
		AppArmorProfile:    appArmorSpec(psc.AppArmorProfile),
		SELinuxOptions:     seLinuxSpec(psc.SELinuxOptions),
	}
	for _, x := range psc.Sysctls {
		s.SecurityContext.Sysctls = append(s.SecurityContext.Sysctls, corev1.Sysctl{Name: x.Name, Value: x.Value})
	}
	if psc.WindowsHostProcess != nil {
		s.SecurityContext.WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: psc.WindowsHostProcess}
	}
	if len(p.Volumes) > 0 {
		s.Volumes = make([]corev1.Volume, 0, len(p.Volumes))
	}
	for _, v := range p.Volumes {
		s.Volumes = append(s.Volumes, corev1.Volume{Name: v.Name, VolumeSource: volumeSource(v)})
	}
	// Sized up front: a corev1.Container is over a kilobyte.
	var regular, init int
	for _, c := range p.Containers {
		switch c.Kind {
		case compliance.ContainerInit:
			init++
		case compliance.ContainerEphemeral:
		default:
			regular++
		}
	}
	if regular > 0 {
		s.Containers = make([]corev1.Container, 0, regular)
	}
	if init > 0 {
		s.InitContainers = make([]corev1.Container, 0, init)
	}
	for _, c := range p.Containers {
		sc := containerSpec(c)
		switch c.Kind {
		case compliance.ContainerInit:
			s.InitContainers = append(s.InitContainers, sc)
		case compliance.ContainerEphemeral:
			s.EphemeralContainers = append(s.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(sc)})
		default:
			s.Containers = append(s.Containers, sc)
		}
	}
	return meta, s
}

func isTrue(b *bool) bool { return b != nil && *b }

func containerSpec(c compliance.Container) corev1.Container {
	sc := c.SecurityContext
	out := corev1.Container{
		Name:  c.Name,
		Image: c.Image,
		SecurityContext: &corev1.SecurityContext{
			Privileged:               sc.Privileged,
			AllowPrivilegeEscalation: sc.AllowPrivilegeEscalation,
			ReadOnlyRootFilesystem:   sc.ReadOnlyRootFilesystem,
			RunAsNonRoot:             sc.RunAsNonRoot,
			RunAsUser:                sc.RunAsUser,
			RunAsGroup:               sc.RunAsGroup,
			SeccompProfile:           seccompSpec(sc.SeccompProfile),
			AppArmorProfile:          appArmorSpec(sc.AppArmorProfile),
			SELinuxOptions:           seLinuxSpec(sc.SELinuxOptions),
		},
		LivenessProbe:  probeSpec(c.LivenessProbe),
		ReadinessProbe: probeSpec(c.ReadinessProbe),
		StartupProbe:   probeSpec(c.StartupProbe),
	}
	if sc.CapabilitiesAdd != nil || sc.CapabilitiesDrop != nil {
		out.SecurityContext.Capabilities = &corev1.Capabilities{}
		for _, a := range sc.CapabilitiesAdd {
			out.SecurityContext.Capabilities.Add = append(out.SecurityContext.Capabilities.Add, corev1.Capability(a))
		}
		for _, d := range sc.CapabilitiesDrop {
			out.SecurityContext.Capabilities.Drop = append(out.SecurityContext.Capabilities.Drop, corev1.Capability(d))
		}
	}
	if sc.ProcMount != nil {
		pm := corev1.ProcMountType(*sc.ProcMount)
		out.SecurityContext.ProcMount = &pm
	}
	if sc.WindowsHostProcess != nil {
		out.SecurityContext.WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: sc.WindowsHostProcess}
	}
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, corev1.ContainerPort{
			Name:          p.Name,
			ContainerPort: int32(p.ContainerPort), //nolint:gosec // ports come from int32 fields
			HostPort:      int32(p.HostPort),      //nolint:gosec // likewise
			HostIP:        p.HostIP,
			Protocol:      corev1.Protocol(p.Protocol),
		})
	}
	if c.PostStart != nil || c.PreStop != nil {
		out.Lifecycle = &corev1.Lifecycle{PostStart: lifecycleSpec(c.PostStart), PreStop: lifecycleSpec(c.PreStop)}
	}
	return out
}

func probeSpec(h *compliance.Handler) *corev1.Probe {
	if h == nil {
		return nil
	}
	http, tcp := actions(h)
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: http, TCPSocket: tcp}}
}

func lifecycleSpec(h *compliance.Handler) *corev1.LifecycleHandler {
	if h == nil {
		return nil
	}
	http, tcp := actions(h)
	return &corev1.LifecycleHandler{HTTPGet: http, TCPSocket: tcp}
}

func actions(h *compliance.Handler) (*corev1.HTTPGetAction, *corev1.TCPSocketAction) {
	var http *corev1.HTTPGetAction
	var tcp *corev1.TCPSocketAction
	if h.HTTPGetHost != "" {
		http = &corev1.HTTPGetAction{Host: h.HTTPGetHost}
	}
	if h.TCPSocketHost != "" {
		tcp = &corev1.TCPSocketAction{Host: h.TCPSocketHost}
	}
	return http, tcp
}

func seccompSpec(p *compliance.Profile) *corev1.SeccompProfile {
	if p == nil {
		return nil
	}
	out := &corev1.SeccompProfile{Type: corev1.SeccompProfileType(p.Type)}
	if p.LocalhostProfile != "" {
		out.LocalhostProfile = &p.LocalhostProfile
	}
	return out
}

func appArmorSpec(p *compliance.Profile) *corev1.AppArmorProfile {
	if p == nil {
		return nil
	}
	out := &corev1.AppArmorProfile{Type: corev1.AppArmorProfileType(p.Type)}
	if p.LocalhostProfile != "" {
		out.LocalhostProfile = &p.LocalhostProfile
	}
	return out
}

func seLinuxSpec(o *compliance.SELinuxOptions) *corev1.SELinuxOptions {
	if o == nil {
		return nil
	}
	return &corev1.SELinuxOptions{User: o.User, Role: o.Role, Type: o.Type, Level: o.Level}
}

// volumeSource sets the source field named by the volume's type; hostPath
// keeps its path. An unknown type gives a source with nothing set, which
// the restricted profile refuses as it would an unknown type.
func volumeSource(v compliance.Volume) corev1.VolumeSource {
	var vs corev1.VolumeSource
	if v.Type == "hostPath" {
		vs.HostPath = &corev1.HostPathVolumeSource{Path: v.HostPath}
		return vs
	}
	if i, ok := volumeSourceFields()[v.Type]; ok {
		f := reflect.ValueOf(&vs).Elem().Field(i)
		f.Set(reflect.New(f.Type().Elem()))
	}
	return vs
}

// volumeSourceFields are the indexes of corev1.VolumeSource's pointer
// fields by their JSON names.
var volumeSourceFields = sync.OnceValue(func() map[string]int {
	t := reflect.TypeFor[corev1.VolumeSource]()
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if f := t.Field(i); f.Type.Kind() == reflect.Pointer {
			if _, dup := m[jsonName(f)]; !dup {
				m[jsonName(f)] = i
			}
		}
	}
	return m
})
