#!/usr/bin/env bash
# Installs what Bulwark's build, demo and tests need on a Debian 12 machine,
# idempotently: Debian packages when missing, Go tools into ./bin/tools.
# Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: name → a file that proves it is installed.
declare -A pkgs=(
  [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
  [curl]=/usr/bin/curl
  [iproute2]=/usr/bin/ip
  # eBPF: the pinned Debian clang compiles bpf/ (make generate), bpftool dumps BTF
  [clang]=/usr/bin/clang
  [llvm]=/usr/bin/llvm-objdump
  [libbpf-dev]=/usr/include/bpf/bpf_helpers.h
  [bpftool]=/usr/sbin/bpftool
  # containers for the sensor, shim and enforcement tests
  [runc]=/usr/sbin/runc
  [containerd]=/usr/bin/containerd
  [busybox-static]=/bin/busybox
)
missing=()
for p in "${!pkgs[@]}"; do
  [ -e "${pkgs[$p]}" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Kernel filesystems the eBPF sensor needs; a fresh machine lacks them.
if [ "$(id -u)" -eq 0 ]; then
  mountpoint -q /sys/kernel/tracing  || mount -t tracefs    none /sys/kernel/tracing
  mountpoint -q /sys/fs/bpf          || mount -t bpf        none /sys/fs/bpf
  mountpoint -q /sys/kernel/security || mount -t securityfs none /sys/kernel/security
fi

# Go tools, pinned.
GOLANGCI_VERSION=v2.15.0
if ! bin/tools/golangci-lint version 2>/dev/null | grep -q "${GOLANGCI_VERSION#v}"; then
  echo "setup: installing golangci-lint ${GOLANGCI_VERSION}"
  GOBIN="$PWD/bin/tools" GOFLAGS= go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_VERSION}"
fi
