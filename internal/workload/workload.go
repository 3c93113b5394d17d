// Package workload reads the runtime and image configurations that
// containers are made from (an OCI runtime spec, `docker inspect` output, a
// docker or OCI image config) into compliance.Workload, recording for every
// fact the key it was read from so that findings point at it.
//
// The parsers are pure: they take the bytes, not a path, and trust nothing
// in them. A Defender reads a bundle's config.json and calls FromOCI; the
// runc shim does the same before a container is created; bulwarkctl reads
// files a user gives it.
package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"bulwark/internal/compliance"
)

// ErrInvalid marks input that is not the configuration a parser expects.
var ErrInvalid = errors.New("invalid configuration")

// maxInput bounds what a parser accepts: real configs are kilobytes, and a
// bound keeps a hostile file from costing memory.
const maxInput = 16 << 20

// Runtimes as internal/runtime and event.Container name them.
const (
	runtimeRunc       = "runc"
	runtimeContainerd = "containerd"
	runtimeDocker     = "docker"
	runtimeCRIO       = "crio"
)

// EngineOf maps the runtime a container was found under (event.Container's
// Runtime: runc, containerd, docker, crio, podman) to the compliance engine
// that decides its Prisma IDs. Plain runc has no engine of its own: it is
// the OCI runtime that containerd and CRI-O drive, and its containers are
// reported like theirs (CRI IDs, 5515 for a shared PID namespace).
func EngineOf(runtime string) string {
	switch runtime {
	case runtimeDocker:
		return compliance.EngineDocker
	case runtimeContainerd, runtimeRunc:
		return compliance.EngineContainerd
	case runtimeCRIO, "cri-o":
		return compliance.EngineCRIO
	}
	return ""
}

// decodeObject decodes one JSON object into v, refusing other JSON values,
// trailing data and oversized input.
func decodeObject(data []byte, what string, v any) error {
	if len(data) > maxInput {
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, what, len(data), maxInput)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%w: %s is not a JSON object", ErrInvalid, what)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, what, err) //nolint:errorlint // the cause is a message for the user
	}
	if dec.More() {
		return fmt.Errorf("%w: %s: data after the object", ErrInvalid, what)
	}
	return nil
}

// splitEnv splits "NAME=value"; an entry without "=" is a name with no value.
func splitEnv(kv string) (string, string) {
	name, value, _ := strings.Cut(kv, "=")
	return name, value
}

// quoteKey renders a map key inside a field path: Sysctls[net.ipv4.ip_forward].
func quoteKey(field, key string) string { return field + "[" + key + "]" }
