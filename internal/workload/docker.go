package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"bulwark/internal/compliance"
)

// dockerContainer is the part of `docker inspect` output (the Engine API's
// ContainerJSON) the checks read. It is defined here rather than imported
// from Docker's module, which would bring the whole Engine API along.
type dockerContainer struct {
	ID              string          `json:"Id"`
	Name            string          `json:"Name"`
	Image           string          `json:"Image"` // the image ID
	AppArmorProfile string          `json:"AppArmorProfile"`
	ProcessLabel    string          `json:"ProcessLabel"`
	MountLabel      string          `json:"MountLabel"`
	Config          *dockerConfig   `json:"Config"`
	HostConfig      *dockerHost     `json:"HostConfig"`
	Mounts          []dockerMount   `json:"Mounts"`
	NetworkSettings *dockerNetworks `json:"NetworkSettings"`
}

type dockerConfig struct {
	Image        string              `json:"Image"`
	User         string              `json:"User"`
	Env          []string            `json:"Env"`
	Labels       map[string]string   `json:"Labels"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Healthcheck  *dockerHealthcheck  `json:"Healthcheck"`
}

type dockerHealthcheck struct {
	Test []string `json:"Test"`
}

// enabled reports whether a HEALTHCHECK runs: a test that is not NONE. An
// empty test inherits the image's, which docker inspect shows merged.
func (h *dockerHealthcheck) enabled() bool {
	return h != nil && len(h.Test) > 0 && h.Test[0] != "NONE"
}

type dockerHost struct {
	Privileged        bool                        `json:"Privileged"`
	CapAdd            []string                    `json:"CapAdd"`
	CapDrop           []string                    `json:"CapDrop"`
	SecurityOpt       []string                    `json:"SecurityOpt"`
	NetworkMode       string                      `json:"NetworkMode"`
	PidMode           string                      `json:"PidMode"`
	IpcMode           string                      `json:"IpcMode"`
	UTSMode           string                      `json:"UTSMode"`
	UsernsMode        string                      `json:"UsernsMode"`
	CgroupnsMode      string                      `json:"CgroupnsMode"`
	ReadonlyRootfs    bool                        `json:"ReadonlyRootfs"`
	PortBindings      map[string][]dockerPortBind `json:"PortBindings"`
	Devices           []dockerDevice              `json:"Devices"`
	DeviceCgroupRules []string                    `json:"DeviceCgroupRules"`
	Memory            int64                       `json:"Memory"`
	CPUShares         int64                       `json:"CpuShares"`
	CPUQuota          int64                       `json:"CpuQuota"`
	NanoCPUs          int64                       `json:"NanoCpus"`
	PidsLimit         *int64                      `json:"PidsLimit"`
	RestartPolicy     dockerRestart               `json:"RestartPolicy"`
	CgroupParent      string                      `json:"CgroupParent"`
	Sysctls           map[string]string           `json:"Sysctls"`
	Ulimits           []struct{ Name string }     `json:"Ulimits"`
	MaskedPaths       []string                    `json:"MaskedPaths"`
	ReadonlyPaths     []string                    `json:"ReadonlyPaths"`
	GroupAdd          []string                    `json:"GroupAdd"`
}

type dockerRestart struct {
	Name              string `json:"Name"`
	MaximumRetryCount int    `json:"MaximumRetryCount"`
}

type dockerPortBind struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

type dockerDevice struct {
	PathOnHost      string `json:"PathOnHost"`
	PathInContainer string `json:"PathInContainer"`
}

type dockerMount struct {
	Type        string `json:"Type"`
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	Mode        string `json:"Mode"`
	RW          bool   `json:"RW"`
	Propagation string `json:"Propagation"`
}

type dockerNetworks struct {
	Ports map[string][]dockerPortBind `json:"Ports"`
}

// FromDockerInspect reads `docker inspect` output: the array it prints, or
// one container object. Each container becomes a Workload of engine docker
// whose facts carry docker inspect's keys (HostConfig.PidMode, Mounts[2] …).
func FromDockerInspect(data []byte) ([]compliance.Workload, error) {
	if len(data) > maxInput {
		return nil, fmt.Errorf("%w: docker inspect output is %d bytes, more than %d", ErrInvalid, len(data), maxInput)
	}
	trimmed := bytes.TrimSpace(data)
	var raws []json.RawMessage
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		if err := dec.Decode(&raws); err != nil {
			return nil, fmt.Errorf("%w: docker inspect output: %v", ErrInvalid, err) //nolint:errorlint // a message for the user
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: docker inspect output: data after the array", ErrInvalid)
		}
	case len(trimmed) > 0 && trimmed[0] == '{':
		raws = []json.RawMessage{trimmed}
	default:
		return nil, fmt.Errorf("%w: docker inspect output is neither an array nor an object", ErrInvalid)
	}
	out := make([]compliance.Workload, 0, len(raws))
	for i, raw := range raws {
		var c dockerContainer
		if err := decodeObject(raw, fmt.Sprintf("docker inspect element %d", i), &c); err != nil {
			return nil, err
		}
		if c.Config == nil || c.HostConfig == nil {
			return nil, fmt.Errorf("%w: docker inspect element %d has no Config or HostConfig: not a container (docker image inspect output goes to FromImageConfig)", ErrInvalid, i)
		}
		out = append(out, fromDocker(c))
	}
	return out, nil
}

func fromDocker(c dockerContainer) compliance.Workload {
	cfg, hc := c.Config, c.HostConfig
	w := compliance.Workload{Source: compliance.Source{
		Kind:   compliance.SourceDocker,
		Engine: compliance.EngineDocker,
		ID:     c.ID,
		Labels: cfg.Labels,
	}}
	// Kubernetes on dockershim / cri-dockerd labels its containers.
	if pod := cfg.Labels[annotPodName]; pod != "" {
		w.Source.Object = compliance.Object{APIVersion: "v1", Kind: "Pod", Name: pod, Namespace: cfg.Labels[annotPodNamespace]}
	}
	r := &compliance.Runtime{Name: strings.TrimPrefix(c.Name, "/")}
	w.Runtime = r
	r.Image = compliance.Fact[string]{Value: cfg.Image, Key: "Config.Image"}

	for _, m := range []struct {
		ns, mode, key string
	}{
		{compliance.NamespaceNetwork, hc.NetworkMode, "HostConfig.NetworkMode"},
		{compliance.NamespacePID, hc.PidMode, "HostConfig.PidMode"},
		{compliance.NamespaceIPC, hc.IpcMode, "HostConfig.IpcMode"},
		{compliance.NamespaceUTS, hc.UTSMode, "HostConfig.UTSMode"},
		{compliance.NamespaceUser, hc.UsernsMode, "HostConfig.UsernsMode"},
		{compliance.NamespaceCgroup, hc.CgroupnsMode, "HostConfig.CgroupnsMode"},
	} {
		if m.mode == "host" {
			r.HostNamespaces = append(r.HostNamespaces, compliance.HostNamespace{Type: m.ns, Key: m.key})
		}
	}

	r.Privileged = compliance.Fact[bool]{Value: hc.Privileged, Key: "HostConfig.Privileged"}
	r.CapAdd = compliance.Fact[[]string]{Value: hc.CapAdd, Key: "HostConfig.CapAdd"}
	r.CapDrop = compliance.Fact[[]string]{Value: hc.CapDrop, Key: "HostConfig.CapDrop"}
	readSecurityOpt(r, hc)
	r.AppArmorProfile = compliance.Fact[string]{Value: c.AppArmorProfile, Key: "AppArmorProfile"}
	// Docker fills AppArmorProfile only on AppArmor hosts, and the SELinux
	// labels only on SELinux hosts.
	r.HostAppArmor = c.AppArmorProfile != ""
	if r.SELinuxLabel.Value == "" && c.ProcessLabel != "" {
		r.SELinuxLabel = compliance.Fact[string]{Value: c.ProcessLabel, Key: "ProcessLabel"}
	}
	r.HostSELinux = c.ProcessLabel != "" || c.MountLabel != ""

	r.User = compliance.Fact[string]{Value: cfg.User, Key: "Config.User"}
	if len(hc.GroupAdd) > 0 {
		r.Groups = compliance.Fact[[]string]{Value: hc.GroupAdd, Key: "HostConfig.GroupAdd"}
	}
	r.ReadonlyRootfs = compliance.Fact[bool]{Value: hc.ReadonlyRootfs, Key: "HostConfig.ReadonlyRootfs"}
	for i, m := range c.Mounts {
		r.Mounts = append(r.Mounts, compliance.Mount{
			Type:        m.Type,
			Source:      m.Source,
			Destination: m.Destination,
			ReadOnly:    !m.RW,
			Propagation: m.Propagation,
			Options:     splitMode(m.Mode),
			Key:         "Mounts[" + strconv.Itoa(i) + "]",
		})
	}
	r.Ports = dockerPorts(cfg, hc, c.NetworkSettings)
	for i, kv := range cfg.Env {
		name, value := splitEnv(kv)
		r.Env = append(r.Env, compliance.RuntimeEnv{Name: name, Value: value, Key: "Config.Env[" + strconv.Itoa(i) + "]"})
	}
	names := make([]string, 0, len(hc.Sysctls))
	for n := range hc.Sysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r.Sysctls = append(r.Sysctls, compliance.RuntimeSysctl{Name: n, Value: hc.Sysctls[n], Key: quoteKey("HostConfig.Sysctls", n)})
	}
	var ulimits []string
	for _, u := range hc.Ulimits {
		ulimits = append(ulimits, u.Name)
	}
	r.Ulimits = compliance.Fact[[]string]{Value: ulimits, Key: "HostConfig.Ulimits"}
	r.NetworkMode = compliance.Fact[string]{Value: hc.NetworkMode, Key: "HostConfig.NetworkMode"}

	// A privileged container has no masked paths, every device and no
	// seccomp filter, whatever else its config says.
	masked := !hc.Privileged
	maskedKey := "HostConfig.Privileged"
	if hc.MaskedPaths != nil || hc.ReadonlyPaths != nil {
		masked, maskedKey = len(hc.MaskedPaths) > 0 || len(hc.ReadonlyPaths) > 0, "HostConfig.MaskedPaths"
	}
	r.MaskedPaths = compliance.Fact[bool]{Value: masked, Key: maskedKey}
	var devices []string
	for _, d := range hc.Devices {
		devices = append(devices, d.PathOnHost)
	}
	r.Devices = compliance.Fact[[]string]{Value: devices, Key: "HostConfig.Devices"}
	r.DevicesAllowAll = compliance.Fact[bool]{Value: hc.Privileged, Key: "HostConfig.Privileged"}
	for i, rule := range hc.DeviceCgroupRules {
		if f := strings.Fields(rule); len(f) >= 2 && f[0] == "a" && (f[1] == "*:*" || len(f) == 2) {
			r.DevicesAllowAll = compliance.Fact[bool]{Value: true, Key: "HostConfig.DeviceCgroupRules[" + strconv.Itoa(i) + "]"}
		}
	}

	r.MemoryLimit = compliance.Fact[int64]{Value: hc.Memory, Key: "HostConfig.Memory"}
	cpuKey := "HostConfig.CpuShares"
	switch {
	case hc.NanoCPUs > 0:
		cpuKey = "HostConfig.NanoCpus"
	case hc.CPUQuota > 0:
		cpuKey = "HostConfig.CpuQuota"
	}
	r.CPU = compliance.Fact[compliance.CPU]{Value: compliance.CPU{Shares: hc.CPUShares, Quota: hc.CPUQuota, NanoCPUs: hc.NanoCPUs}, Key: cpuKey}
	var pids int64
	if hc.PidsLimit != nil {
		pids = *hc.PidsLimit
	}
	r.PidsLimit = compliance.Fact[int64]{Value: pids, Key: "HostConfig.PidsLimit"}
	r.RestartPolicy = compliance.Fact[compliance.RestartPolicy]{
		Value: compliance.RestartPolicy{Name: hc.RestartPolicy.Name, MaximumRetryCount: hc.RestartPolicy.MaximumRetryCount},
		Key:   "HostConfig.RestartPolicy",
	}
	r.CgroupParent = compliance.Fact[string]{Value: hc.CgroupParent, Key: "HostConfig.CgroupParent"}
	r.Healthcheck = compliance.Fact[bool]{Value: cfg.Healthcheck.enabled(), Key: "Config.Healthcheck"}
	return w
}

// readSecurityOpt reads HostConfig.SecurityOpt: no-new-privileges,
// seccomp, apparmor and SELinux label options, written "name=value" or,
// before Docker 1.11, "name:value".
func readSecurityOpt(r *compliance.Runtime, hc *dockerHost) {
	r.NoNewPrivileges = compliance.Fact[bool]{Key: "HostConfig.SecurityOpt"}
	r.Seccomp = compliance.Fact[bool]{Value: !hc.Privileged, Key: "HostConfig.SecurityOpt"}
	if hc.Privileged {
		r.Seccomp.Key = "HostConfig.Privileged"
	}
	for i, o := range hc.SecurityOpt {
		key := "HostConfig.SecurityOpt[" + strconv.Itoa(i) + "]"
		name, value, ok := strings.Cut(o, "=")
		if !ok {
			name, value, _ = strings.Cut(o, ":")
		}
		switch name {
		case "no-new-privileges":
			on := value == "" || value == "true"
			r.NoNewPrivileges = compliance.Fact[bool]{Value: on, Key: key}
		case "seccomp":
			if value == "unconfined" {
				r.Seccomp = compliance.Fact[bool]{Value: false, Key: key}
			}
		case "label":
			if value != "disable" && value != "" {
				r.SELinuxLabel = compliance.Fact[string]{Value: value, Key: key}
			}
		}
	}
}

// splitMode splits a mount's Mode ("ro,Z", "z", "rshared") into options.
func splitMode(mode string) []string {
	if mode == "" {
		return nil
	}
	return strings.Split(mode, ",")
}

// dockerPorts lists the published ports (HostConfig.PortBindings, with the
// host port docker picked from NetworkSettings.Ports when the binding left
// it empty) and the exposed ones that are not published.
func dockerPorts(cfg *dockerConfig, hc *dockerHost, ns *dockerNetworks) []compliance.PortBinding {
	var out []compliance.PortBinding
	specs := make([]string, 0, len(hc.PortBindings))
	for p := range hc.PortBindings {
		specs = append(specs, p)
	}
	sort.Strings(specs)
	for _, p := range specs {
		port, proto := splitPort(p)
		for j, b := range hc.PortBindings[p] {
			key := fmt.Sprintf("HostConfig.PortBindings[%s][%d]", p, j)
			hostPort, _ := strconv.Atoi(b.HostPort)
			if hostPort == 0 && ns != nil && j < len(ns.Ports[p]) {
				if n, err := strconv.Atoi(ns.Ports[p][j].HostPort); err == nil {
					hostPort, key = n, fmt.Sprintf("NetworkSettings.Ports[%s][%d]", p, j)
				}
			}
			out = append(out, compliance.PortBinding{ContainerPort: port, Protocol: proto, HostIP: b.HostIP, HostPort: hostPort, Key: key})
		}
	}
	exposed := make([]string, 0, len(cfg.ExposedPorts))
	for p := range cfg.ExposedPorts {
		if _, published := hc.PortBindings[p]; !published {
			exposed = append(exposed, p)
		}
	}
	sort.Strings(exposed)
	for _, p := range exposed {
		port, proto := splitPort(p)
		out = append(out, compliance.PortBinding{ContainerPort: port, Protocol: proto, Key: "Config.ExposedPorts[" + p + "]"})
	}
	return out
}

// splitPort splits "80/tcp" into 80 and "tcp"; no protocol means tcp.
func splitPort(p string) (int, string) {
	port, proto, ok := strings.Cut(p, "/")
	if !ok {
		proto = "tcp"
	}
	n, _ := strconv.Atoi(port)
	return n, proto
}
