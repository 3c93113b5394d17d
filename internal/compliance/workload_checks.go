package compliance

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// defaultCaps are the capabilities Docker and containerd grant by default.
func defaultCaps() []string {
	return []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
		"NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
}

// baselineCaps are the capabilities the PSS baseline allows to add: the
// runtime defaults without NET_RAW.
func baselineCaps() []string {
	return slices.DeleteFunc(defaultCaps(), func(c string) bool { return c == "NET_RAW" })
}

// criticalCaps make caps-added critical.
func criticalCaps() []string {
	return []string{"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "BPF", "NET_ADMIN"}
}

// capName normalizes "cap_net_raw" and "NET_RAW" to "NET_RAW".
func capName(s string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
}

func capSet(caps []string) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if n := capName(c); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// effectiveCaps is the runtime container's bounding set and the key it comes
// from: OCI's bounding set, all capabilities for a privileged container, or
// docker's default set with CapDrop and CapAdd applied.
func effectiveCaps(r *Runtime) (caps []string, key string) {
	if r.Bounding.Value != nil || r.Bounding.Key != "" {
		return capSet(r.Bounding.Value), r.Bounding.Key
	}
	if r.Privileged.Value {
		return []string{"ALL"}, r.Privileged.Key
	}
	drop, add := capSet(r.CapDrop.Value), capSet(r.CapAdd.Value)
	if slices.Contains(add, "ALL") {
		return []string{"ALL"}, orKey(r.CapAdd.Key, "HostConfig.CapAdd")
	}
	key = orKey(r.CapDrop.Key, "HostConfig.CapDrop")
	for _, c := range add {
		if !slices.Contains(defaultCaps(), c) {
			key = orKey(r.CapAdd.Key, "HostConfig.CapAdd")
		}
	}
	if !slices.Contains(drop, "ALL") {
		for _, c := range defaultCaps() {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range add {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, key
}

func hasCap(caps []string, c string) bool {
	return slices.Contains(caps, c) || slices.Contains(caps, "ALL")
}

func checkHostNamespace(ns string, podField func(*Pod) *bool, field string) func(*env) {
	return func(e *env) {
		if p := e.pod(); p != nil && podField != nil && isTrue(podField(p)) {
			e.report("", fmt.Sprintf("the pod sets %s: true", field), e.podPath(field))
		}
		if r := e.runtime(); r != nil {
			for _, h := range r.HostNamespaces {
				if h.Type == ns {
					e.report(r.Name, fmt.Sprintf("the container shares the host's %s namespace", ns), h.Key)
				}
			}
		}
	}
}

func checkHostUserns(e *env) {
	if p := e.pod(); p != nil && !isFalse(p.HostUsers) {
		e.report("", "the pod runs in the host's user namespace (hostUsers is not false)", e.podPath("hostUsers"))
	}
	checkHostNamespace(NamespaceUser, nil, "")(e)
}

func checkPrivileged(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			if isTrue(c.SecurityContext.Privileged) {
				e.report(c.Name, fmt.Sprintf("container %q is privileged", c.Name), c.sc("privileged"))
			}
		}
	}
	r := e.runtime()
	if r == nil {
		return
	}
	if r.Privileged.Value {
		e.report(r.Name, "the container is privileged", r.Privileged.Key)
		return
	}
	// OCI has no privileged flag: a privileged container has every
	// capability, no seccomp, no masked paths and every device.
	caps, key := effectiveCaps(r)
	allCaps := hasCap(caps, "SYS_ADMIN") && hasCap(caps, "SYS_MODULE") && hasCap(caps, "SYS_RAWIO") &&
		hasCap(caps, "SYS_PTRACE") && hasCap(caps, "MAC_ADMIN")
	if allCaps && !r.Seccomp.Value && !r.MaskedPaths.Value && r.DevicesAllowAll.Value {
		e.report(r.Name, "the container runs as privileged: all capabilities, no seccomp, no masked paths, all devices",
			key, r.Seccomp.Key, r.MaskedPaths.Key, r.DevicesAllowAll.Key)
	}
}

func capsSeverity(e *env, added []string) Severity {
	for _, c := range added {
		if slices.Contains(criticalCaps(), c) {
			return SeverityCritical
		}
	}
	return e.check.Severity
}

func checkCapsAdded(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			var extra []string
			for _, a := range capSet(c.SecurityContext.CapabilitiesAdd) {
				if !slices.Contains(baselineCaps(), a) {
					extra = append(extra, a)
				}
			}
			if len(extra) > 0 {
				e.reportSev(capsSeverity(e, extra), c.Name, fmt.Sprintf("container %q adds %s", c.Name, strings.Join(extra, ", ")),
					c.sc("capabilities.add"))
			}
		}
	}
	r := e.runtime()
	if r == nil {
		return
	}
	var extra []string
	key := r.Bounding.Key
	if r.Bounding.Value != nil || r.Bounding.Key != "" {
		for _, c := range capSet(r.Bounding.Value) {
			if !slices.Contains(defaultCaps(), c) {
				extra = append(extra, c)
			}
		}
	} else {
		key = orKey(r.CapAdd.Key, "HostConfig.CapAdd")
		for _, c := range capSet(r.CapAdd.Value) {
			if !slices.Contains(defaultCaps(), c) {
				extra = append(extra, c)
			}
		}
	}
	if len(extra) > 0 {
		e.reportSev(capsSeverity(e, extra), r.Name, "the container has "+strings.Join(extra, ", ")+" beyond the default capabilities", key)
	}
}

func windowsPod(p *Pod) bool { return strings.EqualFold(p.OS, "windows") }

func checkCapsDropAll(e *env) {
	if p := e.pod(); p != nil && !windowsPod(p) {
		for _, c := range e.ctrs {
			sc := c.SecurityContext
			if !slices.Contains(capSet(sc.CapabilitiesDrop), "ALL") {
				e.report(c.Name, fmt.Sprintf("container %q does not drop ALL capabilities", c.Name), c.sc("capabilities.drop"))
			}
			var extra []string
			for _, a := range capSet(sc.CapabilitiesAdd) {
				if a != "NET_BIND_SERVICE" {
					extra = append(extra, a)
				}
			}
			if len(extra) > 0 {
				e.report(c.Name, fmt.Sprintf("container %q adds %s; only NET_BIND_SERVICE is allowed", c.Name, strings.Join(extra, ", ")),
					c.sc("capabilities.add"))
			}
		}
	}
	if r := e.runtime(); r != nil {
		caps, key := effectiveCaps(r)
		var extra []string
		for _, c := range caps {
			if c != "NET_BIND_SERVICE" {
				extra = append(extra, c)
			}
		}
		if len(extra) > 0 {
			e.report(r.Name, "the container keeps "+strings.Join(extra, ", ")+"; only NET_BIND_SERVICE is allowed", key)
		}
	}
}

func checkNetRaw(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			sc := c.SecurityContext
			add, drop := capSet(sc.CapabilitiesAdd), capSet(sc.CapabilitiesDrop)
			switch {
			case slices.Contains(add, "NET_RAW") || slices.Contains(add, "ALL"):
				e.report(c.Name, fmt.Sprintf("container %q adds NET_RAW", c.Name), c.sc("capabilities.add"))
			case !slices.Contains(drop, "NET_RAW") && !slices.Contains(drop, "ALL"):
				e.report(c.Name, fmt.Sprintf("container %q does not drop NET_RAW", c.Name), c.sc("capabilities.drop"))
			}
		}
	}
	if r := e.runtime(); r != nil {
		if caps, key := effectiveCaps(r); hasCap(caps, "NET_RAW") {
			e.report(r.Name, "the container has NET_RAW", key)
		}
	}
}

func checkAllowPrivEsc(e *env) {
	if p := e.pod(); p != nil && !windowsPod(p) {
		for _, c := range e.ctrs {
			if !isFalse(c.SecurityContext.AllowPrivilegeEscalation) {
				e.report(c.Name, fmt.Sprintf("container %q must set securityContext.allowPrivilegeEscalation=false", c.Name),
					c.sc("allowPrivilegeEscalation"))
			}
		}
	}
	if r := e.runtime(); r != nil && !r.NoNewPrivileges.Value {
		e.report(r.Name, "the container does not set no_new_privs", orKey(r.NoNewPrivileges.Key, "process.noNewPrivileges"))
	}
}

func checkRunAsRoot(e *env) {
	if p := e.pod(); p != nil {
		psc := p.SecurityContext
		// From PSS 1.35 runAsNonRoot and runAsUser are relaxed for pods in
		// their own user namespace: root there is not root on the host.
		if !isFalse(p.HostUsers) {
			if isFalse(psc.RunAsNonRoot) {
				e.report("", "the pod sets runAsNonRoot: false", e.podPath("securityContext.runAsNonRoot"))
			}
			if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
				e.report("", "the pod sets runAsUser: 0", e.podPath("securityContext.runAsUser"))
			}
			for _, c := range e.ctrs {
				sc := c.SecurityContext
				var paths []string
				var why []string
				switch {
				case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
					paths, why = append(paths, c.sc("runAsNonRoot")), append(why, "sets runAsNonRoot: false")
				case sc.RunAsNonRoot == nil && !isTrue(psc.RunAsNonRoot):
					paths, why = append(paths, c.sc("runAsNonRoot")), append(why, "does not set runAsNonRoot: true (nor does the pod)")
				}
				if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
					paths, why = append(paths, c.sc("runAsUser")), append(why, "sets runAsUser: 0")
				}
				if len(paths) > 0 {
					e.report(c.Name, fmt.Sprintf("container %q %s", c.Name, strings.Join(why, " and ")), paths...)
				}
			}
		}
	}
	if r := e.runtime(); r != nil && rootUser(r.User.Value) {
		e.report(r.Name, fmt.Sprintf("the container runs as user %q", r.User.Value), orKey(r.User.Key, "process.user.uid"))
	}
}

// rootUser reports whether a docker/OCI/image user string is root: "",
// "0", "root", "0:…", "root:…".
func rootUser(u string) bool {
	user, _, _ := strings.Cut(strings.TrimSpace(u), ":")
	return user == "" || user == "0" || user == "root"
}

func checkRootGroup(e *env) {
	if p := e.pod(); p != nil {
		psc := p.SecurityContext
		zero := func(v *int64) bool { return v != nil && *v == 0 }
		var paths []string
		if zero(psc.RunAsGroup) {
			paths = append(paths, e.podPath("securityContext.runAsGroup"))
		}
		if zero(psc.FSGroup) {
			paths = append(paths, e.podPath("securityContext.fsGroup"))
		}
		if i := slices.Index(psc.SupplementalGroups, 0); i >= 0 {
			paths = append(paths, e.podPath("securityContext.supplementalGroups["+strconv.Itoa(i)+"]"))
		}
		if len(paths) > 0 {
			e.report("", "the pod uses GID 0", paths...)
		}
		for _, c := range e.ctrs {
			if zero(c.SecurityContext.RunAsGroup) {
				e.report(c.Name, fmt.Sprintf("container %q sets runAsGroup: 0", c.Name), c.sc("runAsGroup"))
			}
		}
	}
	if r := e.runtime(); r != nil {
		_, group, _ := strings.Cut(r.User.Value, ":")
		switch {
		case group == "0" || group == "root":
			e.report(r.Name, fmt.Sprintf("the container runs with group %q", group), r.User.Key)
		case slices.Contains(r.Groups.Value, "0") || slices.Contains(r.Groups.Value, "root"):
			e.report(r.Name, "the container runs with GID 0", r.Groups.Key)
		}
	}
}

func volumePath(e *env, i int, v Volume) string {
	return e.podPath("volumes[" + strconv.Itoa(i) + "]." + v.Type)
}

func checkHostPath(e *env) {
	if p := e.pod(); p != nil {
		for i, v := range p.Volumes {
			if v.Type == "hostPath" {
				e.report("", fmt.Sprintf("volume %q mounts host path %s", v.Name, v.HostPath), volumePath(e, i, v))
			}
		}
	}
}

// sensitiveDirs are host directories a container must not mount
// (docker-bench's list, plus kubelet and docker state and root's home).
func sensitiveDirs() []string {
	return []string{"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr",
		"/var/lib/kubelet", "/var/lib/docker", "/root"}
}

// under reports whether p is dir or below it ("/" matches only itself).
func under(p, dir string) bool {
	p = path.Clean("/" + p)
	if dir == "/" {
		return p == "/"
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func sensitive(p string) (string, bool) {
	for _, d := range sensitiveDirs() {
		if under(p, d) {
			return d, true
		}
	}
	return "", false
}

// volumeWritable reports whether any container mounts the volume writable.
func volumeWritable(p *Pod, name string) bool {
	for _, c := range p.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == name && !m.ReadOnly {
				return true
			}
		}
	}
	return false
}

// bindMounts are the runtime mounts whose source is a host path.
func bindMounts(r *Runtime) []Mount {
	var out []Mount
	for _, m := range r.Mounts {
		if (m.Type == "bind" || m.Type == "") && strings.HasPrefix(m.Source, "/") {
			out = append(out, m)
		}
	}
	return out
}

func checkSensitiveMount(e *env) {
	if p := e.pod(); p != nil {
		for i, v := range p.Volumes {
			if v.Type != "hostPath" {
				continue
			}
			if d, ok := sensitive(v.HostPath); ok {
				sev, rw := e.check.Severity, ""
				if volumeWritable(p, v.Name) {
					sev, rw = SeverityCritical, " writable"
				}
				e.reportSev(sev, "", fmt.Sprintf("volume %q mounts %s (under %s)%s", v.Name, v.HostPath, d, rw),
					volumePath(e, i, v)+".path")
			}
		}
	}
	if r := e.runtime(); r != nil {
		for _, m := range bindMounts(r) {
			if d, ok := sensitive(m.Source); ok {
				sev, rw := e.check.Severity, ""
				if !m.ReadOnly && !slices.Contains(m.Options, "ro") {
					sev, rw = SeverityCritical, " writable"
				}
				e.reportSev(sev, r.Name, fmt.Sprintf("the container mounts %s (under %s)%s at %s", m.Source, d, rw, m.Destination), m.Key)
			}
		}
	}
}

// runtimeSockets are the sockets of Docker, containerd and CRI-O; their
// directories count too.
func runtimeSockets() []string {
	return []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run/containerd/containerd.sock",
		"/run/containerd/containerd.sock", "/var/run/crio/crio.sock", "/run/crio/crio.sock", "/var/run/cri-dockerd.sock"}
}

func runtimeSocket(p string) (string, bool) {
	p = path.Clean("/" + p)
	for _, s := range runtimeSockets() {
		if p == s || p == path.Dir(s) {
			return s, true
		}
	}
	return "", false
}

func checkRuntimeSocket(e *env) {
	if p := e.pod(); p != nil {
		for i, v := range p.Volumes {
			if s, ok := runtimeSocket(v.HostPath); ok && v.Type == "hostPath" {
				e.report("", fmt.Sprintf("volume %q mounts %s, which exposes %s", v.Name, v.HostPath, s), volumePath(e, i, v)+".path")
			}
		}
	}
	if r := e.runtime(); r != nil {
		for _, m := range bindMounts(r) {
			if s, ok := runtimeSocket(m.Source); ok {
				e.report(r.Name, fmt.Sprintf("the container mounts %s, which exposes %s", m.Source, s), m.Key)
			}
		}
	}
}

// podPorts calls f for every container port of the pod.
func podPorts(e *env, f func(c ctr, j int, p ContainerPort)) {
	for _, c := range e.ctrs {
		for j, p := range c.Ports {
			f(c, j, p)
		}
	}
}

func portPath(c ctr, j int, field string) string {
	return c.at("ports[" + strconv.Itoa(j) + "]." + field)
}

func checkHostPorts(e *env) {
	if e.pod() != nil {
		podPorts(e, func(c ctr, j int, p ContainerPort) {
			if p.HostPort != 0 {
				e.report(c.Name, fmt.Sprintf("container %q uses host port %d", c.Name, p.HostPort), portPath(c, j, "hostPort"))
			}
		})
	}
	if r := e.runtime(); r != nil {
		for _, p := range r.Ports {
			if p.HostPort != 0 {
				e.report(r.Name, fmt.Sprintf("the container publishes host port %d", p.HostPort), p.Key)
			}
		}
	}
}

func checkPrivilegedPort(e *env) {
	if e.pod() != nil {
		podPorts(e, func(c ctr, j int, p ContainerPort) {
			if p.HostPort > 0 && p.HostPort < 1024 {
				e.report(c.Name, fmt.Sprintf("container %q maps privileged host port %d", c.Name, p.HostPort), portPath(c, j, "hostPort"))
			}
		})
	}
	if r := e.runtime(); r != nil {
		for _, p := range r.Ports {
			if p.HostPort > 0 && p.HostPort < 1024 {
				e.report(r.Name, fmt.Sprintf("the container maps privileged host port %d", p.HostPort), p.Key)
			}
		}
	}
}

func anyInterface(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" || ip == "[::]" }

func checkBindAnyInterface(e *env) {
	if e.pod() != nil {
		podPorts(e, func(c ctr, j int, p ContainerPort) {
			if p.HostPort != 0 && anyInterface(p.HostIP) {
				e.report(c.Name, fmt.Sprintf("container %q binds host port %d on every interface", c.Name, p.HostPort), portPath(c, j, "hostIP"))
			}
		})
	}
	if r := e.runtime(); r != nil {
		for _, p := range r.Ports {
			if p.HostPort != 0 && anyInterface(p.HostIP) {
				e.report(r.Name, fmt.Sprintf("the container binds host port %d on every interface", p.HostPort), p.Key)
			}
		}
	}
}

const (
	seccompPodAnnotation       = "seccomp.security.alpha.kubernetes.io/pod"
	seccompContainerAnnotation = "container.seccomp.security.alpha.kubernetes.io/"
	appArmorAnnotation         = "container.apparmor.security.beta.kubernetes.io/"
)

func checkSeccompUnconfined(e *env) {
	if p := e.pod(); p != nil {
		// Like the PSS, refuse every type but RuntimeDefault and Localhost:
		// the API server rejects other values, and an admission check must
		// not let through what a later API version might accept.
		if sp := p.SecurityContext.SeccompProfile; sp != nil && !allowedSeccomp(sp.Type) {
			e.report("", fmt.Sprintf("the pod sets seccompProfile.type: %q", sp.Type), e.podPath("securityContext.seccompProfile.type"))
		}
		if p.Annotations[seccompPodAnnotation] == "unconfined" {
			e.report("", "the pod's seccomp annotation is unconfined", e.metaPath(annotationPath(seccompPodAnnotation)))
		}
		for _, c := range e.ctrs {
			if sp := c.SecurityContext.SeccompProfile; sp != nil && !allowedSeccomp(sp.Type) {
				e.report(c.Name, fmt.Sprintf("container %q sets seccompProfile.type: %q", c.Name, sp.Type), c.sc("seccompProfile.type"))
			}
			if key := seccompContainerAnnotation + c.Name; p.Annotations[key] == "unconfined" {
				e.report(c.Name, fmt.Sprintf("container %q's seccomp annotation is unconfined", c.Name), e.metaPath(annotationPath(key)))
			}
		}
	}
	if r := e.runtime(); r != nil && !r.Seccomp.Value {
		e.report(r.Name, "the container runs without a seccomp profile", orKey(r.Seccomp.Key, "linux.seccomp"))
	}
}

func allowedSeccomp(t string) bool { return t == "RuntimeDefault" || t == "Localhost" }

func allowedAppArmor(t string) bool { return t == "RuntimeDefault" || t == "Localhost" }

func checkSeccompRequired(e *env) {
	p := e.pod()
	if p == nil || windowsPod(p) {
		return
	}
	pod := p.SecurityContext.SeccompProfile
	if pod != nil && !allowedSeccomp(pod.Type) {
		e.report("", fmt.Sprintf("the pod sets seccompProfile.type: %q", pod.Type), e.podPath("securityContext.seccompProfile.type"))
	}
	for _, c := range e.ctrs {
		sp := c.SecurityContext.SeccompProfile
		switch {
		case sp != nil && !allowedSeccomp(sp.Type):
			e.report(c.Name, fmt.Sprintf("container %q sets seccompProfile.type: %q", c.Name, sp.Type), c.sc("seccompProfile.type"))
		case sp == nil && pod == nil:
			e.report(c.Name, fmt.Sprintf("container %q has no seccompProfile, nor does the pod", c.Name), c.sc("seccompProfile.type"))
		}
	}
}

func checkAppArmor(e *env) {
	if p := e.pod(); p != nil {
		// Every type but RuntimeDefault and Localhost, as the PSS say.
		if ap := p.SecurityContext.AppArmorProfile; ap != nil && !allowedAppArmor(ap.Type) {
			e.report("", fmt.Sprintf("the pod sets appArmorProfile.type: %q", ap.Type), e.podPath("securityContext.appArmorProfile.type"))
		}
		for _, c := range e.ctrs {
			if ap := c.SecurityContext.AppArmorProfile; ap != nil && !allowedAppArmor(ap.Type) {
				e.report(c.Name, fmt.Sprintf("container %q sets appArmorProfile.type: %q", c.Name, ap.Type), c.sc("appArmorProfile.type"))
			}
		}
		// Annotations in key order, for a stable output.
		keys := make([]string, 0, len(p.Annotations))
		for k := range p.Annotations {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			name, ok := strings.CutPrefix(k, appArmorAnnotation)
			v := p.Annotations[k]
			if ok && v != "" && v != "runtime/default" && !strings.HasPrefix(v, "localhost/") {
				e.report(name, fmt.Sprintf("container %q's AppArmor annotation is %q", name, v), e.metaPath(annotationPath(k)))
			}
		}
	}
	if r := e.runtime(); r != nil && r.HostAppArmor {
		if v := r.AppArmorProfile.Value; v == "" || v == "unconfined" {
			e.report(r.Name, fmt.Sprintf("the container runs without an AppArmor profile (%q)", v), orKey(r.AppArmorProfile.Key, "process.apparmorProfile"))
		}
	}
}

func allowedSELinuxType(t string) bool {
	switch t {
	case "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t":
		return true
	}
	return false
}

func checkSELinuxOptions(o *SELinuxOptions, at func(string) string) (paths, why []string) {
	if o == nil {
		return nil, nil
	}
	if !allowedSELinuxType(o.Type) {
		paths, why = append(paths, at("seLinuxOptions.type")), append(why, "type "+o.Type)
	}
	if o.User != "" {
		paths, why = append(paths, at("seLinuxOptions.user")), append(why, "user "+o.User)
	}
	if o.Role != "" {
		paths, why = append(paths, at("seLinuxOptions.role")), append(why, "role "+o.Role)
	}
	return paths, why
}

func checkSELinux(e *env) {
	if p := e.pod(); p != nil {
		if paths, why := checkSELinuxOptions(p.SecurityContext.SELinuxOptions, func(f string) string {
			return e.podPath("securityContext." + f)
		}); len(paths) > 0 {
			e.report("", "the pod sets SELinux "+strings.Join(why, ", "), paths...)
		}
		for _, c := range e.ctrs {
			if paths, why := checkSELinuxOptions(c.SecurityContext.SELinuxOptions, c.sc); len(paths) > 0 {
				e.report(c.Name, fmt.Sprintf("container %q sets SELinux %s", c.Name, strings.Join(why, ", ")), paths...)
			}
		}
	}
	if r := e.runtime(); r != nil && r.HostSELinux && r.SELinuxLabel.Value == "" {
		e.report(r.Name, "the container has no SELinux label on an SELinux host", orKey(r.SELinuxLabel.Key, "process.selinuxLabel"))
	}
}

func checkProcMount(e *env) {
	// From PSS 1.35 the baseline allows any procMount in a user namespace.
	if p := e.pod(); p != nil && !isFalse(p.HostUsers) {
		for _, c := range e.ctrs {
			if pm := c.SecurityContext.ProcMount; pm != nil && *pm != "Default" {
				e.report(c.Name, fmt.Sprintf("container %q sets procMount: %s", c.Name, *pm), c.sc("procMount"))
			}
		}
	}
	if r := e.runtime(); r != nil && !r.MaskedPaths.Value {
		e.report(r.Name, "the container masks no /proc paths", orKey(r.MaskedPaths.Key, "linux.maskedPaths"))
	}
}

// safeSysctls is the Pod Security Standards' newest safe list (1.37).
func safeSysctls() []string {
	return []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
		"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
		"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
		"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}
}

func checkSysctls(e *env) {
	safe := func(n string) bool {
		return slices.Contains(safeSysctls(), n) || slices.Contains(e.opts.AllowedSysctls, n)
	}
	if p := e.pod(); p != nil {
		for i, s := range p.SecurityContext.Sysctls {
			if !safe(s.Name) {
				e.report("", fmt.Sprintf("the pod sets unsafe sysctl %s", s.Name),
					e.podPath("securityContext.sysctls["+strconv.Itoa(i)+"].name"))
			}
		}
	}
	if r := e.runtime(); r != nil {
		for _, s := range r.Sysctls {
			if !safe(s.Name) {
				e.report(r.Name, fmt.Sprintf("the container sets unsafe sysctl %s", s.Name), s.Key)
			}
		}
	}
}

func checkWindowsHostProcess(e *env) {
	p := e.pod()
	if p == nil {
		return
	}
	if isTrue(p.SecurityContext.WindowsHostProcess) {
		e.report("", "the pod sets windowsOptions.hostProcess: true", e.podPath("securityContext.windowsOptions.hostProcess"))
	}
	for _, c := range e.ctrs {
		if isTrue(c.SecurityContext.WindowsHostProcess) {
			e.report(c.Name, fmt.Sprintf("container %q sets windowsOptions.hostProcess: true", c.Name), c.sc("windowsOptions.hostProcess"))
		}
	}
}

func coreVolumeTypes() []string {
	return []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret"}
}

func checkVolumeTypes(e *env) {
	if p := e.pod(); p != nil {
		for i, v := range p.Volumes {
			if !slices.Contains(coreVolumeTypes(), v.Type) {
				e.report("", fmt.Sprintf("volume %q has type %s", v.Name, v.Type), volumePath(e, i, v))
			}
		}
	}
}

func checkHostProbe(e *env) {
	if e.pod() == nil {
		return
	}
	for _, c := range e.ctrs {
		var paths []string
		for _, h := range []struct {
			field string
			h     *Handler
		}{
			{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe},
			{"lifecycle.postStart", c.PostStart}, {"lifecycle.preStop", c.PreStop},
		} {
			if h.h == nil {
				continue
			}
			if h.h.HTTPGetHost != "" {
				paths = append(paths, c.at(h.field+".httpGet.host"))
			}
			if h.h.TCPSocketHost != "" {
				paths = append(paths, c.at(h.field+".tcpSocket.host"))
			}
		}
		if len(paths) > 0 {
			e.report(c.Name, fmt.Sprintf("container %q sets the host of a probe or lifecycle hook", c.Name), paths...)
		}
	}
}

func checkHostDevices(e *env) {
	if p := e.pod(); p != nil {
		for i, v := range p.Volumes {
			if v.Type == "hostPath" && under(v.HostPath, "/dev") {
				e.report("", fmt.Sprintf("volume %q mounts host device path %s", v.Name, v.HostPath), volumePath(e, i, v)+".path")
			}
		}
	}
	if r := e.runtime(); r != nil {
		if len(r.Devices.Value) > 0 {
			e.report(r.Name, "the container has host devices "+strings.Join(r.Devices.Value, ", "), r.Devices.Key)
		}
		if r.DevicesAllowAll.Value && !r.Privileged.Value {
			e.report(r.Name, "the container's device cgroup allows every device", r.DevicesAllowAll.Key)
		}
	}
}

func sharedPropagation(s string) bool { return s == "shared" || s == "rshared" }

func checkMountPropagation(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			for j, m := range c.VolumeMounts {
				if m.MountPropagation == "Bidirectional" {
					e.report(c.Name, fmt.Sprintf("container %q mounts %q with Bidirectional propagation", c.Name, m.Name),
						c.at("volumeMounts["+strconv.Itoa(j)+"].mountPropagation"))
				}
			}
		}
	}
	if r := e.runtime(); r != nil {
		for _, m := range r.Mounts {
			if sharedPropagation(m.Propagation) || slices.ContainsFunc(m.Options, sharedPropagation) {
				e.report(r.Name, fmt.Sprintf("the container mounts %s with shared propagation", m.Destination), m.Key)
			}
		}
		if sharedPropagation(r.RootfsPropagation.Value) {
			e.report(r.Name, "the container's root file system has shared propagation", r.RootfsPropagation.Key)
		}
	}
}

func checkReadonlyRootfs(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
				e.report(c.Name, fmt.Sprintf("container %q does not set readOnlyRootFilesystem: true", c.Name), c.sc("readOnlyRootFilesystem"))
			}
		}
	}
	if r := e.runtime(); r != nil && !r.ReadonlyRootfs.Value {
		e.report(r.Name, "the container's root file system is writable", orKey(r.ReadonlyRootfs.Key, "root.readonly"))
	}
}

func checkMemoryLimit(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			// Ephemeral containers may not set resources.
			if c.Kind != ContainerEphemeral && c.Resources.Limits["memory"] == "" {
				e.report(c.Name, fmt.Sprintf("container %q has no memory limit", c.Name), c.at("resources.limits.memory"))
			}
		}
	}
	if r := e.runtime(); r != nil && r.MemoryLimit.Value <= 0 {
		e.report(r.Name, "the container has no memory limit", orKey(r.MemoryLimit.Key, "linux.resources.memory.limit"))
	}
}

func checkCPULimit(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			if c.Kind != ContainerEphemeral && c.Resources.Limits["cpu"] == "" && c.Resources.Requests["cpu"] == "" {
				e.report(c.Name, fmt.Sprintf("container %q has no CPU request or limit", c.Name), c.at("resources.limits.cpu"))
			}
		}
	}
	if r := e.runtime(); r != nil && !r.CPU.Value.limited() {
		e.report(r.Name, "the container has no CPU shares, quota or limit", orKey(r.CPU.Key, "linux.resources.cpu"))
	}
}

func checkPidsLimit(e *env) {
	if r := e.runtime(); r != nil && r.PidsLimit.Value <= 0 {
		e.report(r.Name, "the container has no PIDs limit", orKey(r.PidsLimit.Key, "linux.resources.pids.limit"))
	}
}

func checkRestartPolicy(e *env) {
	r := e.runtime()
	if r == nil {
		return
	}
	switch rp := r.RestartPolicy.Value; {
	case rp.Name == "always":
		e.report(r.Name, "the container restarts always", r.RestartPolicy.Key)
	case rp.Name == "on-failure" && rp.MaximumRetryCount > 5:
		e.report(r.Name, fmt.Sprintf("the container restarts up to %d times on failure", rp.MaximumRetryCount), r.RestartPolicy.Key)
	}
}

func checkCgroupParent(e *env) {
	if r := e.runtime(); r != nil && r.CgroupParent.Value != "" {
		e.report(r.Name, "the container runs under cgroup parent "+r.CgroupParent.Value, r.CgroupParent.Key)
	}
}

func checkHealthcheck(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			// Only regular containers may have probes.
			if c.Kind == ContainerRegular && c.LivenessProbe == nil && c.ReadinessProbe == nil {
				e.report(c.Name, fmt.Sprintf("container %q has no liveness or readiness probe", c.Name), c.at("livenessProbe"))
			}
		}
	}
	// OCI runtime specs have no health checks; docker inspect does.
	if r := e.runtime(); r != nil && (e.w.Source.Kind == SourceDocker || r.Healthcheck.Key != "") && !r.Healthcheck.Value {
		e.report(r.Name, "the container has no health check", orKey(r.Healthcheck.Key, "Config.Healthcheck"))
	}
}

func checkSSHD(e *env) {
	if e.pod() != nil {
		podPorts(e, func(c ctr, j int, p ContainerPort) {
			if p.ContainerPort == 22 {
				e.report(c.Name, fmt.Sprintf("container %q listens on the SSH port 22", c.Name), portPath(c, j, "containerPort"))
			}
		})
	}
	if r := e.runtime(); r != nil && slices.Contains(r.Processes.Value, "sshd") {
		e.report(r.Name, "sshd runs in the container", r.Processes.Key)
	}
}

// unpinned reports why an image reference is not pinned, or "".
func unpinned(ref string) string {
	if ref == "" || strings.Contains(ref, "@") {
		return ""
	}
	last := ref[strings.LastIndexByte(ref, '/')+1:]
	_, tag, ok := strings.Cut(last, ":")
	switch {
	case !ok:
		return "has no tag"
	case tag == "latest":
		return "uses the latest tag"
	}
	return ""
}

func checkImageTag(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			if why := unpinned(c.Image); why != "" {
				e.report(c.Name, fmt.Sprintf("container %q image %s %s", c.Name, c.Image, why), c.at("image"))
			}
		}
	}
	if r := e.runtime(); r != nil {
		if why := unpinned(r.Image.Value); why != "" {
			e.report(r.Name, fmt.Sprintf("image %s %s", r.Image.Value, why), r.Image.Key)
		}
	}
}

var (
	secretName  = regexp.MustCompile(`(?i)PASS(WORD|WD)?|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL`)
	secretValue = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bglpat-[A-Za-z0-9_-]{20}\b|\bsk_live_[A-Za-z0-9]{16,}`)
)

// secretEnv reports whether a literal environment variable looks like a
// secret: a sensitive name with a value, or a value shaped like a key.
func secretEnv(name, value string) bool {
	return value != "" && (secretName.MatchString(name) || secretValue.MatchString(value))
}

func checkSecretsInEnv(e *env) {
	if e.pod() != nil {
		for _, c := range e.ctrs {
			for j, v := range c.Env {
				if !v.FromSource && secretEnv(v.Name, v.Value) {
					e.report(c.Name, fmt.Sprintf("container %q has secret %s in clear text", c.Name, v.Name),
						c.at("env["+strconv.Itoa(j)+"].value"))
				}
			}
		}
	}
	if r := e.runtime(); r != nil {
		for _, v := range r.Env {
			if secretEnv(v.Name, v.Value) {
				e.report(r.Name, fmt.Sprintf("the container has secret %s in clear text", v.Name), v.Key)
			}
		}
	}
}

func checkSATokenAutomount(e *env) {
	if p := e.pod(); p != nil && !isFalse(p.AutomountServiceAccountToken) {
		e.report("", "the pod does not set automountServiceAccountToken: false", e.podPath("automountServiceAccountToken"))
	}
}

func checkUlimitOverride(e *env) {
	if r := e.runtime(); r != nil && len(r.Ulimits.Value) > 0 {
		e.report(r.Name, "the container overrides ulimits "+strings.Join(r.Ulimits.Value, ", "), r.Ulimits.Key)
	}
}

func checkDefaultBridge(e *env) {
	if r := e.runtime(); r != nil && (r.NetworkMode.Value == "default" || r.NetworkMode.Value == "bridge") {
		e.report(r.Name, "the container is on the default bridge", r.NetworkMode.Key)
	}
}

func checkOnlyNeededPorts(e *env) {
	r := e.runtime()
	if r == nil {
		return
	}
	var ports, keys []string
	for _, p := range r.Ports {
		if p.HostPort != 0 {
			ports = append(ports, strconv.Itoa(p.HostPort))
			keys = append(keys, p.Key)
		}
	}
	if len(ports) > 0 {
		e.report(r.Name, "review the published host ports "+strings.Join(ports, ", "), keys...)
	}
}

func checkImageRunAsRoot(e *env) {
	if r := e.image(); r != nil && rootUser(r.User.Value) {
		e.report("", fmt.Sprintf("the image's user is %q", r.User.Value), orKey(r.User.Key, "config.User"))
	}
}

func checkImageHealthcheck(e *env) {
	if r := e.image(); r != nil && !r.Healthcheck.Value {
		e.report("", "the image has no HEALTHCHECK", orKey(r.Healthcheck.Key, "config.Healthcheck"))
	}
}

func checkImageSecretsEnv(e *env) {
	if r := e.image(); r != nil {
		for _, v := range r.Env {
			if secretEnv(v.Name, v.Value) {
				e.report("", fmt.Sprintf("the image sets secret %s in clear text", v.Name), v.Key)
			}
		}
	}
}

func checkImageSSHD(e *env) {
	r := e.image()
	if r == nil {
		return
	}
	if r.SSHDBinary.Value != "" {
		e.report("", "the image contains "+r.SSHDBinary.Value, r.SSHDBinary.Key)
	}
	for _, p := range r.Ports {
		if p.ContainerPort == 22 {
			e.report("", "the image exposes port 22", p.Key)
		}
	}
}
