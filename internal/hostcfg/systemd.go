package hostcfg

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// unitDirs are where systemd looks for units, highest precedence first.
func unitDirs() []string {
	return []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
		"/usr/lib/systemd/system", "/lib/systemd/system"}
}

// unit is a systemd unit with its drop-ins applied: where it is and the
// command line its service runs.
type unit struct {
	path string   // host path of the unit file; "" when only drop-ins exist
	argv []string // ExecStart with the environment expanded
	// execFrom names the file that set ExecStart, for messages.
	execFrom string
}

// loadUnit finds a unit and its drop-ins (<dir>/<name>.d/*.conf, in name
// order across the unit directories, a higher-precedence directory's file
// hiding a lower one's of the same name) and returns its final ExecStart
// with the Environment= and EnvironmentFile= variables expanded. nil when
// neither the unit nor a drop-in exists.
func (h *reader) loadUnit(name string) *unit {
	if u, ok := h.units[name]; ok {
		return u
	}
	if h.units == nil {
		h.units = map[string]*unit{}
	}
	var files []string
	u := &unit{}
	for _, d := range unitDirs() {
		if p := d + "/" + name; u.path == "" && h.fs.exists(p) {
			u.path = p
		}
	}
	if u.path != "" {
		files = append(files, u.path)
	}
	dropins := map[string]string{}
	var names []string
	for _, d := range unitDirs() {
		dir := d + "/" + name + ".d"
		for _, n := range h.fs.readDir(dir) {
			if _, seen := dropins[n]; !seen && strings.HasSuffix(n, ".conf") {
				dropins[n] = dir + "/" + n
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, dropins[n])
	}
	if len(files) == 0 {
		h.units[name] = nil
		return nil
	}
	env := map[string]string{}
	var exec, envFiles []string
	for _, f := range files {
		b, err := h.fs.readFile(f)
		if err != nil {
			h.fail(fmt.Errorf("read %s: %w", f, err))
			continue
		}
		for _, kv := range serviceSettings(string(b)) {
			switch kv.key {
			case "ExecStart":
				if kv.value == "" {
					exec = nil // an empty assignment resets the list
					continue
				}
				exec = append(exec, kv.value)
				u.execFrom = f
			case "Environment":
				words, err := splitWords(kv.value)
				if err != nil {
					h.fail(fmt.Errorf("%s: Environment=%s: %w", f, kv.value, err))
					continue
				}
				for _, w := range words {
					if k, v, ok := strings.Cut(w, "="); ok {
						env[k] = v
					}
				}
			case "EnvironmentFile":
				if kv.value == "" {
					envFiles = nil
					continue
				}
				envFiles = append(envFiles, kv.value)
			}
		}
	}
	// EnvironmentFile= variables override Environment= ones.
	for _, ef := range envFiles {
		optional := strings.HasPrefix(ef, "-")
		ef = strings.TrimPrefix(ef, "-")
		b, err := h.fs.readFile(ef)
		if err != nil {
			if !optional {
				h.fail(fmt.Errorf("%s: EnvironmentFile %s: %w", name, ef, err))
			}
			continue
		}
		for k, v := range parseEnvFile(string(b)) {
			env[k] = v
		}
	}
	if len(exec) > 0 {
		// A service of Type=oneshot may list several; the daemon is the last.
		line := strings.TrimLeft(exec[len(exec)-1], "-@:+!")
		argv, err := expandCommand(line, env)
		if err != nil {
			h.fail(fmt.Errorf("%s: ExecStart=%s: %w", u.execFrom, line, err))
		}
		u.argv = argv
	}
	h.units[name] = u
	return u
}

type setting struct{ key, value string }

// serviceSettings returns the key=value lines of a unit file's [Service]
// section, continuation lines joined.
func serviceSettings(text string) []setting {
	var out []setting
	section := ""
	var pending strings.Builder
	for raw := range strings.Lines(text) {
		line := strings.TrimSpace(raw)
		if pending.Len() > 0 {
			line = pending.String() + line
			pending.Reset()
		}
		if strings.HasSuffix(line, `\`) {
			pending.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			continue
		}
		if section != "Service" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out = append(out, setting{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out
}

// parseEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile= and the
// shell files /etc/default/docker and /etc/sysconfig/docker write them:
// comments, blank lines, "export ", single or double quotes.
func parseEnvFile(text string) map[string]string {
	env := map[string]string{}
	for raw := range strings.Lines(text) {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if words, err := splitWords(v); err == nil {
			v = strings.Join(words, " ")
		}
		env[k] = v
	}
	return env
}

var errQuote = errors.New("unterminated quote")

// splitWords splits a command line into words as systemd and the shell do
// for the cases unit files use: whitespace separates, single and double
// quotes group, a backslash escapes the next character.
func splitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return words, errQuote
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// expandCommand splits an ExecStart line and expands variables as systemd
// does: a word that is exactly $NAME becomes the variable's value split at
// whitespace (zero or more words); ${NAME} anywhere is replaced verbatim
// within its word. Unset variables are empty.
func expandCommand(line string, env map[string]string) ([]string, error) {
	words, err := splitWords(line)
	var out []string
	for _, w := range words {
		if name, ok := strings.CutPrefix(w, "$"); ok && isVarName(name) {
			out = append(out, strings.Fields(env[name])...)
			continue
		}
		out = append(out, expandBraces(w, env))
	}
	return out, err
}

func expandBraces(w string, env map[string]string) string {
	var b strings.Builder
	for {
		i := strings.Index(w, "${")
		if i < 0 {
			b.WriteString(w)
			return b.String()
		}
		j := strings.IndexByte(w[i:], '}')
		if j < 0 {
			b.WriteString(w)
			return b.String()
		}
		b.WriteString(w[:i])
		b.WriteString(env[w[i+2:i+j]])
		w = w[i+j+1:]
	}
}

func isVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}
