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

# Go tools, pinned.
GOLANGCI_VERSION=v2.15.0
if ! bin/tools/golangci-lint version 2>/dev/null | grep -q "${GOLANGCI_VERSION#v}"; then
  echo "setup: installing golangci-lint ${GOLANGCI_VERSION}"
  GOBIN="$PWD/bin/tools" GOFLAGS= go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_VERSION}"
fi
