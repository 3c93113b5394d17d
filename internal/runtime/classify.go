package runtime

import "strings"

// Runtimes as event.Container.Runtime names them.
const (
	RuntimeRunc       = "runc"
	RuntimeContainerd = "containerd"
	RuntimeDocker     = "docker"
	RuntimeCRIO       = "crio"
	RuntimePodman     = "podman"
)

// pattern is what one cgroup path component says about a container.
type pattern struct {
	id      string
	runtime string
	// strong: the pattern names the runtime (docker-<id>.scope). A weak
	// hint (a bare id under kubepods) yields to where the runc state is.
	strong bool
}

// scopePrefixes are systemd scope units that hold one container each:
// <prefix><64 hex>.scope.
var scopePrefixes = []struct{ prefix, runtime string }{
	{"docker-", RuntimeDocker},
	{"cri-containerd-", RuntimeContainerd},
	{"crio-", RuntimeCRIO}, // crio-conmon-<id>.scope is the monitor, not the container: it has no 64-hex tail
	{"libpod-", RuntimePodman},
}

// matchComponent matches one component of a cgroup path against the
// layouts whose names carry a 64-hex container id:
//
//	/docker/<id>                                   docker, cgroupfs driver
//	/system.slice/docker-<id>.scope                docker, systemd driver
//	/kubepods/<qos>/pod<uid>/<id>                  containerd (or dockershim), cgroupfs
//	/kubepods.slice/…/cri-containerd-<id>.scope    containerd, systemd
//	/kubepods.slice/…/crio-<id>.scope              CRI-O, systemd
//	/kubepods/<qos>/pod<uid>/crio-<id>             CRI-O, cgroupfs
//	/machine.slice/libpod-<id>.scope               podman
//
// Plain runc and containerd's default /<namespace>/<id> layout use
// arbitrary names: the resolver finds those by their runc state directory.
func matchComponent(parent, name string, underKube bool) (pattern, bool) {
	if isHex64(name) {
		switch {
		case parent == "docker":
			return pattern{id: name, runtime: RuntimeDocker, strong: true}, true
		case underKube:
			return pattern{id: name, runtime: RuntimeContainerd}, true
		default:
			return pattern{id: name}, true
		}
	}
	if base, ok := strings.CutSuffix(name, ".scope"); ok {
		for _, s := range scopePrefixes {
			if id, ok := strings.CutPrefix(base, s.prefix); ok && isHex64(id) {
				return pattern{id: id, runtime: s.runtime, strong: true}, true
			}
		}
	}
	if id, ok := strings.CutPrefix(name, "crio-"); ok && isHex64(id) {
		return pattern{id: id, runtime: RuntimeCRIO, strong: true}, true
	}
	return pattern{}, false
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// splitCgroup splits "/a/b/c" into its components.
func splitCgroup(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}
