# Bulwark. The README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BINARIES := bulwark-console bulwark-defender bulwarkctl bulwark-shim
# bulwark-shim runs on the host in place of runc, whatever C library the host
# has: link it statically (its pass-through constructor is C, so cgo).
STATIC_LDFLAGS := -linkmode external -extldflags -static
FUZZTIME ?= 10s

.PHONY: all setup build demo test check-tidy check-fmt check-generate vet lint unit vmtest e2e fuzz-smoke generate bench clean

all: build

setup:
	@scripts/setup.sh

build:
	@mkdir -p bin
	@for b in $(BINARIES); do \
	  flags='$(LDFLAGS)'; if [ $$b = bulwark-shim ]; then flags="$$flags $(STATIC_LDFLAGS)"; fi; \
	  $(GO) build -trimpath -ldflags "$$flags" -o bin/$$b ./cmd/$$b; \
	done
	@echo "built: $(addprefix bin/,$(BINARIES))"

# Starts a Console on the embedded store with demo data and prints how to log in.
demo: setup build
	@scripts/demo.sh

test: setup check-tidy check-fmt check-generate vet lint unit vmtest e2e fuzz-smoke
	@echo "make test: all checks passed"

check-tidy:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; $(GO) mod tidy -diff; exit 1; }

check-fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Generated code (the BPF objects from bpf/ by bpf2go with Debian's clang) is
# committed; regenerating it must change nothing.
check-generate:
	@$(GO) generate ./...
	@git diff --exit-code --stat -- bpf internal || { echo "go generate changed committed files: run 'make generate' and commit"; exit 1; }

vet:
	$(GO) vet ./...

lint: setup
	bin/tools/golangci-lint run ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# The enforcer's privileged tests again, in a qemu VM booting Debian's own
# kernel with bpf in lsm=: the BPF LSM path, which this machine's kernel
# refuses, must pass there; and the sensor's loading and cwd tests, on that
# older verifier (scripts/vmtest.sh; the kernel is cached in .cache/).
vmtest:
	@scripts/vmtest.sh

# Black-box tests against the built binaries (network namespaces need root).
e2e:
	$(GO) test -tags e2e -count=1 -timeout 20m ./e2e/

# A short run of every fuzz target, so that CI catches a crash the seed corpus finds quickly.
# Go 1.26's fuzz coordinator can fail a run with a bare "context deadline exceeded" at the -fuzztime
# boundary on a loaded machine (golang/go#75804, fixed in Go 1.27): such a run, with no failing input
# written, is run once more; any other failure, or the same one twice, fails.
fuzz-smoke:
	@for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    for try in 1 2; do \
	      if $(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg > /tmp/bulwark-fuzz.log 2>&1; then break; fi; \
	      if [ $$try = 1 ] && grep -q 'context deadline exceeded' /tmp/bulwark-fuzz.log && ! grep -q 'Failing input written' /tmp/bulwark-fuzz.log; then \
	        echo "fuzz $$pkg $$f: the fuzz coordinator's deadline race (golang/go#75804); running it again"; continue; \
	      fi; \
	      cat /tmp/bulwark-fuzz.log; exit 1; \
	    done; \
	  done; \
	done

generate:
	$(GO) generate ./...

bench: build
	$(GO) run ./bench/api
	$(GO) run ./bench/channel

clean:
	rm -rf bin
