package defender

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
)

// identity is how the Defender names itself and its host.
type identity struct {
	Hostname    string
	HostNetwork bool
	OS          string
	Kernel      string
	Runtimes    []string
}

// detectIdentity decides the name the Defender reports: the host's name when
// it shares the host's network namespace (as a DaemonSet with hostNetwork,
// or a systemd unit), else the pod name (POD_NAME, from the downward API) or
// its own hostname.
func detectIdentity(podName string, procRoot string) identity {
	id := identity{HostNetwork: sameNetNS(procRoot)}
	host, _ := os.Hostname()
	id.Hostname = host
	if !id.HostNetwork && podName != "" {
		id.Hostname = podName
	}
	if b, err := os.ReadFile(procRoot + "/sys/kernel/osrelease"); err == nil {
		id.Kernel = strings.TrimSpace(string(b))
	}
	id.OS = osPrettyName()
	id.Runtimes = findRuntimes()
	return id
}

// sameNetNS reports whether this process is in the host's network
// namespace: PID 1's, or, where PID 1's cannot be read (a hardened init),
// kthreadd's — kernel threads always live in the initial namespaces. Without
// hostPID neither is the host's and the answer is "not on the host network"
// unless the namespaces really are shared.
func sameNetNS(procRoot string) bool {
	var self syscall.Stat_t
	if syscall.Stat(procRoot+"/self/ns/net", &self) != nil {
		return false
	}
	same := func(pid string) (bool, bool) {
		var st syscall.Stat_t
		if syscall.Stat(procRoot+"/"+pid+"/ns/net", &st) != nil {
			return false, false
		}
		return st.Ino == self.Ino && st.Dev == self.Dev, true
	}
	if eq, ok := same("1"); ok {
		return eq
	}
	if comm, err := os.ReadFile(procRoot + "/2/comm"); err == nil && strings.TrimSpace(string(comm)) == "kthreadd" {
		eq, _ := same("2")
		return eq
	}
	return false
}

func osPrettyName() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "linux"
}

// findRuntimes lists the container runtimes present on the host.
func findRuntimes() []string {
	var found []string
	if _, err := exec.LookPath("runc"); err == nil {
		found = append(found, "runc")
	} else if _, err := os.Stat("/usr/sbin/runc"); err == nil {
		found = append(found, "runc")
	}
	for name, sock := range map[string]string{
		"containerd": "/run/containerd/containerd.sock",
		"docker":     "/var/run/docker.sock",
		"crio":       "/var/run/crio/crio.sock",
	} {
		if st, err := os.Stat(sock); err == nil && st.Mode()&os.ModeSocket != 0 {
			found = append(found, name)
		}
	}
	slices.Sort(found)
	return found
}
