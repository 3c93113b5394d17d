package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"bulwark/internal/event"
)

// Annotations and labels the enrichment reads.
const (
	AnnotPodName        = "io.kubernetes.pod.name"
	AnnotPodNamespace   = "io.kubernetes.pod.namespace"
	AnnotContainerName  = "io.kubernetes.container.name"
	AnnotCRIName        = "io.kubernetes.cri.container-name"
	AnnotCRISandboxName = "io.kubernetes.cri.sandbox-name"
	AnnotCRISandboxNS   = "io.kubernetes.cri.sandbox-namespace"
	AnnotCRIImage       = "io.kubernetes.cri.image-name"
	AnnotCRIOImage      = "io.kubernetes.cri-o.ImageName"
	AnnotCRIOLabels     = "io.kubernetes.cri-o.Labels" // JSON object of the CRI labels
	AnnotOCIRefName     = "org.opencontainers.image.ref.name"
	AnnotBulwarkImage   = "io.bulwark.image" // set by Bulwark's tests and by users of plain runc
)

// stateRoot is a runc --root directory: it holds <id>/state.json for each
// container of one runtime (and, for containerd, one namespace).
type stateRoot struct {
	dir       string
	runtime   string
	namespace string // containerd namespace
}

// stateRoots expands the configured runc roots (containerd has one per
// namespace, hence globs) and says which runtime each belongs to: a root
// with a path element "containerd" is containerd's, "docker" docker's,
// anything else plain runc.
func stateRoots(patterns []string) []stateRoot {
	var roots []stateRoot
	for _, p := range patterns {
		p = filepath.Clean(p)
		dirs := []string{p}
		if strings.ContainsAny(p, `*?[`) {
			dirs, _ = filepath.Glob(p) // only ErrBadPattern, on a bad configured root: nothing matches
		}
		for _, d := range dirs {
			r := stateRoot{dir: d, runtime: RuntimeRunc}
			elems := strings.Split(d, string(filepath.Separator))
			switch {
			case slices.Contains(elems, "containerd"):
				r.runtime, r.namespace = RuntimeContainerd, filepath.Base(d)
			case slices.Contains(elems, "docker"):
				r.runtime = RuntimeDocker
			}
			roots = append(roots, r)
		}
	}
	return roots
}

// runcState is the part of runc's state.json (runc 1.1 format) that
// enrichment needs. runc 1.1 has no top-level bundle: it keeps the bundle
// and every OCI annotation as "key=value" strings in config.labels.
type runcState struct {
	ID             string `json:"id"`
	InitProcessPid int    `json:"init_process_pid"`
	// InitProcessStart is the init's start time in clock ticks since boot
	// (/proc/<pid>/stat field 22), which tells it from a reused pid.
	InitProcessStart uint64    `json:"init_process_start"`
	Created          time.Time `json:"created"`
	Bundle           string    `json:"bundle"` // newer or forked runtimes
	Config           struct {
		Labels []string `json:"labels"`
	} `json:"config"`
	CgroupPaths map[string]string `json:"cgroup_paths"` // "" is the cgroup2 path
}

func readState(path string) (runcState, error) {
	var st runcState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse %s: %w", path, err)
	}
	if st.Bundle == "" {
		for _, l := range st.Config.Labels {
			if v, ok := strings.CutPrefix(l, "bundle="); ok {
				st.Bundle = v
			}
		}
	}
	return st, nil
}

// annotations are the state's labels other than bundle.
func (st runcState) annotations() map[string]string {
	ann := make(map[string]string, len(st.Config.Labels))
	for _, l := range st.Config.Labels {
		k, v, ok := strings.Cut(l, "=")
		if ok && k != "bundle" {
			ann[k] = v
		}
	}
	return ann
}

// ociConfig is the part of an OCI bundle's config.json enrichment needs.
type ociConfig struct {
	Annotations map[string]string `json:"annotations"`
}

func readOCIAnnotations(bundle string) (map[string]string, error) {
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c ociConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return c.Annotations, nil
}

// dockerConfig is the part of /var/lib/docker/containers/<id>/config.v2.json
// enrichment needs.
type dockerConfig struct {
	Name   string `json:"Name"` // "/web"
	Config struct {
		Image  string            `json:"Image"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

func readDockerConfig(dockerRoot, id string) (dockerConfig, error) {
	var c dockerConfig
	path := filepath.Join(dockerRoot, "containers", id, "config.v2.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

// containerOf builds the event's Container from what the runtime recorded.
// docker may be nil.
func containerOf(id, runtime string, ann map[string]string, docker *dockerConfig) event.Container {
	if crio := ann[AnnotCRIOLabels]; crio != "" {
		var labels map[string]string
		if json.Unmarshal([]byte(crio), &labels) == nil {
			ann = withFallback(ann, labels)
		}
	}
	if docker != nil {
		ann = withFallback(ann, docker.Config.Labels)
	}
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := ann[k]; v != "" {
				return v
			}
		}
		return ""
	}
	c := event.Container{
		ID:        id,
		Name:      first(AnnotCRIName, AnnotContainerName),
		Image:     first(AnnotCRIImage, AnnotCRIOImage),
		Pod:       first(AnnotPodName, AnnotCRISandboxName),
		Namespace: first(AnnotPodNamespace, AnnotCRISandboxNS),
		Runtime:   runtime,
	}
	if docker != nil {
		if c.Name == "" {
			c.Name = strings.TrimPrefix(docker.Name, "/")
		}
		if c.Image == "" {
			c.Image = docker.Config.Image
		}
	}
	if c.Image == "" {
		// ref.name is often only a tag: an explicit Bulwark annotation wins.
		c.Image = first(AnnotBulwarkImage, AnnotOCIRefName)
	}
	return c
}

// withFallback returns a with the keys of b it lacks.
func withFallback(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range b {
		out[k] = v
	}
	for k, v := range a {
		out[k] = v
	}
	return out
}

// safeComponent says whether s can be joined to a directory as one name.
func safeComponent(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsRune(s, '/')
}
