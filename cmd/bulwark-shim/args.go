package main

import "strings"

// invocation is what the shim needs from runc's command line.
type invocation struct {
	sub       string // the subcommand, "" when there is none (runc --version)
	root      string // --root
	log       string // --log
	logFormat string // --log-format: text (runc's default) or json
	bundle    string // the subcommand's --bundle/-b; "" means the working directory
	id        string // the container ID
}

// runc's global flags that take a value (urfave/cli, Go flag syntax: -x or
// --x, with =value or the next argument). The others are booleans.
func globalTakesValue(name string) bool {
	switch name {
	case "root", "log", "log-format", "criu", "rootless":
		return true
	}
	return false
}

// Flags of create, run and restore that take a value.
func subTakesValue(name string) bool {
	switch name {
	case "bundle", "b", "console-socket", "pidfd-socket", "pid-file", "preserve-fds",
		"image-path", "work-path", "parent-path", "manage-cgroups-mode", "empty-ns",
		"lsm-profile", "lsm-mount-context", "status-fd":
		return true
	}
	return false
}

// parseArgs reads runc's arguments (without the program name) as runc
// would: global flags, the subcommand, its flags and the container ID.
//
// The bundle is taken from the last -b/--bundle anywhere in the
// subcommand's arguments, so that a flag unknown here (a newer runc's) that
// takes a value cannot hide it; the ID is the last positional argument.
func parseArgs(args []string) invocation {
	var inv invocation
	i := 0
	for ; i < len(args); i++ {
		name, value, hasValue, isFlag := splitFlag(args[i])
		if !isFlag {
			break
		}
		if name == "" { // "--" ends the flags
			i++
			break
		}
		if globalTakesValue(name) && !hasValue {
			if i+1 < len(args) {
				i++
				value = args[i]
			}
		}
		switch name {
		case "root":
			inv.root = value
		case "log":
			inv.log = value
		case "log-format":
			inv.logFormat = value
		}
	}
	if i >= len(args) {
		return inv
	}
	inv.sub = args[i]
	rest := args[i+1:]
	flagsDone := false
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		name, value, hasValue, isFlag := splitFlag(a)
		if flagsDone || !isFlag {
			inv.id = a
			continue
		}
		if name == "" {
			flagsDone = true
			continue
		}
		if subTakesValue(name) && !hasValue && j+1 < len(rest) {
			j++
			value = rest[j]
		}
		if name == "bundle" || name == "b" {
			inv.bundle = value
		}
	}
	return inv
}

// splitFlag parses one argument in Go flag syntax. A lone "-" is not a
// flag; "--" is a flag with an empty name (the end of flags).
func splitFlag(a string) (name, value string, hasValue, isFlag bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", "", false, false
	}
	if a == "--" {
		return "", "", false, true
	}
	s := a[1:]
	if s[0] == '-' {
		s = s[1:]
	}
	name, value, hasValue = strings.Cut(s, "=")
	if name == "" { // "---x" or "-=x": Go's flag package refuses it; runc fails
		name = "?"
	}
	return name, value, hasValue, true
}
