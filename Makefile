# berth — two commands for a newcomer: `make run` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO      ?= go
BIN     := bin/berth
# Test timeout for the whole default suite; it must stay well under 20 minutes
# on 2 cores. Slow suites live behind their own targets.
TEST_TIMEOUT ?= 18m

.PHONY: all build run test bench fuzz vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/berth

## run: install what is missing, build, and start berth on the embedded defaults.
run:
	scripts/deps.sh run
	$(MAKE) build
	scripts/run.sh

## test: install what is missing and run every test (as root: real containers).
test:
	scripts/deps.sh test
	$(GO) vet ./...
	$(GO) build ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## test-cgroup2: the engine's real container tests on a pure cgroup v2 kernel
## (Debian's kernel under qemu; see test/cgroup2/run.sh). PKGS picks packages,
## KERNEL the series: 6.18 (default, trixie-backports), 6.12 (trixie's own),
## 6.1 (bookworm's), where overlayfs takes no layers as file descriptors.
.PHONY: test-cgroup2
test-cgroup2:
	BERTH_CGROUP2_KERNEL_SERIES=$(KERNEL) test/cgroup2/run.sh $(PKGS)

## bench: benchmarks against the real peers (runc, crun, nginx), reported as ratios.
bench:
	scripts/deps.sh bench
	$(MAKE) build
	bench/run.sh

## fuzz: a short run of every fuzz target (seeds in each package's testdata).
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin
