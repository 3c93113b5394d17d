package hostcfg

import (
	"strconv"
	"strings"
)

// flagKind says how a command-line flag takes its value, as spf13/pflag
// (which dockerd and the kubelet use) parses it.
type flagKind int

const (
	boolFlag  flagKind = iota // --x, --x=true, --x=false; never a separate value
	valueFlag                 // --x v, --x=v
)

// flagValue is one occurrence of a known flag.
type flagValue struct {
	name  string // canonical long name
	value string // "true" for a bare bool flag
}

// parseFlags returns the occurrences of the known flags in args, in order.
// known maps every accepted spelling ("host", "H") to the canonical long
// name and its kind. Unknown flags are skipped, and so are positional
// arguments: only the flags Bulwark reads matter, and pflag rejects a
// command line it cannot parse, so a running daemon's is well formed.
func parseFlags(args []string, known map[string]flagSpec) []flagValue {
	var out []flagValue
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		var name, value string
		hasValue := false
		switch {
		case strings.HasPrefix(a, "--"):
			name, value, hasValue = strings.Cut(a[2:], "=")
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// -H unix:///x, -H=unix:///x, -Hunix:///x
			name = a[1:2]
			if rest := a[2:]; rest != "" {
				value, hasValue = strings.TrimPrefix(rest, "="), true
			}
		default:
			continue
		}
		spec, ok := known[name]
		if !ok {
			continue
		}
		switch {
		case spec.kind == boolFlag && !hasValue:
			value = "true"
		case spec.kind == valueFlag && !hasValue:
			rest := args[i+1:]
			if len(rest) == 0 {
				continue
			}
			value = rest[0]
			i++
		}
		out = append(out, flagValue{name: spec.name, value: value})
	}
	return out
}

type flagSpec struct {
	name string
	kind flagKind
}

// parseBool parses a flag or config boolean as strconv does.
func parseBool(s string) (bool, bool) {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return b, err == nil
}
