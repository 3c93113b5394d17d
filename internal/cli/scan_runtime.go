package cli

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"bulwark/internal/compliance"
	"bulwark/internal/workload"
)

// scanCommonHelp is the end of the help of the runtime and image kinds.
const scanCommonHelp = `Findings below --severity-threshold are not reported. The default, high,
matches the Console's default rule, which alerts on critical and high.
--checks and --skip take check slugs or Prisma IDs, comma-separated.

` + scanCustomHelp + `
Output (-o): table (default), json, sarif (SARIF 2.1.0, for code scanning)
or junit (one test suite per file, a test case per container or image and
check). Findings name the config key that caused them and the line where it
is written (where the key is missing: its parent's).

Exit codes: 0 no finding at or above the threshold, 1 findings at or above
it, 2 bad flags or an input that cannot be read (the error names the file).

Checks (slug, Prisma ID, severity):
`

func ociKind() *scanKind {
	return &scanKind{
		name:  "oci",
		use:   "PATH...|-",
		short: "Scan OCI runtime specs (a bundle's config.json) as runc, containerd and CRI-O run them",
		long: `Scan OCI runtime specs for compliance, offline: the config.json of a bundle,
from which runc (driven by containerd, CRI-O or Docker) creates a container.
PATH is a config.json, a bundle directory holding one, or a directory searched
for bundles, such as /run/containerd/io.containerd.runtime.v2.task/k8s.io;
- reads standard input. Pod sandboxes (pause containers) found in directories
are skipped.

A namespace is shared with the host when linux.namespaces has no entry of its
type, or one whose path is PID 1's. Privileged is inferred: every capability,
no seccomp filter, no masked paths and every device.

--engine is the engine that runs the containers, which decides the Prisma
IDs: containerd and cri-o, and runc (which they drive), get the CRI IDs (5515
for a shared PID namespace); docker gets the Docker IDs (515).

` + scanCommonHelp + checkList(compliance.ScopeRuntime, true),
		example: `  # Every container a containerd node runs for Kubernetes
  sudo bulwarkctl scan oci /run/containerd/io.containerd.runtime.v2.task/k8s.io

  # A bundle runc would run, with Docker's IDs
  bulwarkctl scan oci --engine docker ./bundle

  # From standard input, everything from medium up, as SARIF
  runc spec --rootless && bulwarkctl scan oci --severity-threshold medium -o sarif - < config.json`,
		scope:  compliance.ScopeRuntime,
		what:   "OCI runtime specs",
		input:  "OCI runtime spec",
		noun:   "container",
		tag:    "containers",
		empty:  "no bundle (a directory with a config.json)",
		find:   findBundles,
		decode: decodeOCI,
		flags: func(cmd *cobra.Command, f *scanFlags) {
			cmd.Flags().StringVar(&f.engine, "engine", "containerd", "the engine that runs the containers, deciding the Prisma IDs: runc, containerd, cri-o or docker")
		},
	}
}

func dockerKind() *scanKind {
	return &scanKind{
		name:  "docker",
		use:   "FILE...|-",
		short: "Scan containers as docker inspect shows them",
		long: `Scan containers for compliance, offline, from the output of docker inspect
(the array it prints, or one container's object). FILE is a file, or a
directory of *.json files; - reads standard input, so that the output of
docker inspect can be piped in. Findings carry the Docker IDs (515 for a
shared PID namespace).

` + scanCommonHelp + checkList(compliance.ScopeRuntime, false),
		example: `  # Every running container of this host
  docker inspect $(docker ps -q) | bulwarkctl scan docker -

  # Saved output, everything from low up, as JSON
  bulwarkctl scan docker --severity-threshold low -o json inspect.json`,
		scope:  compliance.ScopeRuntime,
		what:   "docker inspect output",
		input:  "docker inspect output",
		noun:   "container",
		tag:    "containers",
		empty:  "no *.json files",
		find:   func(dir string, add func(string)) ([]string, error) { return nil, findFiles(dir, add, ".json") },
		decode: decodeDocker,
	}
}

func imageKind() *scanKind {
	return &scanKind{
		name:  "image",
		use:   "FILE...|-",
		short: "Scan image configs: the user, environment, ports and health check an image runs with",
		long: `Scan image configs for compliance, offline: the OCI image config JSON
(application/vnd.oci.image.config.v1+json), Docker's image config, or the
output of docker image inspect for one image. FILE is a file, or a directory
of *.json files; - reads standard input.

` + scanCommonHelp + checkList(compliance.ScopeImage, false),
		example: `  # An image pulled locally
  docker image inspect nginx:1.27 | bulwarkctl scan image -

  # An image's config from a registry, without pulling it
  crane config registry.example.com/app:1.4 | bulwarkctl scan image --severity-threshold low -

  # A directory of configs, as JUnit
  bulwarkctl scan image -o junit configs/ > bulwark-junit.xml`,
		scope:  compliance.ScopeImage,
		what:   "image configs",
		input:  "image config",
		noun:   "image",
		tag:    "images",
		empty:  "no *.json files",
		find:   func(dir string, add func(string)) ([]string, error) { return nil, findFiles(dir, add, ".json") },
		decode: decodeImage,
	}
}

// findBundles finds the OCI bundles under dir: every directory that holds
// a config.json. A bundle's own subdirectories (its rootfs) are not
// searched, nor hidden directories.
func findBundles(dir string, add func(string)) ([]string, error) {
	return nil, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if cfg := filepath.Join(path, "config.json"); fileExists(cfg) {
			add(cfg)
			return filepath.SkipDir
		}
		return nil
	})
}

// jsonInput reads and indexes a JSON input for its findings' lines and reports a
// syntax error at its line.
func jsonInput(in scanInput) ([]byte, *jsonIndex, *decoded) {
	data, err := in.read()
	if err != nil {
		d := readError(in, err)
		return nil, nil, &d
	}
	idx, err := indexJSON(data)
	if err != nil {
		d := jsonSyntaxError(in, data, err)
		return nil, nil, &d
	}
	return data, idx, nil
}

// configError is an input the workload parsers refuse.
func configError(in scanInput, err error) decoded {
	msg := err.Error()
	if errors.Is(err, workload.ErrInvalid) {
		msg = strings.TrimPrefix(msg, workload.ErrInvalid.Error()+": ")
	}
	return decoded{errors: []scanError{{File: in.name, Message: msg}}}
}

func decodeOCI(in scanInput, cfg *scanConfig) decoded {
	data, idx, bad := jsonInput(in)
	if bad != nil {
		return *bad
	}
	w, err := workload.FromOCI(data, workload.EngineOf(cfg.engine))
	if err != nil {
		return configError(in, err)
	}
	if workload.IsSandbox(w.Source.Annotations) {
		if in.found {
			return decoded{skipped: true}
		}
		return decoded{skipped: true, warnings: []string{in.name + ": a pod sandbox (pause container), not scanned"}}
	}
	w.Source.File, w.Source.Line = in.name, idx.root
	obj := scanObject{Kind: "Container", Name: w.Runtime.Name, Line: idx.root}
	if obj.Name == "" {
		// runc and containerd name the bundle directory after the
		// container.
		switch base := filepath.Base(in.path); {
		case in.path == "":
			obj.Name = "config.json"
		case base == "config.json":
			obj.Name = filepath.Base(filepath.Dir(in.path))
		default:
			obj.Name = strings.TrimSuffix(base, filepath.Ext(base))
		}
	}
	if o := w.Source.Object; o.Name != "" {
		obj.Namespace, obj.Pod = o.Namespace, o.Name
	}
	return decoded{units: []scanUnit{runtimeUnit(obj, w, idx, "")}}
}

func decodeDocker(in scanInput, _ *scanConfig) decoded {
	data, idx, bad := jsonInput(in)
	if bad != nil {
		return *bad
	}
	ws, err := workload.FromDockerInspect(data)
	if err != nil {
		return configError(in, err)
	}
	var d decoded
	for i, w := range ws {
		base := ""
		if idx.array {
			base = "[" + strconv.Itoa(i) + "]"
		}
		w.Source.File, w.Source.Line = in.name, idx.line(base, "")
		obj := scanObject{Kind: "Container", Name: w.Runtime.Name, ID: w.Source.ID, Line: w.Source.Line}
		if obj.Name == "" {
			obj.Name = shortID(w.Source.ID)
		}
		if o := w.Source.Object; o.Name != "" {
			obj.Namespace, obj.Pod = o.Namespace, o.Name
		}
		d.units = append(d.units, runtimeUnit(obj, w, idx, base))
	}
	return d
}

func decodeImage(in scanInput, _ *scanConfig) decoded {
	data, idx, bad := jsonInput(in)
	if bad != nil {
		return *bad
	}
	w, err := workload.FromImageConfig(data)
	if err != nil {
		return configError(in, err)
	}
	base := ""
	if idx.array {
		base = "[0]" // docker image inspect prints an array
	}
	w.Source.File, w.Source.Line = in.name, idx.line(base, "")
	obj := scanObject{Kind: "Image", Name: w.Runtime.Image.Value, ID: w.Source.ID, Line: w.Source.Line}
	if obj.Name == "" {
		obj.Name = shortID(w.Source.ID)
	}
	return decoded{units: []scanUnit{runtimeUnit(obj, w, idx, base)}}
}

// runtimeUnit is a container or image whose findings' keys are located in
// its JSON below base.
func runtimeUnit(obj scanObject, w compliance.Workload, idx *jsonIndex, base string) scanUnit {
	return scanUnit{
		object:   obj,
		workload: &w,
		locate:   func(path string) (string, int) { return "", idx.line(base, path) },
	}
}

// shortID is a container or image ID as docker ps shows it: 12 hex digits.
func shortID(id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 && strings.Trim(hex, "0123456789abcdef") == "" {
		return hex[:12]
	}
	return id
}
