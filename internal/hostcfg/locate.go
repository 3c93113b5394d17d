package hostcfg

import (
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Location is where a host finding's path is written on the host.
type Location struct {
	// Path is the host path of the file ("/etc/docker/daemon.json"); empty
	// when nothing on the host holds the setting.
	Path string
	// File is Path below the root with symbolic links resolved inside the
	// root, so that it opens the host's file whatever the root is; Path
	// joined to the root when it does not exist.
	File string
	// Line is 1-based; 0 when the file does not hold the key (an unset
	// option, a file's mode, a directory).
	Line int
}

// Locate finds where a path of a host finding is written in the host at
// root. It takes the paths Read records and the host checks report:
//
//   - "/etc/docker/daemon.json#icc", "/var/lib/kubelet/config.yaml#authentication.anonymous.enabled":
//     the file and the line of the key (of its deepest written parent for a
//     dotted key of a YAML file);
//   - "dockerd --host", "kubelet --read-only-port (default)": the unit file,
//     drop-in or environment file whose line sets the flag (any spelling:
//     -H for --host), else the line of the service's ExecStart=, where the
//     flag would go;
//   - "auditctl -l": the audit rules file where watches are added;
//   - "/etc/docker": the path itself.
func Locate(root, where string) Location {
	h := &reader{fs: hostFS{root: root}}
	var loc Location
	switch {
	case strings.HasPrefix(where, "dockerd "):
		loc = h.locateFlag("docker.service", dockerdFlags(), where)
		if loc.Path == "" {
			// Without systemd, the init scripts' files hold dockerd's flags.
			for _, f := range []string{"/etc/default/docker", "/etc/sysconfig/docker"} {
				if h.fs.exists(f) {
					loc = Location{Path: f, Line: flagLine(h.fileText(f), flagSpellings(dockerdFlags(), where))}
					break
				}
			}
		}
	case strings.HasPrefix(where, "kubelet "):
		loc = h.locateFlag("kubelet.service", kubeletFlags(), where)
	case where == "auditctl -l":
		loc.Path = "/etc/audit/audit.rules"
		for _, n := range h.fs.readDir("/etc/audit/rules.d") {
			if strings.HasSuffix(n, ".rules") {
				loc.Path = "/etc/audit/rules.d/" + n
				break
			}
		}
	case strings.HasPrefix(where, "/"):
		file, key, _ := strings.Cut(where, "#")
		loc.Path = path.Clean(file)
		if key != "" {
			loc.Line = keyLine(h.fileText(loc.Path), key)
		}
	}
	if loc.Path != "" {
		loc.File = filepath.Join(root, filepath.FromSlash(loc.Path))
		if real, err := h.fs.resolve(loc.Path); err == nil {
			loc.File = real
		}
	}
	return loc
}

// fileText is a host file's text; "" when it cannot be read.
func (h *reader) fileText(p string) string {
	b, err := h.fs.readFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

// locateFlag finds the line of the service's files that sets the flag of
// where ("dockerd --icc", "kubelet --read-only-port (default)").
func (h *reader) locateFlag(unitName string, known map[string]flagSpec, where string) Location {
	u := h.loadUnit(unitName)
	if u == nil {
		return Location{}
	}
	spellings := flagSpellings(known, where)
	// The files are applied in order, so the last one that sets the flag
	// wins.
	for i := len(u.files) - 1; i >= 0; i-- {
		if line := flagLine(h.fileText(u.files[i]), spellings); line > 0 {
			return Location{Path: u.files[i], Line: line}
		}
	}
	if u.execFrom != "" {
		return Location{Path: u.execFrom, Line: execStartLine(h.fileText(u.execFrom))}
	}
	return Location{Path: u.path}
}

// flagSpellings are the command-line spellings of the flag of where:
// "--host" and "-H" for "dockerd --host".
func flagSpellings(known map[string]flagSpec, where string) []string {
	_, flag, _ := strings.Cut(where, " ")
	flag, _, _ = strings.Cut(flag, " ") // " (default)"
	name := strings.TrimLeft(flag, "-")
	canonical := name
	if s, ok := known[name]; ok {
		canonical = s.name
	}
	out := []string{"--" + name}
	for spelling, s := range known {
		if s.name == canonical && spelling != name {
			if len(spelling) == 1 {
				out = append(out, "-"+spelling)
			} else {
				out = append(out, "--"+spelling)
			}
		}
	}
	return out
}

// flagLine is the last line of text, comments left out, that has one of
// the spellings as a word: "--icc=false", "--icc false", "-H tcp://…",
// "-Htcp://…".
func flagLine(text string, spellings []string) int {
	if text == "" {
		return 0
	}
	alts := make([]string, len(spellings))
	for i, s := range spellings {
		alts[i] = regexp.QuoteMeta(s)
		if len(s) == 2 { // -H takes its value attached, too
			alts[i] += `(?:[=\s"']|\S|$)`
		} else {
			alts[i] += `(?:[=\s"']|$)`
		}
	}
	re := regexp.MustCompile(`(?:^|[\s"'=])(?:` + strings.Join(alts, "|") + `)`)
	found, n := 0, 0
	for line := range strings.Lines(text) {
		n++
		if t := strings.TrimSpace(line); t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		if re.MatchString(line) {
			found = n
		}
	}
	return found
}

// execStartLine is the line of the last non-empty ExecStart= of a unit
// file.
func execStartLine(text string) int {
	found, n := 0, 0
	for line := range strings.Lines(text) {
		n++
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "ExecStart" && strings.TrimSpace(v) != "" {
			found = n
		}
	}
	return found
}

// keyLine is the line of a dotted key in a JSON or YAML file: each part is
// looked for after its parent's line, and the deepest part found decides.
// 0 when the first part is not written.
func keyLine(text, key string) int {
	if text == "" {
		return 0
	}
	lines := strings.SplitAfter(text, "\n")
	found, from := 0, 0
	for part := range strings.SplitSeq(key, ".") {
		re := regexp.MustCompile(`(?:^|[\s{,])["']?` + regexp.QuoteMeta(part) + `["']?\s*:`)
		i := from
		for ; i < len(lines); i++ {
			if t := strings.TrimSpace(lines[i]); t != "" && t[0] != '#' && re.MatchString(lines[i]) {
				break
			}
		}
		if i == len(lines) {
			break
		}
		found, from = i+1, i+1
	}
	return found
}
