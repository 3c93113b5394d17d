package hostcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"bulwark/internal/compliance"
)

const defaultDaemonJSON = "/etc/docker/daemon.json"

// ErrDaemonJSON marks a daemon.json that dockerd would refuse.
var ErrDaemonJSON = errors.New("invalid daemon.json")

// daemonJSON is the part of daemon.json the host checks read.
type daemonJSON struct {
	ICC                *bool    `json:"icc"`
	Hosts              []string `json:"hosts"`
	TLS                *bool    `json:"tls"`
	TLSVerify          *bool    `json:"tlsverify"`
	TLSCACert          string   `json:"tlscacert"`
	TLSCert            string   `json:"tlscert"`
	TLSKey             string   `json:"tlskey"`
	InsecureRegistries []string `json:"insecure-registries"`
	UsernsRemap        string   `json:"userns-remap"`
	NoNewPrivileges    *bool    `json:"no-new-privileges"`
	LiveRestore        *bool    `json:"live-restore"`
	UserlandProxy      *bool    `json:"userland-proxy"`
	Experimental       *bool    `json:"experimental"`
}

// parseDaemonJSON reads daemon.json into d, recording file#key as the
// source of every option it sets. An empty file is an empty configuration,
// as for dockerd.
func parseDaemonJSON(data []byte, file string, d *compliance.Docker) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDaemonJSON, file, err) //nolint:errorlint // the cause is a message for the user
	}
	var c daemonJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDaemonJSON, file, err) //nolint:errorlint // the cause is a message for the user
	}
	set := func(option string) bool {
		// json matches keys case-insensitively; dockerd does not.
		if _, ok := keys[option]; !ok {
			return false
		}
		d.Sources[option] = file + "#" + option
		return true
	}
	if set("icc") {
		d.ICC = c.ICC
	}
	if set("hosts") {
		d.Hosts = append(d.Hosts, c.Hosts...)
	}
	if set("tls") && c.TLS != nil && !*c.TLS && d.TLSVerify == nil {
		f := false
		d.TLSVerify = &f
	}
	if set("tlsverify") {
		d.TLSVerify = c.TLSVerify
	}
	if set("tlscacert") {
		d.TLSCACert = c.TLSCACert
	}
	if set("tlscert") {
		d.TLSCert = c.TLSCert
	}
	if set("tlskey") {
		d.TLSKey = c.TLSKey
	}
	if set("insecure-registries") {
		d.InsecureRegistries = append(d.InsecureRegistries, c.InsecureRegistries...)
	}
	if set("userns-remap") {
		d.UsernsRemap = c.UsernsRemap
	}
	if set("no-new-privileges") {
		d.NoNewPrivileges = c.NoNewPrivileges
	}
	if set("live-restore") {
		d.LiveRestore = c.LiveRestore
	}
	if set("userland-proxy") {
		d.UserlandProxy = c.UserlandProxy
	}
	if set("experimental") {
		d.Experimental = c.Experimental
	}
	return nil
}

// dockerdFlags are the dockerd flags the checks read, by every spelling.
func dockerdFlags() map[string]flagSpec {
	known := map[string]flagSpec{
		"H":           {"hosts", valueFlag},
		"host":        {"hosts", valueFlag},
		"config-file": {"config-file", valueFlag},
	}
	for _, b := range []string{"icc", "tls", "tlsverify", "no-new-privileges", "live-restore", "userland-proxy", "experimental"} {
		known[b] = flagSpec{b, boolFlag}
	}
	for _, v := range []string{"tlscacert", "tlscert", "tlskey", "userns-remap"} {
		known[v] = flagSpec{v, valueFlag}
	}
	known["insecure-registry"] = flagSpec{"insecure-registries", valueFlag}
	return known
}

// applyDockerdFlags applies dockerd's command-line flags to d. It returns
// the --config-file, if given.
func applyDockerdFlags(args []string, d *compliance.Docker) (configFile string, errs []error) {
	boolOpt := func(f flagValue) *bool {
		b, ok := parseBool(f.value)
		if !ok {
			errs = append(errs, fmt.Errorf("dockerd --%s=%s: not a boolean", f.name, f.value))
			return nil
		}
		return &b
	}
	for _, f := range parseFlags(args, dockerdFlags()) {
		src := "dockerd --" + f.name
		switch f.name {
		case "config-file":
			configFile = f.value
			continue
		case "hosts":
			d.Hosts, src = append(d.Hosts, f.value), "dockerd --host"
		case "insecure-registries":
			d.InsecureRegistries, src = append(d.InsecureRegistries, f.value), "dockerd --insecure-registry"
		case "icc":
			d.ICC = boolOpt(f)
		case "tls":
			if b := boolOpt(f); b != nil && !*b && d.TLSVerify == nil {
				d.TLSVerify = b
			}
		case "tlsverify":
			d.TLSVerify = boolOpt(f)
		case "tlscacert":
			d.TLSCACert = f.value
		case "tlscert":
			d.TLSCert = f.value
		case "tlskey":
			d.TLSKey = f.value
		case "userns-remap":
			d.UsernsRemap = f.value
		case "no-new-privileges":
			d.NoNewPrivileges = boolOpt(f)
		case "live-restore":
			d.LiveRestore = boolOpt(f)
		case "userland-proxy":
			d.UserlandProxy = boolOpt(f)
		case "experimental":
			d.Experimental = boolOpt(f)
		}
		d.Sources[f.name] = src
	}
	return configFile, errs
}

// dockerdArgs returns dockerd's arguments after the program (and after
// the "daemon" subcommand of old `docker daemon` units).
func dockerdArgs(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	args := argv[1:]
	if path.Base(argv[0]) == "docker" && len(args) > 0 && (args[0] == "daemon" || args[0] == "-d") {
		args = args[1:]
	}
	return args
}

// docker reads the Docker daemon's configuration; nil when Docker is not
// installed (no dockerd, no docker.service, no daemon.json).
func (h *reader) docker() *compliance.Docker {
	svc := h.loadUnit("docker.service")
	bin := h.fs.findBinary("dockerd")
	if svc == nil && bin == "" && !h.fs.exists(defaultDaemonJSON) {
		return nil
	}
	d := &compliance.Docker{Sources: map[string]string{}, ConfigFile: defaultDaemonJSON}
	var args []string
	switch {
	case svc != nil && len(svc.argv) > 0:
		args = dockerdArgs(svc.argv)
	case svc == nil:
		// Without systemd, the init scripts pass these files' options.
		for _, f := range []struct{ file, variable string }{{"/etc/default/docker", "DOCKER_OPTS"}, {"/etc/sysconfig/docker", "OPTIONS"}} {
			if b, err := h.fs.readFile(f.file); err == nil {
				if words, err := splitWords(parseEnvFile(string(b))[f.variable]); err == nil {
					args = append(args, words...)
				}
			}
		}
	}
	// Flags first for --config-file; then the file; then the flags again,
	// so that they win where dockerd would have refused the conflict.
	probe := &compliance.Docker{Sources: map[string]string{}}
	if cf, _ := applyDockerdFlags(args, probe); cf != "" {
		d.ConfigFile = cf
	}
	if b, err := h.fs.readFile(d.ConfigFile); err == nil {
		if err := parseDaemonJSON(b, d.ConfigFile, d); err != nil {
			h.fail(err)
		}
	} else if d.ConfigFile != defaultDaemonJSON {
		h.fail(fmt.Errorf("dockerd --config-file %s: %w", d.ConfigFile, err))
	}
	_, errs := applyDockerdFlags(args, d)
	h.errs = append(h.errs, errs...)
	sort.Strings(d.InsecureRegistries)
	d.InsecureRegistries = compactStrings(d.InsecureRegistries)
	return d
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// dockerSockets lists the daemon's unix sockets: its -H unix:// hosts, or
// the default.
func dockerSockets(d *compliance.Docker) []string {
	var socks []string
	for _, h := range d.Hosts {
		if p, ok := strings.CutPrefix(h, "unix://"); ok && p != "" {
			socks = append(socks, p)
		}
	}
	if len(socks) == 0 {
		socks = []string{"/run/docker.sock", "/var/run/docker.sock"}
	}
	return socks
}
