package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"bulwark/internal/compliance"
	"bulwark/internal/hostcfg"
)

func hostKind() *scanKind {
	return &scanKind{
		name:  "host",
		use:   "[ROOT]",
		short: "Scan a host's Docker daemon, kubelet, auditd rules and file permissions",
		long: `Scan a host for compliance, offline: the Docker daemon's configuration
(daemon.json and dockerd's flags from its systemd unit, drop-ins and
environment files), the owners and modes of the files of CIS Docker section
3, the auditd rules, and the kubelet's flags and config file. ROOT is the
host's root directory: / (the default) on the host itself, /proc/1/root from a
container that shares the host's PID namespace, or a copy of a host's files.
Symbolic links resolve inside ROOT. Components that are not installed are not
checked. Reading every file needs root.

Findings name the setting that caused them (/etc/docker/daemon.json#icc,
"dockerd --host", "kubelet --read-only-port (default)") and point at the file
and line where it is set, or where it would go: the unit file's ExecStart=
for a flag left at its default.

Findings below --severity-threshold are not reported. The default, high,
matches the Console's default rule, which alerts on critical and high.
--checks and --skip take check slugs or Prisma IDs, comma-separated.

Output (-o): table (default), json, sarif (SARIF 2.1.0) or junit (a test case
per check).

Exit codes: 0 no finding at or above the threshold, 1 findings at or above
it, 2 bad flags, or a configuration file that cannot be read or parsed (the
error names the file).

Checks (slug, Prisma ID, severity):
` + checkList(compliance.ScopeHost, false),
		example: `  # This host
  sudo bulwarkctl scan host

  # The host of a privileged container with hostPID, everything from low up
  bulwarkctl scan host --severity-threshold low /proc/1/root

  # A node image's file system, as JUnit for the CI
  bulwarkctl scan host -o junit ./rootfs > bulwark-junit.xml`,
		scope: compliance.ScopeHost,
		what:  "hosts",
		input: "host",
		noun:  "host",
		tag:   "host",
		empty: "no host root",
		host:  true,
		args: func(_ *cobra.Command, got []string) error {
			if len(got) > 1 {
				return usagef("expected at most one ROOT, got %d arguments", len(got))
			}
			return nil
		},
		decode: decodeHost,
	}
}

// hostInputs is the host root to scan: the argument, or /.
func hostInputs(paths []string) ([]scanInput, error) {
	root := "/"
	if len(paths) > 0 {
		root = paths[0]
	}
	if root == "-" {
		return nil, usagef("a host is read from its root directory, not from standard input")
	}
	fi, err := os.Stat(root)
	switch {
	case err != nil:
		return nil, &codeError{code: exitUsage, msg: fmt.Sprintf("scan %s: %v", root, cause(err))}
	case !fi.IsDir():
		return nil, &codeError{code: exitUsage, msg: fmt.Sprintf("scan %s: not a directory (the host's root)", root)}
	}
	return []scanInput{{name: root, path: root}}, nil
}

func decodeHost(in scanInput, _ *scanConfig) decoded {
	h, err := hostcfg.Read(in.path)
	var d decoded
	for _, e := range unjoin(err) {
		d.errors = append(d.errors, scanError{File: in.name, Message: e.Error()})
	}
	name := h.Name
	if name == "" {
		name = strings.TrimSuffix(in.name, "/")
		if name == "" {
			name = "/"
		}
	}
	d.units = []scanUnit{{
		object: scanObject{Kind: "Host", Name: name},
		host:   &h,
		locate: func(path string) (string, int) {
			loc := hostcfg.Locate(in.path, path)
			return loc.File, loc.Line
		},
	}}
	return d
}
