package compliance

import (
	"strconv"
	"strings"
)

// SourceKind says what input a Workload was normalized from.
type SourceKind string

// The inputs a Workload is normalized from.
const (
	SourceManifest SourceKind = "manifest" // a Kubernetes object: Pod, a pod controller, a PodTemplate
	SourceOCI      SourceKind = "oci"      // an OCI runtime spec (config.json)
	SourceDocker   SourceKind = "docker"   // docker inspect JSON of a container
	SourceImage    SourceKind = "image"    // an image config (docker/OCI image config JSON)
)

// Engines name the container engine that runs (or would run) a workload.
// They decide which Prisma ID a finding carries: see Workload.RuntimeIsCRI.
const (
	EngineDocker     = "docker"
	EngineContainerd = "containerd"
	EngineCRIO       = "cri-o"
)

// Workload is what every input is normalized to. Manifests fill Pod (whose
// Containers carry the Kubernetes container fields); runtime configs (OCI,
// docker inspect) and image configs fill Runtime. A Defender that knows both
// the pod spec and the running container's config may fill both; the checks
// then report from each.
//
// Field paths. Findings name the field that caused them:
//   - Pod and Container hold Kubernetes-shaped fields whose names are fixed,
//     so the normalizer records only path prefixes (Pod.Path, Pod.MetaPath,
//     Container.Path) and the checks append the Kubernetes field names:
//     `spec.template.spec.containers[1].securityContext.privileged`.
//   - Runtime facts come from inputs whose keys differ (docker inspect's
//     `HostConfig.PidMode`, OCI's `linux.namespaces`), so every fact carries
//     the key it was read from (Fact.Key, Mount.Key …).
type Workload struct {
	Source  Source   `json:"source"`
	Pod     *Pod     `json:"pod,omitempty"`
	Runtime *Runtime `json:"runtime,omitempty"`
}

// Source says where a workload came from and how to find it again.
type Source struct {
	Kind SourceKind `json:"kind"`
	// Engine is the container engine: EngineDocker, EngineContainerd,
	// EngineCRIO; empty when unknown. Manifests are assumed to run on CRI.
	Engine string `json:"engine,omitempty"`
	// File and Line locate the input (a manifest file and the line where the
	// document starts), for SARIF and error messages.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Object is the Kubernetes object for manifests (and for CRI containers
	// whose pod is known from io.kubernetes.* annotations).
	Object Object `json:"object,omitzero"`
	// ID is the container or image ID for runtime and image inputs.
	ID string `json:"id,omitempty"`
	// Host and Cluster scope the workload for collections.
	Host    string `json:"host,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Labels and Annotations of the object (manifests) or of the container
	// (docker labels, OCI annotations).
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Object identifies a Kubernetes object.
type Object struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
}

// RuntimeIsCRI reports whether findings carry CRI (5xxx) or Docker IDs:
// a Docker engine container gets the Docker ID; a CRI container and a
// Kubernetes manifest (whose pods will run on CRI) get the CRI ID. Images get
// the Docker ID unless their engine is a CRI one.
func (w Workload) RuntimeIsCRI() bool {
	switch w.Source.Kind {
	case SourceManifest:
		return true
	case SourceDocker:
		return false
	}
	return w.Source.Engine == EngineContainerd || w.Source.Engine == EngineCRIO
}

// Pod is a Kubernetes pod spec, from a Pod, a pod controller's template or a
// CronJob's job template. Nil pointers are fields the manifest leaves unset.
type Pod struct {
	// Path is the field path of the pod spec in the object: "spec" for a
	// Pod, "spec.template.spec" for a Deployment, DaemonSet, StatefulSet,
	// ReplicaSet, Job, ReplicationController, PodTemplate ("template.spec"),
	// "spec.jobTemplate.spec.template.spec" for a CronJob. Empty means "spec".
	Path string `json:"path,omitempty"`
	// MetaPath is the field path of the pod's metadata: "metadata",
	// "spec.template.metadata" … Empty means the sibling of Path.
	MetaPath string `json:"metaPath,omitempty"`
	// Annotations of the pod (template): legacy seccomp and AppArmor
	// annotations live here.
	Annotations map[string]string `json:"annotations,omitempty"`

	HostNetwork *bool `json:"hostNetwork,omitempty"`
	HostPID     *bool `json:"hostPID,omitempty"`
	HostIPC     *bool `json:"hostIPC,omitempty"`
	HostUsers   *bool `json:"hostUsers,omitempty"`
	// OS is spec.os.name ("linux", "windows" or empty).
	OS                           string             `json:"os,omitempty"`
	AutomountServiceAccountToken *bool              `json:"automountServiceAccountToken,omitempty"`
	SecurityContext              PodSecurityContext `json:"securityContext,omitzero"`
	Volumes                      []Volume           `json:"volumes,omitempty"`
	// Containers holds containers, initContainers and ephemeralContainers,
	// in that order; Container.Kind tells them apart.
	Containers []Container `json:"containers,omitempty"`
}

// PodSecurityContext is spec.securityContext.
type PodSecurityContext struct {
	RunAsNonRoot       *bool           `json:"runAsNonRoot,omitempty"`
	RunAsUser          *int64          `json:"runAsUser,omitempty"`
	RunAsGroup         *int64          `json:"runAsGroup,omitempty"`
	FSGroup            *int64          `json:"fsGroup,omitempty"`
	SupplementalGroups []int64         `json:"supplementalGroups,omitempty"`
	SeccompProfile     *Profile        `json:"seccompProfile,omitempty"`
	AppArmorProfile    *Profile        `json:"appArmorProfile,omitempty"`
	SELinuxOptions     *SELinuxOptions `json:"seLinuxOptions,omitempty"`
	Sysctls            []Sysctl        `json:"sysctls,omitempty"`
	// WindowsHostProcess is windowsOptions.hostProcess.
	WindowsHostProcess *bool `json:"windowsHostProcess,omitempty"`
}

// Profile is a seccompProfile or appArmorProfile: Type is RuntimeDefault,
// Localhost or Unconfined.
type Profile struct {
	Type             string `json:"type,omitempty"`
	LocalhostProfile string `json:"localhostProfile,omitempty"`
}

// SELinuxOptions is seLinuxOptions.
type SELinuxOptions struct {
	User  string `json:"user,omitempty"`
	Role  string `json:"role,omitempty"`
	Type  string `json:"type,omitempty"`
	Level string `json:"level,omitempty"`
}

// Sysctl is a sysctl name and value.
type Sysctl struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Volume is one entry of spec.volumes.
type Volume struct {
	Name string `json:"name"`
	// Type is the volume source's field name: hostPath, configMap, secret,
	// emptyDir, persistentVolumeClaim, nfs …
	Type string `json:"type"`
	// HostPath is hostPath.path for hostPath volumes.
	HostPath string `json:"hostPath,omitempty"`
}

// ContainerKind tells containers, initContainers and ephemeralContainers
// apart.
type ContainerKind string

// The container kinds; the empty kind is a regular container.
const (
	ContainerRegular   ContainerKind = ""
	ContainerInit      ContainerKind = "init"
	ContainerEphemeral ContainerKind = "ephemeral"
)

// field is the pod spec field that lists containers of this kind.
func (k ContainerKind) field() string {
	switch k {
	case ContainerInit:
		return "initContainers"
	case ContainerEphemeral:
		return "ephemeralContainers"
	}
	return "containers"
}

// ContainerPath is the field path of the i-th container of kind k in the
// pod spec at podPath: ContainerPath("spec.template.spec", ContainerInit, 0)
// is "spec.template.spec.initContainers[0]". Normalizers use it to fill
// Container.Path.
func ContainerPath(podPath string, k ContainerKind, i int) string {
	return join(orDefault(podPath, "spec"), k.field()+"["+strconv.Itoa(i)+"]")
}

// Container is one container of a pod spec.
type Container struct {
	Name  string        `json:"name"`
	Image string        `json:"image,omitempty"`
	Kind  ContainerKind `json:"kind,omitempty"`
	// Path is the container's field path, e.g.
	// "spec.template.spec.containers[1]". Empty: derived from the pod's
	// Path, the kind and the container's position among its kind.
	Path            string          `json:"path,omitempty"`
	SecurityContext SecurityContext `json:"securityContext,omitzero"`
	Ports           []ContainerPort `json:"ports,omitempty"`
	Env             []EnvVar        `json:"env,omitempty"`
	Resources       Resources       `json:"resources,omitzero"`
	LivenessProbe   *Handler        `json:"livenessProbe,omitempty"`
	ReadinessProbe  *Handler        `json:"readinessProbe,omitempty"`
	StartupProbe    *Handler        `json:"startupProbe,omitempty"`
	PostStart       *Handler        `json:"postStart,omitempty"` // lifecycle.postStart
	PreStop         *Handler        `json:"preStop,omitempty"`   // lifecycle.preStop
	VolumeMounts    []VolumeMount   `json:"volumeMounts,omitempty"`
}

// SecurityContext is a container's securityContext.
type SecurityContext struct {
	Privileged               *bool           `json:"privileged,omitempty"`
	AllowPrivilegeEscalation *bool           `json:"allowPrivilegeEscalation,omitempty"`
	CapabilitiesAdd          []string        `json:"capabilitiesAdd,omitempty"`  // capabilities.add
	CapabilitiesDrop         []string        `json:"capabilitiesDrop,omitempty"` // capabilities.drop
	ReadOnlyRootFilesystem   *bool           `json:"readOnlyRootFilesystem,omitempty"`
	RunAsNonRoot             *bool           `json:"runAsNonRoot,omitempty"`
	RunAsUser                *int64          `json:"runAsUser,omitempty"`
	RunAsGroup               *int64          `json:"runAsGroup,omitempty"`
	ProcMount                *string         `json:"procMount,omitempty"`
	SeccompProfile           *Profile        `json:"seccompProfile,omitempty"`
	AppArmorProfile          *Profile        `json:"appArmorProfile,omitempty"`
	SELinuxOptions           *SELinuxOptions `json:"seLinuxOptions,omitempty"`
	WindowsHostProcess       *bool           `json:"windowsHostProcess,omitempty"` // windowsOptions.hostProcess
}

// ContainerPort is one entry of a container's ports.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int    `json:"containerPort"`
	HostPort      int    `json:"hostPort,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

// EnvVar is one entry of a container's env. FromSource is true for
// valueFrom (secretKeyRef, configMapKeyRef, fieldRef …), whose Value is empty.
type EnvVar struct {
	Name       string `json:"name"`
	Value      string `json:"value,omitempty"`
	FromSource bool   `json:"fromSource,omitempty"`
}

// Resources are a container's requests and limits as written ("500m",
// "128Mi"), by resource name (cpu, memory, ephemeral-storage …).
type Resources struct {
	Limits   map[string]string `json:"limits,omitempty"`
	Requests map[string]string `json:"requests,omitempty"`
}

// Handler is a probe or lifecycle hook. Only what the checks need: whether
// it exists, and the host fields of httpGet and tcpSocket.
type Handler struct {
	HTTPGetHost   string `json:"httpGetHost,omitempty"`   // httpGet.host
	TCPSocketHost string `json:"tcpSocketHost,omitempty"` // tcpSocket.host
}

// VolumeMount is one entry of a container's volumeMounts.
type VolumeMount struct {
	Name             string `json:"name"`
	MountPath        string `json:"mountPath"`
	ReadOnly         bool   `json:"readOnly,omitempty"`
	MountPropagation string `json:"mountPropagation,omitempty"` // None, HostToContainer, Bidirectional
}

// Fact is a value read from a runtime or image config and the key it was
// read from, which findings point at: "HostConfig.Privileged",
// "process.noNewPrivileges", "config.User". An empty Key means the input did
// not say; the value is then the normalizer's default.
type Fact[T any] struct {
	Value T      `json:"value"`
	Key   string `json:"key,omitempty"`
}

// Runtime holds the facts of one container's runtime config (docker inspect,
// OCI config.json) or of an image config. Docker and OCI keep the same fact
// in different places; normalizers record where (Fact.Key).
type Runtime struct {
	Name  string       `json:"name,omitempty"` // container name
	Image Fact[string] `json:"image,omitzero"` // image reference

	// HostNamespaces are the namespaces shared with the host. OCI: a type
	// with no entry in linux.namespaces, or one whose path is PID 1's
	// (/proc/1/ns/<type>). Docker: NetworkMode/PidMode/IpcMode/UTSMode/
	// UsernsMode "host".
	HostNamespaces []HostNamespace `json:"hostNamespaces,omitempty"`

	// Privileged is docker's HostConfig.Privileged. OCI has no such flag;
	// the privileged check infers it from the other facts.
	Privileged Fact[bool] `json:"privileged,omitzero"`
	// Bounding is the capability bounding set (OCI
	// process.capabilities.bounding), names with or without "CAP_". Nil when
	// unknown: docker inspect has only CapAdd and CapDrop, from which the
	// checks derive it.
	Bounding Fact[[]string] `json:"bounding,omitzero"`
	CapAdd   Fact[[]string] `json:"capAdd,omitzero"`  // docker HostConfig.CapAdd
	CapDrop  Fact[[]string] `json:"capDrop,omitzero"` // docker HostConfig.CapDrop

	// NoNewPrivileges: OCI process.noNewPrivileges; docker SecurityOpt
	// "no-new-privileges" (or "no-new-privileges:true").
	NoNewPrivileges Fact[bool] `json:"noNewPrivileges,omitzero"`
	// Seccomp: a seccomp profile applies. OCI: linux.seccomp present;
	// docker: SecurityOpt has no seccomp=unconfined.
	Seccomp Fact[bool] `json:"seccomp,omitzero"`
	// MaskedPaths: OCI linux.maskedPaths or readonlyPaths non-empty; docker
	// HostConfig.MaskedPaths non-empty (or not privileged).
	MaskedPaths Fact[bool] `json:"maskedPaths,omitzero"`
	// DevicesAllowAll: the device cgroup allows every device (OCI
	// linux.resources.devices [{allow:true, access:rwm}] with no type).
	DevicesAllowAll Fact[bool] `json:"devicesAllowAll,omitzero"`
	// Devices are host devices beyond the runtime's default set (docker
	// HostConfig.Devices, OCI linux.devices).
	Devices Fact[[]string] `json:"devices,omitzero"`
	// AppArmorProfile: docker AppArmorProfile, OCI process.apparmorProfile.
	AppArmorProfile Fact[string] `json:"appArmorProfile,omitzero"`
	// SELinuxLabel: docker SecurityOpt label=…, OCI process.selinuxLabel.
	SELinuxLabel Fact[string] `json:"seLinuxLabel,omitzero"`
	// HostAppArmor and HostSELinux say whether the host enforces them; the
	// AppArmor and SELinux checks report a missing profile only then.
	HostAppArmor bool `json:"hostAppArmor,omitempty"`
	HostSELinux  bool `json:"hostSELinux,omitempty"`

	// User as written: docker Config.User ("", "0", "root", "1000:1000",
	// "app"), OCI process.user.uid (as a number), image config User.
	User Fact[string] `json:"user,omitzero"`
	// Groups are the primary and supplementary group IDs when known (OCI
	// process.user.gid and additionalGids; docker GroupAdd).
	Groups Fact[[]string] `json:"groups,omitzero"`

	ReadonlyRootfs Fact[bool] `json:"readonlyRootfs,omitzero"`
	// RootfsPropagation is OCI linux.rootfsPropagation.
	RootfsPropagation Fact[string]    `json:"rootfsPropagation,omitzero"`
	Mounts            []Mount         `json:"mounts,omitempty"`
	Ports             []PortBinding   `json:"ports,omitempty"`
	Env               []RuntimeEnv    `json:"env,omitempty"`
	Sysctls           []RuntimeSysctl `json:"sysctls,omitempty"`
	// Ulimits are docker HostConfig.Ulimits overrides (names).
	Ulimits Fact[[]string] `json:"ulimits,omitzero"`
	// NetworkMode is docker HostConfig.NetworkMode.
	NetworkMode Fact[string] `json:"networkMode,omitzero"`

	// MemoryLimit in bytes, 0 = unlimited (docker HostConfig.Memory, OCI
	// linux.resources.memory.limit).
	MemoryLimit Fact[int64] `json:"memoryLimit,omitzero"`
	CPU         Fact[CPU]   `json:"cpu,omitzero"`
	// PidsLimit ≤ 0 = unlimited (docker PidsLimit nil/0/-1, OCI
	// linux.resources.pids.limit).
	PidsLimit     Fact[int64]         `json:"pidsLimit,omitzero"`
	RestartPolicy Fact[RestartPolicy] `json:"restartPolicy,omitzero"`
	CgroupParent  Fact[string]        `json:"cgroupParent,omitzero"`
	// Healthcheck: docker Config.Healthcheck (or the image's HEALTHCHECK)
	// is set and not NONE.
	Healthcheck Fact[bool] `json:"healthcheck,omitzero"`
	// Processes are the command names running in the container, when a node
	// agent has read them (/proc/<pid>/comm); nil when unknown.
	Processes Fact[[]string] `json:"processes,omitzero"`
	// SSHDBinary is the path of an sshd executable found in an image's
	// file system, empty if none (Key: the layer or "rootfs").
	SSHDBinary Fact[string] `json:"sshdBinary,omitzero"`
}

// Namespace types as OCI names them.
const (
	NamespaceNetwork = "network"
	NamespacePID     = "pid"
	NamespaceIPC     = "ipc"
	NamespaceUTS     = "uts"
	NamespaceUser    = "user"
	NamespaceMount   = "mount"
	NamespaceCgroup  = "cgroup"
)

// HostNamespace is a namespace a container shares with the host.
type HostNamespace struct {
	Type string `json:"type"` // NamespaceNetwork …
	Key  string `json:"key"`  // "linux.namespaces", "HostConfig.PidMode"
}

// Mount is a runtime mount (docker Mounts[], OCI mounts[]).
type Mount struct {
	Type        string   `json:"type,omitempty"` // bind, volume, tmpfs …
	Source      string   `json:"source,omitempty"`
	Destination string   `json:"destination"`
	ReadOnly    bool     `json:"readOnly,omitempty"`
	Propagation string   `json:"propagation,omitempty"` // shared, rshared, slave …
	Options     []string `json:"options,omitempty"`
	Key         string   `json:"key"` // "Mounts[2]", "mounts[5]"
}

// PortBinding is a published or exposed port. HostPort 0 is exposed only
// (image EXPOSE, docker ExposedPorts).
type PortBinding struct {
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
	HostPort      int    `json:"hostPort,omitempty"`
	Key           string `json:"key"` // "HostConfig.PortBindings[80/tcp][0]", "config.ExposedPorts[22/tcp]"
}

// RuntimeEnv is an environment variable of a runtime or image config.
type RuntimeEnv struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	Key   string `json:"key"` // "Config.Env[3]", "process.env[3]", "config.Env[0]"
}

// RuntimeSysctl is a sysctl set on a container.
type RuntimeSysctl struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	Key   string `json:"key"` // "HostConfig.Sysctls", "linux.sysctl"
}

// CPU is a container's CPU controls.
type CPU struct {
	Shares   int64 `json:"shares,omitempty"`   // 0 or 1024 = default
	Quota    int64 `json:"quota,omitempty"`    // docker CpuQuota, OCI linux.resources.cpu.quota
	NanoCPUs int64 `json:"nanoCPUs,omitempty"` // docker NanoCpus
}

// limited reports whether any CPU control departs from the default.
func (c CPU) limited() bool {
	return (c.Shares != 0 && c.Shares != 1024) || c.Quota > 0 || c.NanoCPUs > 0
}

// RestartPolicy is docker's HostConfig.RestartPolicy.
type RestartPolicy struct {
	Name              string `json:"name,omitempty"` // no, always, unless-stopped, on-failure
	MaximumRetryCount int    `json:"maximumRetryCount,omitempty"`
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if strings.HasPrefix(field, "[") {
		return prefix + field
	}
	return prefix + "." + field
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
