// Package archtest enforces how Bulwark's packages may depend on each other:
// cmd → assemblies → adapters → domain → stdlib. Domain packages do no I/O and
// no logging; adapters do not import each other.
package archtest

import (
	"fmt"
	"sort"
	"strings"
)

// Module is the module path.
const Module = "bulwark"

// Layer is where a package sits.
type Layer int

// The layers, innermost first.
const (
	Unknown Layer = iota
	Domain
	Adapter
	Assembly
	Command
	Tooling // bench programs, test helpers, tests of deploy/
	// Library packages wrap a third-party library or the standard library
	// for several adapters (credential hashing, flag/env layering). They
	// import only domain packages and code outside the module.
	Library
)

func (l Layer) String() string {
	return [...]string{"unknown", "domain", "adapter", "assembly", "command", "tooling", "library"}[l]
}

// domains and adapters name the packages under internal/ by their first path
// element. A new package must be added here, or the test fails.
var (
	domains = []string{"auth", "audit", "store", "inventory", "policy", "collection", "compliance", "vuln", "event", "runtimepolicy"}
	// adapters may import the wire contracts in bulwark/api.
	adapters   = []string{"sqlite", "postgres", "httpapi", "channel", "sensor", "enforcer", "runtime", "shim", "admission", "registry", "sbom", "waas", "cnns", "alert", "pki", "spool"}
	libraries  = []string{"credential", "flagenv", "rego", "workload", "hostcfg", "k8s", "ringwait"}
	assemblies = []string{"console", "defender", "cli"}
)

// ioPackages are standard packages a domain package must not import.
// A path also matches its sub-packages (os/exec, net/http, log/slog…).
var ioPackages = []string{"os", "net", "database", "log", "syscall", "io/ioutil", "unsafe", "plugin", "crypto/rand", "runtime/debug"}

// LayerOf classifies an import path of this module.
func LayerOf(path string) Layer {
	rest, ok := strings.CutPrefix(path, Module+"/")
	if !ok {
		return Unknown
	}
	switch {
	case rest == "api" || strings.HasPrefix(rest, "api/"):
		return Domain // wire contracts: pure types
	case strings.HasPrefix(rest, "cmd/"):
		return Command
	case strings.HasPrefix(rest, "bench/"), strings.HasPrefix(rest, "e2e"), rest == "deploy":
		return Tooling // deploy: manifests and units, with tests only
	}
	elem, ok := strings.CutPrefix(rest, "internal/")
	if !ok {
		return Unknown
	}
	first, sub, _ := strings.Cut(elem, "/")
	if strings.HasSuffix(sub, "test") || strings.HasSuffix(first, "test") {
		return Tooling // consoletest, storetest, porttest…: test helpers may reach across
	}
	for _, set := range []struct {
		names []string
		layer Layer
	}{{domains, Domain}, {adapters, Adapter}, {assemblies, Assembly}, {libraries, Library}} {
		for _, n := range set.names {
			if first == n {
				return set.layer
			}
		}
	}
	return Unknown
}

// Package is a package and what it imports (non-test code).
type Package struct {
	ImportPath string
	Imports    []string
}

// Check returns every rule the packages break, sorted.
func Check(pkgs []Package) []string {
	var bad []string
	for _, p := range pkgs {
		from := LayerOf(p.ImportPath)
		if from == Unknown {
			bad = append(bad, fmt.Sprintf("%s: not classified; add it to archtest's layer lists", p.ImportPath))
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, Module+"/") {
				if from == Domain && isIO(imp) {
					bad = append(bad, fmt.Sprintf("%s (domain) imports %s: domain packages do no I/O or logging", p.ImportPath, imp))
				}
				if from == Domain && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					bad = append(bad, fmt.Sprintf("%s (domain) imports %s: domain packages use the standard library only", p.ImportPath, imp))
				}
				continue
			}
			to := LayerOf(imp)
			if msg := rule(from, to); msg != "" {
				bad = append(bad, fmt.Sprintf("%s (%s) imports %s (%s): %s", p.ImportPath, from, imp, to, msg))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func rule(from, to Layer) string {
	switch {
	case to == Tooling:
		if from != Tooling {
			return "only tests and tooling may import test helpers"
		}
	case to == Command:
		return "nothing imports a command"
	case from == Domain && to != Domain:
		return "domain packages import only other domain packages"
	case from == Library && to != Domain:
		return "library packages import only domain packages"
	case from == Adapter && to == Adapter:
		return "adapters do not import each other; share through a domain package"
	case from == Adapter && to == Assembly:
		return "dependencies point inward"
	case from == Assembly && to == Assembly:
		return "assemblies do not import each other"
	}
	return ""
}

// pureNet are net packages that only parse and compute.
var pureNet = []string{"net/netip", "net/url", "net/mail", "net/textproto"}

func isIO(imp string) bool {
	for _, p := range pureNet {
		if imp == p {
			return false
		}
	}
	for _, p := range ioPackages {
		if imp == p || strings.HasPrefix(imp, p+"/") {
			return true
		}
	}
	return false
}
