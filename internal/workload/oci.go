package workload

import (
	"encoding/json"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"bulwark/internal/compliance"
)

// Annotations FromOCI reads to name a container, its image and its pod.
const (
	annotCRIContainerName = "io.kubernetes.cri.container-name"
	annotCRIContainerType = "io.kubernetes.cri.container-type"
	annotCRIImage         = "io.kubernetes.cri.image-name"
	annotCRISandboxName   = "io.kubernetes.cri.sandbox-name"
	annotCRISandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	annotPodName          = "io.kubernetes.pod.name"
	annotPodNamespace     = "io.kubernetes.pod.namespace"
	annotContainerName    = "io.kubernetes.container.name"
	annotCRIOImage        = "io.kubernetes.cri-o.ImageName"
	annotCRIOContainerTyp = "io.kubernetes.cri-o.ContainerType"
	annotCRIOLabels       = "io.kubernetes.cri-o.Labels"
	annotCRIOName         = "io.kubernetes.cri-o.ContainerName"
	annotNerdctlName      = "nerdctl/name"
	annotBulwarkImage     = "io.bulwark.image"
	annotOCIRefName       = "org.opencontainers.image.ref.name"
	annotOCIImageName     = "org.opencontainers.image.base.name"
	annotCRISandboxUID    = "io.kubernetes.cri.sandbox-uid"
	annotPodUID           = "io.kubernetes.pod.uid"
)

// IsSandbox reports whether an OCI spec's annotations mark a pod's sandbox
// (pause) container, which CRI runtimes create for every pod and which runs
// nothing of the user's.
func IsSandbox(annotations map[string]string) bool {
	return annotations[annotCRIContainerType] == "sandbox" || annotations[annotCRIOContainerTyp] == "sandbox"
}

// defaultDevices are the device nodes every runtime creates in a container
// (runc's defaults and containerd's WithDefaultUnixDevices); others in
// linux.devices are host devices passed in.
func defaultDevices() []string {
	return []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
		"/dev/console", "/dev/ptmx", "/dev/pts/ptmx"}
}

// nsFile is the /proc/<pid>/ns entry of an OCI namespace type.
func nsFile(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "net"
	case specs.MountNamespace:
		return "mnt"
	}
	return string(t)
}

// FromOCI reads an OCI runtime spec (a bundle's config.json) into a
// Workload whose Runtime facts carry the spec's keys. engine is the
// compliance engine (compliance.EngineContainerd …; see EngineOf); empty
// means: guess from the annotations (CRI, CRI-O, nerdctl), else unknown.
//
// A namespace is shared with the host when linux.namespaces has no entry
// for its type, or an entry whose path is PID 1's (/proc/1/ns/<type>).
func FromOCI(spec []byte, engine string) (compliance.Workload, error) {
	var s specs.Spec
	if err := decodeObject(spec, "OCI runtime spec", &s); err != nil {
		return compliance.Workload{}, err
	}
	if engine == "" {
		engine = guessEngine(s.Annotations)
	}
	w := compliance.Workload{Source: compliance.Source{
		Kind:        compliance.SourceOCI,
		Engine:      engine,
		Annotations: s.Annotations,
	}}
	r := &compliance.Runtime{}
	w.Runtime = r
	ann := s.Annotations
	first := func(keys ...string) (string, string) {
		for _, k := range keys {
			if v := ann[k]; v != "" {
				return v, k
			}
		}
		return "", ""
	}
	r.Name, _ = first(annotCRIContainerName, annotContainerName, annotCRIOName, annotNerdctlName)
	if img, key := first(annotCRIImage, annotCRIOImage, annotBulwarkImage, annotOCIImageName, annotOCIRefName); img != "" {
		r.Image = compliance.Fact[string]{Value: img, Key: "annotations[" + key + "]"}
	}
	if pod, _ := first(annotPodName, annotCRISandboxName); pod != "" {
		ns, _ := first(annotPodNamespace, annotCRISandboxNS)
		w.Source.Object = compliance.Object{APIVersion: "v1", Kind: "Pod", Name: pod, Namespace: ns}
	}
	if labels := ann[annotCRIOLabels]; labels != "" {
		var l map[string]string
		if json.Unmarshal([]byte(labels), &l) == nil {
			w.Source.Labels = l
		}
	}

	readProcess(r, s.Process)
	r.ReadonlyRootfs = compliance.Fact[bool]{Value: s.Root != nil && s.Root.Readonly, Key: "root.readonly"}
	podUID, _ := first(annotCRISandboxUID, annotPodUID)
	readMounts(r, s.Mounts, podUID)
	readLinux(r, s.Linux)
	return w, nil
}

func guessEngine(ann map[string]string) string {
	has := func(prefix string) bool {
		for k := range ann {
			if strings.HasPrefix(k, prefix) {
				return true
			}
		}
		return false
	}
	switch {
	case has("io.kubernetes.cri-o."):
		return compliance.EngineCRIO
	case has("io.kubernetes.cri."), has("nerdctl/"):
		return compliance.EngineContainerd
	}
	return ""
}

func readProcess(r *compliance.Runtime, p *specs.Process) {
	if p == nil {
		// No process: nothing runs as anyone yet; report the defaults a
		// runtime would use (root, no capabilities).
		r.User = compliance.Fact[string]{Value: "0", Key: "process.user.uid"}
		r.Bounding = compliance.Fact[[]string]{Value: []string{}, Key: "process.capabilities"}
		r.NoNewPrivileges = compliance.Fact[bool]{Key: "process.noNewPrivileges"}
		return
	}
	r.User = compliance.Fact[string]{Value: strconv.FormatUint(uint64(p.User.UID), 10), Key: "process.user.uid"}
	groups := []string{strconv.FormatUint(uint64(p.User.GID), 10)}
	groupKey := "process.user.gid"
	for i, g := range p.User.AdditionalGids {
		groups = append(groups, strconv.FormatUint(uint64(g), 10))
		if g == 0 && p.User.GID != 0 && groupKey == "process.user.gid" {
			groupKey = "process.user.additionalGids[" + strconv.Itoa(i) + "]"
		}
	}
	r.Groups = compliance.Fact[[]string]{Value: groups, Key: groupKey}
	// runc drops every capability of a process whose spec lists none.
	bounding := []string{}
	key := "process.capabilities"
	if p.Capabilities != nil {
		key = "process.capabilities.bounding"
		bounding = append(bounding, p.Capabilities.Bounding...)
	}
	r.Bounding = compliance.Fact[[]string]{Value: bounding, Key: key}
	r.NoNewPrivileges = compliance.Fact[bool]{Value: p.NoNewPrivileges, Key: "process.noNewPrivileges"}
	r.AppArmorProfile = compliance.Fact[string]{Value: p.ApparmorProfile, Key: "process.apparmorProfile"}
	// A runtime sets a profile only where AppArmor is enabled.
	r.HostAppArmor = p.ApparmorProfile != ""
	r.SELinuxLabel = compliance.Fact[string]{Value: p.SelinuxLabel, Key: "process.selinuxLabel"}
	r.HostSELinux = p.SelinuxLabel != ""
	for i, kv := range p.Env {
		name, value := splitEnv(kv)
		r.Env = append(r.Env, compliance.RuntimeEnv{Name: name, Value: value, Key: "process.env[" + strconv.Itoa(i) + "]"})
	}
}

// propagations are the mount options that set propagation.
func propagations() []string {
	return []string{"shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"}
}

// runtimeManaged reports whether a mount is one the kubelet or Docker
// makes for every container from the container's own directory (its hosts,
// hostname and resolv.conf files, /dev/shm, the pod's own volumes and
// service-account token) rather than a host path the user asked for. Their
// sources lie under /var/lib/kubelet and /var/lib/docker, which the
// sensitive-mount check would otherwise report for every container.
func runtimeManaged(m specs.Mount, podUID string) bool {
	src := path.Clean("/" + m.Source)
	if podUID != "" && safeName(podUID) && strings.HasPrefix(src, "/var/lib/kubelet/pods/"+podUID+"/") {
		return true
	}
	rest, ok := strings.CutPrefix(src, "/var/lib/docker/containers/")
	if !ok {
		return false
	}
	id, file, _ := strings.Cut(rest, "/")
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return false
	}
	switch file {
	case "hosts", "hostname", "resolv.conf":
		return m.Destination == "/etc/"+file
	case "mounts/shm":
		return m.Destination == "/dev/shm"
	}
	return false
}

func safeName(s string) bool { return s != "." && s != ".." && !strings.ContainsRune(s, '/') }

func readMounts(r *compliance.Runtime, mounts []specs.Mount, podUID string) {
	for i, m := range mounts {
		if runtimeManaged(m, podUID) {
			continue
		}
		cm := compliance.Mount{
			Type:        m.Type,
			Source:      m.Source,
			Destination: m.Destination,
			Options:     m.Options,
			Key:         "mounts[" + strconv.Itoa(i) + "]",
		}
		for _, o := range m.Options {
			switch {
			case o == "ro":
				cm.ReadOnly = true
			case o == "rw":
				cm.ReadOnly = false
			case o == "bind" || o == "rbind":
				if cm.Type == "" || cm.Type == "none" {
					cm.Type = "bind"
				}
			case slices.Contains(propagations(), o):
				cm.Propagation = o
			}
		}
		r.Mounts = append(r.Mounts, cm)
	}
}

func readLinux(r *compliance.Runtime, l *specs.Linux) {
	if l == nil {
		l = &specs.Linux{}
	}
	readNamespaces(r, l.Namespaces)
	r.Seccomp = compliance.Fact[bool]{Value: seccompConfines(l.Seccomp), Key: "linux.seccomp"}
	r.MaskedPaths = compliance.Fact[bool]{Value: len(l.MaskedPaths) > 0 || len(l.ReadonlyPaths) > 0, Key: "linux.maskedPaths"}
	r.RootfsPropagation = compliance.Fact[string]{Value: l.RootfsPropagation, Key: "linux.rootfsPropagation"}

	var devices []string
	for _, d := range l.Devices {
		if !slices.Contains(defaultDevices(), path.Clean("/"+d.Path)) {
			devices = append(devices, d.Path)
		}
	}
	r.Devices = compliance.Fact[[]string]{Value: devices, Key: "linux.devices"}

	names := make([]string, 0, len(l.Sysctl))
	for n := range l.Sysctl {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r.Sysctls = append(r.Sysctls, compliance.RuntimeSysctl{Name: n, Value: l.Sysctl[n], Key: quoteKey("linux.sysctl", n)})
	}

	res := l.Resources
	if res == nil {
		res = &specs.LinuxResources{}
	}
	allowAll, key := devicesAllowAll(res.Devices)
	r.DevicesAllowAll = compliance.Fact[bool]{Value: allowAll, Key: key}
	var mem int64
	if res.Memory != nil && res.Memory.Limit != nil {
		mem = *res.Memory.Limit
	}
	r.MemoryLimit = compliance.Fact[int64]{Value: mem, Key: "linux.resources.memory.limit"}
	var cpu compliance.CPU
	if c := res.CPU; c != nil {
		if c.Shares != nil {
			cpu.Shares = int64(min(*c.Shares, 1<<62)) //nolint:gosec // bounded above
		}
		if c.Quota != nil {
			cpu.Quota = *c.Quota
		}
	}
	r.CPU = compliance.Fact[compliance.CPU]{Value: cpu, Key: "linux.resources.cpu"}
	var pids int64
	if res.Pids != nil && res.Pids.Limit != nil {
		pids = *res.Pids.Limit
	}
	r.PidsLimit = compliance.Fact[int64]{Value: pids, Key: "linux.resources.pids.limit"}
}

// hostNamespaceTypes are the namespace types checked for sharing with the
// host, in report order.
func hostNamespaceTypes() []specs.LinuxNamespaceType {
	return []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.UserNamespace, specs.MountNamespace, specs.CgroupNamespace}
}

func readNamespaces(r *compliance.Runtime, nss []specs.LinuxNamespace) {
	for _, t := range hostNamespaceTypes() {
		i := slices.IndexFunc(nss, func(n specs.LinuxNamespace) bool { return n.Type == t })
		switch {
		case i < 0:
			r.HostNamespaces = append(r.HostNamespaces, compliance.HostNamespace{Type: string(t), Key: "linux.namespaces"})
		case nss[i].Path != "" && path.Clean(nss[i].Path) == "/proc/1/ns/"+nsFile(t):
			r.HostNamespaces = append(r.HostNamespaces, compliance.HostNamespace{Type: string(t), Key: "linux.namespaces[" + strconv.Itoa(i) + "].path"})
		}
	}
}

// seccompConfines reports whether a seccomp filter restricts anything: a
// profile whose default action allows and that lists no syscalls is
// unconfined in all but name.
func seccompConfines(s *specs.LinuxSeccomp) bool {
	if s == nil {
		return false
	}
	allows := s.DefaultAction == specs.ActAllow || s.DefaultAction == specs.ActLog
	return !allows || len(s.Syscalls) > 0
}

// devicesAllowAll applies the device cgroup rules in order (a later rule
// overrides an earlier one) and reports whether every device ends up
// allowed for read, write and mknod, with the key of the deciding rule.
func devicesAllowAll(rules []specs.LinuxDeviceCgroup) (bool, string) {
	allow, key := false, "linux.resources.devices"
	for i, d := range rules {
		anyType := d.Type == "" || d.Type == "a"
		anyNum := (d.Major == nil || *d.Major < 0) && (d.Minor == nil || *d.Minor < 0)
		access := d.Access == "" || (strings.Contains(d.Access, "r") && strings.Contains(d.Access, "w") && strings.Contains(d.Access, "m"))
		if anyType && anyNum && (access || !d.Allow) {
			allow, key = d.Allow && access, "linux.resources.devices["+strconv.Itoa(i)+"]"
		}
	}
	return allow, key
}
