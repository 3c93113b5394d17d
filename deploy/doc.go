// Package deploy holds what installs Bulwark: Kubernetes manifests
// (kubernetes/), systemd units (systemd/) and image builds (docker/). It has
// no code; its tests keep the files honest: they decode strictly into the
// Kubernetes API types, give the Defender exactly its capabilities, pass
// Bulwark's own compliance policy and agree with the binaries' flags and
// certificates. docs/install.md explains how to use them.
package deploy
