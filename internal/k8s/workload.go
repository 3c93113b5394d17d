package k8s

import (
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"bulwark/internal/compliance"
)

// podOf normalizes a pod template into the compliance model; podPath and
// metaPath are where the spec and the metadata sit in the object.
func podOf(t *corev1.PodTemplateSpec, podPath, metaPath string) *compliance.Pod {
	s := &t.Spec
	p := &compliance.Pod{
		Path:                         podPath,
		MetaPath:                     metaPath,
		Annotations:                  t.Annotations,
		HostNetwork:                  trueOrNil(s.HostNetwork),
		HostPID:                      trueOrNil(s.HostPID),
		HostIPC:                      trueOrNil(s.HostIPC),
		HostUsers:                    s.HostUsers,
		AutomountServiceAccountToken: s.AutomountServiceAccountToken,
	}
	if s.OS != nil {
		p.OS = string(s.OS.Name)
	}
	if sc := s.SecurityContext; sc != nil {
		p.SecurityContext = compliance.PodSecurityContext{
			RunAsNonRoot:       sc.RunAsNonRoot,
			RunAsUser:          sc.RunAsUser,
			RunAsGroup:         sc.RunAsGroup,
			FSGroup:            sc.FSGroup,
			SupplementalGroups: sc.SupplementalGroups,
			SeccompProfile:     seccompOf(sc.SeccompProfile),
			AppArmorProfile:    appArmorOf(sc.AppArmorProfile),
			SELinuxOptions:     seLinuxOf(sc.SELinuxOptions),
		}
		for _, x := range sc.Sysctls {
			p.SecurityContext.Sysctls = append(p.SecurityContext.Sysctls, compliance.Sysctl{Name: x.Name, Value: x.Value})
		}
		if sc.WindowsOptions != nil {
			p.SecurityContext.WindowsHostProcess = sc.WindowsOptions.HostProcess
		}
	}
	if n := len(s.Volumes); n > 0 {
		p.Volumes = make([]compliance.Volume, 0, n)
	}
	if n := len(s.Containers) + len(s.InitContainers) + len(s.EphemeralContainers); n > 0 {
		p.Containers = make([]compliance.Container, 0, n)
	}
	for _, v := range s.Volumes {
		vol := compliance.Volume{Name: v.Name, Type: volumeType(&v.VolumeSource)}
		if v.HostPath != nil {
			vol.HostPath = v.HostPath.Path
		}
		p.Volumes = append(p.Volumes, vol)
	}
	for i := range s.Containers {
		p.Containers = append(p.Containers, containerOf(&s.Containers[i], compliance.ContainerRegular, podPath, i))
	}
	for i := range s.InitContainers {
		p.Containers = append(p.Containers, containerOf(&s.InitContainers[i], compliance.ContainerInit, podPath, i))
	}
	for i := range s.EphemeralContainers {
		c := corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		p.Containers = append(p.Containers, containerOf(&c, compliance.ContainerEphemeral, podPath, i))
	}
	return p
}

func trueOrNil(b bool) *bool {
	if !b {
		return nil
	}
	return &b
}

func containerOf(c *corev1.Container, kind compliance.ContainerKind, podPath string, i int) compliance.Container {
	out := compliance.Container{
		Name:           c.Name,
		Image:          c.Image,
		Kind:           kind,
		Path:           compliance.ContainerPath(podPath, kind, i),
		LivenessProbe:  probeOf(c.LivenessProbe),
		ReadinessProbe: probeOf(c.ReadinessProbe),
		StartupProbe:   probeOf(c.StartupProbe),
	}
	if sc := c.SecurityContext; sc != nil {
		out.SecurityContext = compliance.SecurityContext{
			Privileged:               sc.Privileged,
			AllowPrivilegeEscalation: sc.AllowPrivilegeEscalation,
			ReadOnlyRootFilesystem:   sc.ReadOnlyRootFilesystem,
			RunAsNonRoot:             sc.RunAsNonRoot,
			RunAsUser:                sc.RunAsUser,
			RunAsGroup:               sc.RunAsGroup,
			SeccompProfile:           seccompOf(sc.SeccompProfile),
			AppArmorProfile:          appArmorOf(sc.AppArmorProfile),
			SELinuxOptions:           seLinuxOf(sc.SELinuxOptions),
		}
		if sc.Capabilities != nil {
			out.SecurityContext.CapabilitiesAdd = capStrings(sc.Capabilities.Add)
			out.SecurityContext.CapabilitiesDrop = capStrings(sc.Capabilities.Drop)
		}
		if sc.ProcMount != nil {
			pm := string(*sc.ProcMount)
			out.SecurityContext.ProcMount = &pm
		}
		if sc.WindowsOptions != nil {
			out.SecurityContext.WindowsHostProcess = sc.WindowsOptions.HostProcess
		}
	}
	if len(c.Ports) > 0 {
		out.Ports = make([]compliance.ContainerPort, 0, len(c.Ports))
	}
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, compliance.ContainerPort{
			Name:          p.Name,
			ContainerPort: int(p.ContainerPort),
			HostPort:      int(p.HostPort),
			HostIP:        p.HostIP,
			Protocol:      string(p.Protocol),
		})
	}
	if len(c.Env) > 0 {
		out.Env = make([]compliance.EnvVar, 0, len(c.Env))
	}
	for _, e := range c.Env {
		out.Env = append(out.Env, compliance.EnvVar{Name: e.Name, Value: e.Value, FromSource: e.ValueFrom != nil})
	}
	out.Resources = compliance.Resources{Limits: quantities(c.Resources.Limits), Requests: quantities(c.Resources.Requests)}
	if l := c.Lifecycle; l != nil {
		out.PostStart = handlerOf(l.PostStart)
		out.PreStop = handlerOf(l.PreStop)
	}
	if len(c.VolumeMounts) > 0 {
		out.VolumeMounts = make([]compliance.VolumeMount, 0, len(c.VolumeMounts))
	}
	for _, m := range c.VolumeMounts {
		vm := compliance.VolumeMount{Name: m.Name, MountPath: m.MountPath, ReadOnly: m.ReadOnly}
		if m.MountPropagation != nil {
			vm.MountPropagation = string(*m.MountPropagation)
		}
		out.VolumeMounts = append(out.VolumeMounts, vm)
	}
	return out
}

func capStrings(cs []corev1.Capability) []string {
	if cs == nil {
		return nil
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func quantities(rl corev1.ResourceList) map[string]string {
	if len(rl) == 0 {
		return nil
	}
	out := make(map[string]string, len(rl))
	for name, q := range rl {
		out[string(name)] = q.String()
	}
	return out
}

func probeOf(p *corev1.Probe) *compliance.Handler {
	if p == nil {
		return nil
	}
	return hostsOf(p.HTTPGet, p.TCPSocket)
}

func handlerOf(h *corev1.LifecycleHandler) *compliance.Handler {
	if h == nil {
		return nil
	}
	return hostsOf(h.HTTPGet, h.TCPSocket)
}

func hostsOf(http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) *compliance.Handler {
	h := &compliance.Handler{}
	if http != nil {
		h.HTTPGetHost = http.Host
	}
	if tcp != nil {
		h.TCPSocketHost = tcp.Host
	}
	return h
}

func seccompOf(p *corev1.SeccompProfile) *compliance.Profile {
	if p == nil {
		return nil
	}
	out := &compliance.Profile{Type: string(p.Type)}
	if p.LocalhostProfile != nil {
		out.LocalhostProfile = *p.LocalhostProfile
	}
	return out
}

func appArmorOf(p *corev1.AppArmorProfile) *compliance.Profile {
	if p == nil {
		return nil
	}
	out := &compliance.Profile{Type: string(p.Type)}
	if p.LocalhostProfile != nil {
		out.LocalhostProfile = *p.LocalhostProfile
	}
	return out
}

func seLinuxOf(o *corev1.SELinuxOptions) *compliance.SELinuxOptions {
	if o == nil {
		return nil
	}
	return &compliance.SELinuxOptions{User: o.User, Role: o.Role, Type: o.Type, Level: o.Level}
}

// volumeType is the field name of the volume's source (hostPath, nfs …),
// read from the json tags of corev1.VolumeSource so that new volume types
// are named without a change here; "" when no source is set.
func volumeType(vs *corev1.VolumeSource) string {
	v := reflect.ValueOf(vs).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			return jsonName(v.Type().Field(i))
		}
	}
	return ""
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// defaultVolumes applies the API server's default to volumes without a
// source: they become emptyDir volumes, as they would in the cluster.
func defaultVolumes(s *corev1.PodSpec) {
	for i := range s.Volumes {
		if volumeType(&s.Volumes[i].VolumeSource) == "" {
			s.Volumes[i].EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
}
