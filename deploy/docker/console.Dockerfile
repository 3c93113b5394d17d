# syntax=docker/dockerfile:1
# The Bulwark Console image, built from this repository (the context is its
# root):
#   docker build -f deploy/docker/console.Dockerfile -t ghcr.io/bulwark/bulwark-console:0.1.0 .
# deploy/kubernetes uses that name as a placeholder until images are
# published; push yours and point the kustomization at it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0
# Pure Go (the store is modernc.org/sqlite): a static binary.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/bulwark-console ./cmd/bulwark-console

# No shell, no package manager; runs as the unprivileged user 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bulwark-console /usr/local/bin/bulwark-console
USER 65532:65532
# API and UI, Defender channel, admission controller.
EXPOSE 8083 8084 8085
ENTRYPOINT ["/usr/local/bin/bulwark-console"]
