# syntax=docker/dockerfile:1
# The Bulwark Defender image, built from this repository (the context is its
# root):
#   docker build -f deploy/docker/defender.Dockerfile -t ghcr.io/bulwark/bulwark-defender:0.1.0 .
# deploy/kubernetes uses that name as a placeholder until images are
# published; push yours and point the kustomization at it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0
# The eBPF objects are generated and committed (bpf2go), so no clang here;
# cilium/ebpf is pure Go: a static binary.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/bulwark-defender ./cmd/bulwark-defender

# No shell, no package manager. It runs as root with the capabilities the
# DaemonSet grants (exactly six, all others dropped); bulwark-shim is not
# included, as the DaemonSet runs with --shim=off.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/bulwark-defender /usr/local/bin/bulwark-defender
ENTRYPOINT ["/usr/local/bin/bulwark-defender"]
