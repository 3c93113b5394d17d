package hostcfg

import (
	"errors"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"

	"bulwark/internal/compliance"
)

const defaultKubeletConfig = "/var/lib/kubelet/config.yaml"

// ErrKubeletConfig marks a kubelet config file the kubelet would refuse.
var ErrKubeletConfig = errors.New("invalid kubelet config")

// kubeletConfig is the part of a KubeletConfiguration (YAML or JSON) the
// host checks read.
type kubeletConfig struct {
	Authentication struct {
		Anonymous struct {
			Enabled *bool `yaml:"enabled"`
		} `yaml:"anonymous"`
	} `yaml:"authentication"`
	Authorization struct {
		Mode string `yaml:"mode"`
	} `yaml:"authorization"`
	ReadOnlyPort          *int  `yaml:"readOnlyPort"`
	ProtectKernelDefaults *bool `yaml:"protectKernelDefaults"`
}

func kubeletFlags() map[string]flagSpec {
	return map[string]flagSpec{
		"config":                  {"config", valueFlag},
		"anonymous-auth":          {"anonymous-auth", boolFlag},
		"authorization-mode":      {"authorization-mode", valueFlag},
		"read-only-port":          {"read-only-port", valueFlag},
		"protect-kernel-defaults": {"protect-kernel-defaults", boolFlag},
	}
}

// Fields of the kubelet config, as compliance.Kubelet.Sources names them.
const (
	fieldAnonymous = "authentication.anonymous.enabled"
	fieldAuthz     = "authorization.mode"
	fieldROPort    = "readOnlyPort"
	fieldProtect   = "protectKernelDefaults"
)

// kubelet reads the kubelet's effective configuration: its config file
// (--config, else /var/lib/kubelet/config.yaml) with its flags applied on
// top, as the kubelet applies them. Settings neither sets take the
// kubelet's defaults, which differ: a config file defaults to anonymous
// auth off, Webhook authorization and no read-only port; a kubelet run
// from flags alone has anonymous auth on, AlwaysAllow and port 10255. nil
// when no kubelet is installed.
func (h *reader) kubelet() *compliance.Kubelet {
	svc := h.loadUnit("kubelet.service")
	bin := h.fs.findBinary("kubelet")
	if svc == nil && bin == "" && !h.fs.exists(defaultKubeletConfig) {
		return nil
	}
	k := &compliance.Kubelet{Sources: map[string]string{}}
	var args []string
	if svc != nil && len(svc.argv) > 0 {
		args = svc.argv[1:]
	}
	flags := parseFlags(args, kubeletFlags())
	configFile := ""
	for _, f := range flags {
		if f.name == "config" {
			configFile = f.value
		}
	}
	if configFile == "" && h.fs.exists(defaultKubeletConfig) {
		configFile = defaultKubeletConfig
	}
	k.ConfigFile = configFile
	if configFile != "" {
		if b, err := h.fs.readFile(configFile); err != nil {
			h.fail(fmt.Errorf("kubelet --config %s: %w", configFile, err))
		} else if err := parseKubeletConfig(b, configFile, k); err != nil {
			h.fail(err)
		}
	}
	for _, err := range applyKubeletFlags(flags, k) {
		h.fail(err)
	}
	kubeletDefaults(k)
	return k
}

// parseKubeletConfig reads a KubeletConfiguration into k.
func parseKubeletConfig(data []byte, file string, k *compliance.Kubelet) error {
	var c kubeletConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrKubeletConfig, file, err) //nolint:errorlint // the cause is a message for the user
	}
	at := func(field string) string { return file + "#" + field }
	if v := c.Authentication.Anonymous.Enabled; v != nil {
		k.AnonymousAuth, k.Sources[fieldAnonymous] = v, at(fieldAnonymous)
	}
	if c.Authorization.Mode != "" {
		k.AuthorizationMode, k.Sources[fieldAuthz] = c.Authorization.Mode, at(fieldAuthz)
	}
	if c.ReadOnlyPort != nil {
		k.ReadOnlyPort, k.Sources[fieldROPort] = c.ReadOnlyPort, at(fieldROPort)
	}
	if c.ProtectKernelDefaults != nil {
		k.ProtectKernelDefaults, k.Sources[fieldProtect] = c.ProtectKernelDefaults, at(fieldProtect)
	}
	return nil
}

// applyKubeletFlags applies the flags over the config file's settings.
func applyKubeletFlags(flags []flagValue, k *compliance.Kubelet) []error {
	var errs []error
	for _, f := range flags {
		src := "kubelet --" + f.name
		switch f.name {
		case "anonymous-auth":
			b, ok := parseBool(f.value)
			if !ok {
				errs = append(errs, fmt.Errorf("%s=%s: not a boolean", src, f.value))
				continue
			}
			k.AnonymousAuth, k.Sources[fieldAnonymous] = &b, src
		case "authorization-mode":
			k.AuthorizationMode, k.Sources[fieldAuthz] = f.value, src
		case "read-only-port":
			n, err := strconv.Atoi(f.value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%s: not a port", src, f.value))
				continue
			}
			k.ReadOnlyPort, k.Sources[fieldROPort] = &n, src
		case "protect-kernel-defaults":
			b, ok := parseBool(f.value)
			if !ok {
				errs = append(errs, fmt.Errorf("%s=%s: not a boolean", src, f.value))
				continue
			}
			k.ProtectKernelDefaults, k.Sources[fieldProtect] = &b, src
		}
	}
	return errs
}

// kubeletDefaults fills the settings nothing set with the kubelet's
// defaults, noting where they come from.
func kubeletDefaults(k *compliance.Kubelet) {
	fromFile := k.ConfigFile != ""
	def := func(field, flag string) string {
		if fromFile {
			return k.ConfigFile + "#" + field + " (kubelet default)"
		}
		return "kubelet --" + flag + " (default)"
	}
	if k.AnonymousAuth == nil {
		v := !fromFile
		k.AnonymousAuth, k.Sources[fieldAnonymous] = &v, def(fieldAnonymous, "anonymous-auth")
	}
	if k.AuthorizationMode == "" {
		k.AuthorizationMode, k.Sources[fieldAuthz] = "AlwaysAllow", def(fieldAuthz, "authorization-mode")
		if fromFile {
			k.AuthorizationMode = "Webhook"
		}
	}
	if k.ReadOnlyPort == nil {
		port := 0
		if !fromFile {
			port = 10255
		}
		k.ReadOnlyPort, k.Sources[fieldROPort] = &port, def(fieldROPort, "read-only-port")
	}
	if k.ProtectKernelDefaults == nil {
		// Off by default both ways: say where it would be turned on.
		k.Sources[fieldProtect] = def(fieldProtect, "protect-kernel-defaults")
	}
}
