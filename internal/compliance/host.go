package compliance

import (
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
)

// Host holds the facts the host checks need, read by an adapter from a host
// root: daemon.json and dockerd flags, file owners and modes, auditd rules,
// kubelet flags and config. A nil section means the component is absent (no
// Docker, no kubelet) and its checks do not apply.
type Host struct {
	Name    string   `json:"name,omitempty"`
	Docker  *Docker  `json:"docker,omitempty"`
	Files   []File   `json:"files,omitempty"`
	Audit   *Audit   `json:"audit,omitempty"`
	Kubelet *Kubelet `json:"kubelet,omitempty"`
}

// Docker is the Docker daemon's effective configuration: daemon.json merged
// with dockerd's command line. Nil pointers are options set nowhere; the
// checks then apply dockerd's defaults.
type Docker struct {
	ICC                *bool    `json:"icc,omitempty"`
	Hosts              []string `json:"hosts,omitempty"` // -H / "hosts": unix://…, tcp://…, fd://
	TLSVerify          *bool    `json:"tlsverify,omitempty"`
	TLSCACert          string   `json:"tlscacert,omitempty"`
	TLSCert            string   `json:"tlscert,omitempty"`
	TLSKey             string   `json:"tlskey,omitempty"`
	InsecureRegistries []string `json:"insecureRegistries,omitempty"` // docker info InsecureRegistryCIDRs and IndexConfigs
	UsernsRemap        string   `json:"usernsRemap,omitempty"`
	NoNewPrivileges    *bool    `json:"noNewPrivileges,omitempty"`
	LiveRestore        *bool    `json:"liveRestore,omitempty"`
	UserlandProxy      *bool    `json:"userlandProxy,omitempty"`
	Experimental       *bool    `json:"experimental,omitempty"`
	// Sources say where each option was set, by its daemon.json name
	// ("icc", "tlsverify", "insecure-registries" …): "/etc/docker/daemon.json#icc"
	// or "dockerd --icc". Findings about unset options point at
	// ConfigFile#<name>.
	Sources    map[string]string `json:"sources,omitempty"`
	ConfigFile string            `json:"configFile,omitempty"` // default /etc/docker/daemon.json
}

func (d *Docker) where(option string) string {
	if s := d.Sources[option]; s != "" {
		return s
	}
	return orDefault(d.ConfigFile, "/etc/docker/daemon.json") + "#" + option
}

// FileRole names a file the CIS Docker benchmark's section 3 cares about;
// the adapter finds it (its path differs between distributions).
type FileRole string

// The file roles.
const (
	FileDockerService   FileRole = "docker.service"
	FileDockerSocket    FileRole = "docker.socket"
	FileDockerDir       FileRole = "/etc/docker"
	FileDaemonJSON      FileRole = "daemon.json"
	FileDockerSock      FileRole = "docker.sock"
	FileContainerdSock  FileRole = "containerd.sock"
	FileDockerDefault   FileRole = "/etc/default/docker"
	FileDockerSysconfig FileRole = "/etc/sysconfig/docker"
	FileRegistryCerts   FileRole = "registry-certs" // /etc/docker/certs.d and its files
	FileTLSCACert       FileRole = "tlscacert"
	FileTLSCert         FileRole = "tlscert"
	FileTLSKey          FileRole = "tlskey"
)

// File is a file's owner and mode.
type File struct {
	Role  FileRole    `json:"role"`
	Path  string      `json:"path"`
	Owner string      `json:"owner"` // user name, or the UID as a number
	Group string      `json:"group"`
	Mode  fs.FileMode `json:"mode"` // permission bits
}

// filePolicy is the CIS Docker section 3 expectation for a file role.
type filePolicy struct {
	owner, group string // group "" = root
	mode         fs.FileMode
}

func filePolicies() map[FileRole]filePolicy {
	return map[FileRole]filePolicy{
		FileDockerService:   {"root", "root", 0o644},
		FileDockerSocket:    {"root", "root", 0o644},
		FileDockerDir:       {"root", "root", 0o755},
		FileDaemonJSON:      {"root", "root", 0o644},
		FileDockerSock:      {"root", "docker", 0o660},
		FileContainerdSock:  {"root", "root", 0o660},
		FileDockerDefault:   {"root", "root", 0o644},
		FileDockerSysconfig: {"root", "root", 0o644},
		FileRegistryCerts:   {"root", "root", 0o444},
		FileTLSCACert:       {"root", "root", 0o444},
		FileTLSCert:         {"root", "root", 0o444},
		FileTLSKey:          {"root", "root", 0o400},
	}
}

// Audit is the loaded auditd rules (auditctl -l) and the Docker and
// containerd paths that exist on the host and so must be watched.
type Audit struct {
	Rules []string `json:"rules"`
	// Paths that exist: /usr/bin/dockerd, /run/containerd, /var/lib/docker,
	// /etc/docker, docker.service, docker.socket, /etc/default/docker,
	// /etc/docker/daemon.json, /etc/containerd/config.toml,
	// /usr/bin/containerd, /usr/bin/containerd-shim-runc-v2, /usr/bin/runc …
	Paths []string `json:"paths"`
}

// Kubelet is the kubelet's effective configuration: the config file merged
// with its flags (flags win). Nil pointers are settings set nowhere.
type Kubelet struct {
	AnonymousAuth         *bool  `json:"anonymousAuth,omitempty"`     // authentication.anonymous.enabled, --anonymous-auth
	AuthorizationMode     string `json:"authorizationMode,omitempty"` // authorization.mode, --authorization-mode
	ReadOnlyPort          *int   `json:"readOnlyPort,omitempty"`      // readOnlyPort, --read-only-port
	ProtectKernelDefaults *bool  `json:"protectKernelDefaults,omitempty"`
	// Sources say where each setting was read, by its config field name
	// ("authentication.anonymous.enabled", "authorization.mode",
	// "readOnlyPort", "protectKernelDefaults"): "kubelet --anonymous-auth" or
	// "/var/lib/kubelet/config.yaml#readOnlyPort".
	Sources    map[string]string `json:"sources,omitempty"`
	ConfigFile string            `json:"configFile,omitempty"` // default /var/lib/kubelet/config.yaml
}

func (k *Kubelet) where(field string) string {
	if s := k.Sources[field]; s != "" {
		return s
	}
	return orDefault(k.ConfigFile, "/var/lib/kubelet/config.yaml") + "#" + field
}

// EvaluateHost runs the host checks on h and returns the findings in
// catalog order. Host findings carry the Docker ID (the kubelet checks have
// one ID for both).
func EvaluateHost(h Host) []Finding {
	e := &hostEnv{h: &h}
	cat := catalog()
	for i := range cat {
		c := &cat[i] // read only
		if c.host == nil {
			continue
		}
		e.check = c
		c.host(e)
	}
	return e.out
}

type hostEnv struct {
	h     *Host
	check *Check
	out   []Finding
}

func (e *hostEnv) report(msg string, paths ...string) {
	e.out = append(e.out, Finding{
		Check:    e.check.Slug,
		PrismaID: e.check.PrismaID(false),
		Severity: e.check.Severity,
		Title:    e.check.Title,
		Message:  msg,
		Paths:    paths,
	})
}

func checkDockerICC(e *hostEnv) {
	if d := e.h.Docker; d != nil && !isFalse(d.ICC) {
		e.report("inter-container communication on the default bridge is enabled", d.where("icc"))
	}
}

func checkDockerTLS(e *hostEnv) {
	d := e.h.Docker
	if d == nil {
		return
	}
	for _, h := range d.Hosts {
		if !strings.HasPrefix(h, "tcp://") {
			continue
		}
		var missing []string
		if !isTrue(d.TLSVerify) {
			missing = append(missing, "tlsverify")
		}
		for _, o := range []struct{ name, v string }{{"tlscacert", d.TLSCACert}, {"tlscert", d.TLSCert}, {"tlskey", d.TLSKey}} {
			if o.v == "" {
				missing = append(missing, o.name)
			}
		}
		if len(missing) > 0 {
			paths := []string{d.where("hosts")}
			for _, m := range missing {
				paths = append(paths, d.where(m))
			}
			e.report(fmt.Sprintf("the daemon listens on %s without %s", h, strings.Join(missing, ", ")), paths...)
		}
	}
}

// loopbackRegistry reports whether an insecure registry entry (a CIDR or a
// host[:port]) lies in 127.0.0.0/8, which Docker always treats as insecure.
func loopbackRegistry(r string) bool {
	if p, err := netip.ParsePrefix(r); err == nil {
		return p.Addr().Is4() && p.Bits() >= 8 && p.Addr().As4()[0] == 127
	}
	host := r
	if ap, err := netip.ParseAddrPort(r); err == nil {
		return ap.Addr().IsLoopback()
	}
	if h, _, ok := strings.Cut(r, ":"); ok {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.IsLoopback()
	}
	return host == "localhost"
}

func checkDockerInsecureRegistries(e *hostEnv) {
	d := e.h.Docker
	if d == nil {
		return
	}
	var bad []string
	for _, r := range d.InsecureRegistries {
		if !loopbackRegistry(r) {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		e.report("insecure registries: "+strings.Join(bad, ", "), d.where("insecure-registries"))
	}
}

func checkDockerUserns(e *hostEnv) {
	if d := e.h.Docker; d != nil && d.UsernsRemap == "" {
		e.report("userns-remap is not set", d.where("userns-remap"))
	}
}

func checkDockerNoNewPrivs(e *hostEnv) {
	if d := e.h.Docker; d != nil && !isTrue(d.NoNewPrivileges) {
		e.report("no-new-privileges is not the daemon's default", d.where("no-new-privileges"))
	}
}

func checkDockerDaemonDefaults(e *hostEnv) {
	d := e.h.Docker
	if d == nil {
		return
	}
	var why, paths []string
	if !isTrue(d.LiveRestore) {
		why, paths = append(why, "live-restore is disabled"), append(paths, d.where("live-restore"))
	}
	if !isFalse(d.UserlandProxy) { // dockerd's default is true
		why, paths = append(why, "the userland proxy is enabled"), append(paths, d.where("userland-proxy"))
	}
	if isTrue(d.Experimental) {
		why, paths = append(why, "experimental features are enabled"), append(paths, d.where("experimental"))
	}
	if len(why) > 0 {
		e.report(strings.Join(why, "; "), paths...)
	}
}

func checkDockerFilePerms(e *hostEnv) {
	pol := filePolicies()
	for _, f := range e.h.Files {
		p, ok := pol[f.Role]
		if !ok {
			continue
		}
		var why []string
		if !isUser(f.Owner, "root", "0") || !isUser(f.Group, p.group, groupID(p.group)) {
			why = append(why, fmt.Sprintf("owner %s:%s, want %s:%s", f.Owner, f.Group, p.owner, p.group))
		}
		if extra := f.Mode.Perm() &^ p.mode; extra != 0 {
			why = append(why, fmt.Sprintf("mode %#o, want %#o or stricter", f.Mode.Perm(), p.mode))
		}
		if len(why) > 0 {
			e.report(fmt.Sprintf("%s (%s): %s", f.Path, f.Role, strings.Join(why, "; ")), f.Path)
		}
	}
}

func isUser(got string, names ...string) bool {
	return slices.Contains(names, got)
}

func groupID(name string) string {
	if name == "root" {
		return "0"
	}
	return name // docker's GID differs between hosts; compare names only
}

func checkDockerAudit(e *hostEnv) {
	a := e.h.Audit
	if a == nil {
		return
	}
	for _, p := range a.Paths {
		watched := slices.ContainsFunc(a.Rules, func(r string) bool {
			f := strings.Fields(r)
			for i, w := range f {
				if (w == "-w" || w == "-F") && i+1 < len(f) && (f[i+1] == p || f[i+1] == "path="+p || f[i+1] == "dir="+p) {
					return true
				}
			}
			return false
		})
		if !watched {
			e.report(p+" is not watched by auditd", "auditctl -l")
		}
	}
}

func checkKubeletAnonAuth(e *hostEnv) {
	if k := e.h.Kubelet; k != nil && !isFalse(k.AnonymousAuth) {
		e.report("anonymous requests to the kubelet are allowed", k.where("authentication.anonymous.enabled"))
	}
}

func checkKubeletAuthz(e *hostEnv) {
	if k := e.h.Kubelet; k != nil && (k.AuthorizationMode == "" || k.AuthorizationMode == "AlwaysAllow") {
		e.report(fmt.Sprintf("the kubelet's authorization mode is %q", orDefault(k.AuthorizationMode, "unset (AlwaysAllow)")),
			k.where("authorization.mode"))
	}
}

func checkKubeletROPort(e *hostEnv) {
	if k := e.h.Kubelet; k != nil && k.ReadOnlyPort != nil && *k.ReadOnlyPort != 0 {
		e.report(fmt.Sprintf("the kubelet serves the read-only port %d", *k.ReadOnlyPort), k.where("readOnlyPort"))
	}
}

func checkKubeletProtectKernelDefaults(e *hostEnv) {
	if k := e.h.Kubelet; k != nil && !isTrue(k.ProtectKernelDefaults) {
		e.report("protectKernelDefaults is not true", k.where("protectKernelDefaults"))
	}
}
