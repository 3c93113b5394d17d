package workload

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"bulwark/internal/compliance"
)

// dockerImage is what docker's image configs and `docker image inspect`
// add to the OCI image config: the health check, the build container's
// config of old images, and inspect's ID and tags.
type dockerImage struct {
	ID              string             `json:"Id"`
	RepoTags        []string           `json:"RepoTags"`
	RepoDigests     []string           `json:"RepoDigests"`
	Config          *dockerImageConfig `json:"config"`
	ContainerConfig *dockerImageConfig `json:"container_config"`
}

type dockerImageConfig struct {
	Healthcheck *dockerHealthcheck `json:"Healthcheck"`
}

// FromImageConfig reads an image config: the OCI image config JSON
// (application/vnd.oci.image.config.v1+json), docker's image config (which
// adds "container_config" and the health check), or `docker image inspect`
// output for one image. Facts carry the config's keys (config.User,
// config.Env[2], config.ExposedPorts[22/tcp]).
func FromImageConfig(data []byte) (compliance.Workload, error) {
	if len(data) > maxInput {
		return compliance.Workload{}, fmt.Errorf("%w: image config is %d bytes, more than %d", ErrInvalid, len(data), maxInput)
	}
	obj := bytes.TrimSpace(data)
	if len(obj) > 0 && obj[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(obj, &arr); err != nil {
			return compliance.Workload{}, fmt.Errorf("%w: image inspect output: %v", ErrInvalid, err) //nolint:errorlint // a message for the user
		}
		if len(arr) != 1 {
			return compliance.Workload{}, fmt.Errorf("%w: image inspect output has %d images, want 1", ErrInvalid, len(arr))
		}
		obj = bytes.TrimSpace(arr[0])
	}
	var img v1.Image
	if err := decodeObject(obj, "image config", &img); err != nil {
		return compliance.Workload{}, err
	}
	var d dockerImage
	if err := json.Unmarshal(obj, &d); err != nil {
		return compliance.Workload{}, fmt.Errorf("%w: image config: %v", ErrInvalid, err) //nolint:errorlint // a message for the user
	}
	// Old images may keep the runtime config only in the build container's
	// config; the config proper wins when it says anything.
	cfg, prefix := img.Config, "config"
	health := d.Config
	if emptyImageConfig(cfg) {
		var legacy struct {
			ContainerConfig *v1.ImageConfig `json:"container_config"`
		}
		if json.Unmarshal(obj, &legacy) == nil && legacy.ContainerConfig != nil && !emptyImageConfig(*legacy.ContainerConfig) {
			cfg, prefix, health = *legacy.ContainerConfig, "container_config", d.ContainerConfig
		}
	}

	w := compliance.Workload{Source: compliance.Source{
		Kind:   compliance.SourceImage,
		ID:     d.ID,
		Labels: cfg.Labels,
	}}
	if w.Source.ID == "" && len(d.RepoTags) == 0 {
		// A raw config: its ID is its digest, as docker and containerd name it.
		sum := sha256.Sum256(data)
		w.Source.ID = "sha256:" + hex.EncodeToString(sum[:])
	}
	r := &compliance.Runtime{}
	w.Runtime = r
	switch {
	case len(d.RepoTags) > 0:
		r.Image = compliance.Fact[string]{Value: d.RepoTags[0], Key: "RepoTags[0]"}
	case len(d.RepoDigests) > 0:
		r.Image = compliance.Fact[string]{Value: d.RepoDigests[0], Key: "RepoDigests[0]"}
	}
	r.User = compliance.Fact[string]{Value: cfg.User, Key: prefix + ".User"}
	for i, kv := range cfg.Env {
		name, value := splitEnv(kv)
		r.Env = append(r.Env, compliance.RuntimeEnv{Name: name, Value: value, Key: prefix + ".Env[" + strconv.Itoa(i) + "]"})
	}
	ports := make([]string, 0, len(cfg.ExposedPorts))
	for p := range cfg.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	for _, p := range ports {
		port, proto := splitPort(p)
		r.Ports = append(r.Ports, compliance.PortBinding{ContainerPort: port, Protocol: proto, Key: prefix + ".ExposedPorts[" + p + "]"})
	}
	var hc *dockerHealthcheck
	if health != nil {
		hc = health.Healthcheck
	}
	r.Healthcheck = compliance.Fact[bool]{Value: hc.enabled(), Key: prefix + ".Healthcheck"}
	return w, nil
}

func emptyImageConfig(c v1.ImageConfig) bool {
	return c.User == "" && len(c.Env) == 0 && len(c.Entrypoint) == 0 && len(c.Cmd) == 0 && len(c.ExposedPorts) == 0 &&
		len(c.Labels) == 0 && c.WorkingDir == ""
}
