package hostcfg

import (
	"strings"

	"bulwark/internal/compliance"
)

// auditedFiles are the Docker and containerd paths CIS Docker 1.1.3–1.1.18
// want auditd to watch (binaries are looked up in the usual directories).
func auditedFiles() []string {
	return []string{"/run/containerd", "/var/lib/docker", "/etc/docker", "/etc/default/docker",
		"/etc/docker/daemon.json", "/etc/containerd/config.toml", "/etc/sysconfig/docker",
		"/run/containerd/containerd.sock"}
}

func auditedBinaries() []string {
	return []string{"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "runc"}
}

// audit reads the auditd rules (/etc/audit/audit.rules and
// /etc/audit/rules.d/*.rules, the files auditd loads at boot) and lists the
// paths that exist and so must be watched. nil when none of them exists:
// neither Docker nor containerd is installed.
func (h *reader) audit() *compliance.Audit {
	var paths []string
	for _, b := range auditedBinaries() {
		if p := h.fs.findBinary(b); p != "" {
			paths = append(paths, p)
		}
	}
	for _, p := range auditedFiles() {
		if h.fs.exists(p) {
			paths = append(paths, p)
		}
	}
	for _, name := range []string{"docker.service", "docker.socket"} {
		if u := h.loadUnit(name); u != nil && u.path != "" {
			paths = append(paths, u.path)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	a := &compliance.Audit{Paths: paths, Rules: []string{}}
	files := []string{"/etc/audit/audit.rules"}
	for _, n := range h.fs.readDir("/etc/audit/rules.d") {
		if strings.HasSuffix(n, ".rules") {
			files = append(files, "/etc/audit/rules.d/"+n)
		}
	}
	for _, f := range files {
		b, err := h.fs.readFile(f)
		if err != nil {
			continue
		}
		a.Rules = append(a.Rules, auditRules(string(b))...)
	}
	return a
}

// auditRules returns the rule lines of an audit rules file, comments and
// blank lines left out, whitespace collapsed as auditctl -l prints them.
func auditRules(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}
