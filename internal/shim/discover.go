package shim

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"bulwark/api/shimv1"
)

// defaultContainerdConfig is containerd's configuration, whose runc
// options may name another binary (BinaryName).
const defaultContainerdConfig = "/etc/containerd/config.toml"

// defaultDirs are where runc is looked for besides $PATH.
func defaultDirs() []string {
	return []string{"/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}
}

// Discovery says where to look for runc.
type Discovery struct {
	// PATH is a $PATH-style list of directories.
	PATH string
	// Dirs are more directories; nil means /usr/bin, /usr/sbin,
	// /usr/local/bin, /usr/local/sbin.
	Dirs []string
	// ContainerdConfigs are containerd config files whose BinaryName
	// settings name runc binaries; nil means /etc/containerd/config.toml.
	ContainerdConfigs []string
}

// Discover returns the runc binaries container engines may run: `runc` in
// each directory and every BinaryName of containerd's runc runtimes, with
// symlinks resolved (Debian's /usr/bin/runc is /usr/sbin/runc), each once,
// in the order found. A shim already in place counts as the runc it stands
// for.
func Discover(d Discovery) []string {
	dirs := filepath.SplitList(d.PATH)
	dirs = append(dirs, orDefault(d.Dirs, defaultDirs())...)
	var names []string
	for _, dir := range dirs {
		if dir != "" && filepath.IsAbs(dir) {
			names = append(names, filepath.Join(dir, "runc"))
		}
	}
	for _, cfg := range orDefault(d.ContainerdConfigs, []string{defaultContainerdConfig}) {
		for _, bin := range containerdBinaries(cfg) {
			if filepath.IsAbs(bin) {
				names = append(names, bin)
				continue
			}
			for _, dir := range dirs {
				if dir != "" && filepath.IsAbs(dir) {
					names = append(names, filepath.Join(dir, bin))
				}
			}
		}
	}
	var out []string
	for _, n := range names {
		real, err := filepath.EvalSymlinks(n)
		if err != nil || strings.HasSuffix(real, shimv1.OriginalSuffix) || slices.Contains(out, real) {
			continue
		}
		if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			out = append(out, real)
		}
	}
	return out
}

func orDefault(s, def []string) []string {
	if s == nil {
		return def
	}
	return s
}

// containerdBinaries reads the BinaryName settings of a containerd config
// (TOML): `BinaryName = "/usr/local/bin/runc"` under a runtime's options.
// Only that key is needed, so a line scan does, without a TOML parser.
func containerdBinaries(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != "BinaryName" {
			continue
		}
		value = strings.TrimSpace(value)
		var s string
		switch {
		case strings.HasPrefix(value, `"`):
			q, err := strconv.QuotedPrefix(value)
			if err != nil {
				continue
			}
			s, _ = strconv.Unquote(q)
		case strings.HasPrefix(value, "'") && strings.Count(value, "'") >= 2:
			s = value[1 : 1+strings.IndexByte(value[1:], '\'')]
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
