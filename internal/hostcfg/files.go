package hostcfg

import (
	"syscall"

	"bulwark/internal/compliance"
)

// files returns the owner, group and mode of the files CIS Docker section 3
// names that exist on the host. d is the Docker configuration (nil without
// Docker), whose socket and TLS files are looked up where it says.
func (h *reader) files(d *compliance.Docker) []compliance.File {
	var out []compliance.File
	add := func(role compliance.FileRole, p string) {
		fi, err := h.fs.stat(p)
		if err != nil {
			return
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return
		}
		out = append(out, compliance.File{
			Role:  role,
			Path:  p,
			Owner: h.name(h.users, st.Uid),
			Group: h.name(h.groups, st.Gid),
			Mode:  fi.Mode().Perm(),
		})
	}
	first := func(role compliance.FileRole, paths ...string) {
		if p, ok := h.fs.firstExisting(paths...); ok {
			add(role, p)
		}
	}
	if u := h.loadUnit("docker.service"); u != nil && u.path != "" {
		add(compliance.FileDockerService, u.path)
	}
	if u := h.loadUnit("docker.socket"); u != nil && u.path != "" {
		add(compliance.FileDockerSocket, u.path)
	}
	add(compliance.FileDockerDir, "/etc/docker")
	configFile := defaultDaemonJSON
	var socks []string
	if d != nil {
		configFile = d.ConfigFile
		socks = dockerSockets(d)
	} else {
		socks = dockerSockets(&compliance.Docker{})
	}
	add(compliance.FileDaemonJSON, configFile)
	first(compliance.FileDockerSock, socks...)
	first(compliance.FileContainerdSock, "/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock")
	add(compliance.FileDockerDefault, "/etc/default/docker")
	add(compliance.FileDockerSysconfig, "/etc/sysconfig/docker")
	h.walkFiles("/etc/docker/certs.d", 0, func(p string) { add(compliance.FileRegistryCerts, p) })
	if d != nil {
		for _, f := range []struct {
			role compliance.FileRole
			path string
		}{{compliance.FileTLSCACert, d.TLSCACert}, {compliance.FileTLSCert, d.TLSCert}, {compliance.FileTLSKey, d.TLSKey}} {
			if f.path != "" {
				add(f.role, f.path)
			}
		}
	}
	return out
}

// walkFiles calls f for every regular file below the host directory dir,
// in name order, at most 4 levels down (certs.d/<registry>/<file>).
func (h *reader) walkFiles(dir string, depth int, f func(string)) {
	if depth > 4 {
		return
	}
	for _, n := range h.fs.readDir(dir) {
		p := dir + "/" + n
		fi, err := h.fs.stat(p)
		switch {
		case err != nil:
		case fi.IsDir():
			h.walkFiles(p, depth+1, f)
		case fi.Mode().IsRegular():
			f(p)
		}
	}
}
