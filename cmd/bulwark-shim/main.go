// Command bulwark-shim stands in place of runc. `bulwark-defender shim
// install` moves runc to `<runc>.bulwark-orig` and puts this program where
// runc was, so that every container engine (Docker, containerd, CRI-O,
// Kubernetes) runs it instead.
//
// On `create`, `run` and `restore` it reads the bundle's config.json, asks
// the local Defender over its unix socket whether the container may be
// created, and then either execs the original runc with exactly the same
// argv, environment and file descriptors, or exits 1 with a one-line reason
// on stderr (and in runc's --log file, where containerd reads it). No answer
// within the timeout (60 s by default), or no Defender at all: it fails open,
// or closed where the deciding rule says so, and leaves an audit record.
// Every other subcommand execs the original runc at once; with cgo, a C
// constructor does that before the Go runtime starts (passthrough.go).
//
// Unlike the other binaries, the program lives here and not in an internal
// package: it may import only the standard library and bulwark/api/shimv1
// (main_test.go enforces it), and it is one short-lived exec, not a service
// with a Config, Run and Close.
package main

import "os"

func main() {
	exe, err := os.Executable()
	if err != nil {
		os.Stderr.WriteString("bulwark-shim: find my own path: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(run(exe, os.Args, os.Environ(), os.Stderr))
}
