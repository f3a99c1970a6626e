# latch — see README.md. `make demo` runs the gateway with its demo,
# `make test` runs every test; both install what they need first.

SHELL        := /bin/bash
.SHELLFLAGS  := -o pipefail -c
TOOLS_BIN    := $(CURDIR)/.tools/bin
export PATH  := $(TOOLS_BIN):$(PATH)
GO           ?= go
TEST_TIMEOUT ?= 20m
# Seconds each fuzz target runs in `make fuzz` (and briefly in `make test`).
FUZZTIME     ?= 10s

# Version stamped into the binaries (`latch -version`): `git describe`, and
# the commit. The go tool records the revision too, but not in a git
# worktree, and not where GOFLAGS says -buildvcs=false; -X works everywhere.
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION     ?= $(shell git rev-parse HEAD 2>/dev/null)
VERSION      := $(VERSION)
REVISION     := $(REVISION)
BUILDINFO    := github.com/latchgw/latch/cmd/internal/buildinfo
STAMP        := -X $(BUILDINFO).Version=$(VERSION) -X $(BUILDINFO).Revision=$(REVISION)
GOBUILD      := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto
BIN_DIR      ?= bin
RELEASE_DIR  ?= dist
PLATFORMS    ?= linux/amd64 linux/arm64 darwin/arm64

.PHONY: all build release test unit vet fuzz demo bench bench-tools tools redis consul pebble jaeger chromium compose netns images up down compat clean

all: build

build:
	$(GOBUILD) -ldflags '$(STAMP)' -o $(BIN_DIR)/ ./cmd/...

# latch for each of PLATFORMS, version stamped, and their SHA-256 sums, in
# RELEASE_DIR (git-ignored): latch-VERSION-OS-ARCH. Static on Linux; on
# macOS every Go binary links the system's libSystem, and nothing else.
release:
	rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	@set -e; for p in $(PLATFORMS); do \
		out=$(RELEASE_DIR)/latch-$(VERSION)-$${p%/*}-$${p#*/}; echo "release: $$out"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GOBUILD) -ldflags '-s -w $(STAMP)' -o $$out ./cmd/latch; \
	done
	cd $(RELEASE_DIR) && sha256sum latch-* > SHA256SUMS && cat SHA256SUMS

vet:
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# Everything, integration included (real Consul, real Redis, real backends).
# The fault and compose suites run on their own, verbosely, so their tables
# are printed. The compose suite needs a Docker daemon: without one it prints
# one SKIPPED line (a failure when LATCH_REQUIRE_DOCKER is set, as in CI).
test: tools vet
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -skip 'TestFaultSuite|TestComposeSuite|TestGRPCTable|TestGRPCH2CTable|TestHostile|TestResponseFraming|TestTwoRoutesOneCookie|TestUnpinWins|TestCookieless' ./...
	LATCH_TEST_SERVER=net/http $(GO) test -race -count=1 -skip TestHostileInput ./gateway/  # the gateway suite again, served by net/http
	$(GO) test -race -count=1 -run 'TestHostileInput|TestResponseFraming' -v ./gateway/ ./gateway/forward/ | grep -v '^=== '  # the hostile-input tables
	$(GO) test -count=1 -run 'Alloc' ./policy/ ./session/ ./gateway/ ./gateway/accesslog/  # allocation counts: without -race, which changes them
	$(GO) test -race -count=1 -tags sockfault -run 'TestSockFault|FuzzRelayIntact' ./gateway/...  # bytes intact with faults under the sockets (sockio's sockfault build), on the committed seeds
	$(GO) test -race -count=1 -tags sockfault ./gateway/forward/ ./gateway/h1/  # the byte paths' own suites with the same faults
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run 'TestFaultSuite|TestGRPCTable|TestGRPCH2CTable|TestHostileClientFaults|TestHostileProcess|TestTwoRoutesOneCookie|TestUnpinWins|TestCookieless' -v ./integration/ | grep -v '^=== '
	$(GO) test -count=1 -timeout 30m -run TestComposeSuite -v ./integration/ | grep -v '^=== '
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# Unit tests only: no Consul, no Redis.
unit:
	$(GO) test -race -count=1 ./discovery/ ./policy/ ./session/ ./gateway/

# Each fuzz target for FUZZTIME, on top of its committed seed corpus; then
# those of the packages over latch's sockets again, built with faults under
# the sockets (-tags sockfault). A finding (an input go test saved) fails it;
# see integration/tools/fuzz.sh.
fuzz:
	@GO=$(GO) bash integration/tools/fuzz.sh $(FUZZTIME)

# The demo's Consul: LATCH_DEMO_CONSUL_ADDR (an agent already running),
# else CONSUL_BIN or a `consul` on PATH of a supported version, else the
# pinned one `make consul` builds (demo.sh decides, and says which).
demo: redis build
	bash integration/tools/demo.sh

# Micro-benchmarks, Redis figures, then the end-to-end load run (real
# Consul, Redis, 4 backends, a latch process, HAProxy and nginx as bars,
# wrk as the load tool; a few minutes).
bench: tools bench-tools
	$(GO) test -run '^$$' -bench . -benchmem ./policy/ ./session/ ./gateway/ ./gateway/accesslog/ ./gateway/h1/
	$(GO) test -run '^$$' -bench 'BenchmarkRedisMemory' -benchtime 1x ./integration/
	$(GO) test -run '^$$' -bench 'BenchmarkCookielessRedis' -benchtime 1000000x -timeout 30m ./integration/
	$(GO) test -run '^$$' -bench 'BenchmarkInvalidation' -benchtime 200x ./integration/
	$(GO) test -run '^$$' -bench 'BenchmarkLoad' -benchtime 1x -timeout 20m ./integration/


tools: redis consul pebble jaeger chromium compose netns

# What `make bench` measures against and with, from Debian, installed when
# missing: haproxy and nginx (the bars), wrk (the closed-loop load tool).
# Kept out of `make tools`: `make test` needs none of them, and haproxy and
# nginx are daemons (on a machine with systemd, installing them also starts
# them) that a test box should not get unasked.
bench-tools:
	@missing=""; for p in haproxy:haproxy nginx:nginx-light wrk:wrk; do \
		PATH="$$PATH:/usr/sbin" command -v $${p%%:*} >/dev/null || missing="$$missing $${p#*:}"; done; \
	[ -z "$$missing" ] || { \
		echo "installing$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

# Debian's redis-server, installed when missing.
redis:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# iproute2 (ip netns, veth, bridge) and nftables, for the fault suite's
# replicas on hosts of their own (TestFaultSuiteHosts); installed when missing.
netns:
	@missing=""; for p in ip:iproute2 nft:nftables; do \
		PATH="$$PATH:/usr/sbin:/sbin" command -v $${p%%:*} >/dev/null || missing="$$missing $${p#*:}"; done; \
	[ -z "$$missing" ] || { \
		echo "installing$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

# Debian's chromium, for the status page's browser test; installed when missing.
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Consul built from its Go module into .tools/bin (cached; ~8 minutes once).
consul:
	@bash integration/tools/install-consul.sh $(TOOLS_BIN)

# Let's Encrypt's ACME test server (pebble) and its DNS companion
# (pebble-challtestsrv), built from their Go module into .tools/bin (cached),
# for the ACME test.
pebble:
	@bash integration/tools/install-pebble.sh $(TOOLS_BIN)

# Jaeger (all-in-one: OTLP in, query API out) built from its Go module into
# .tools/bin (cached; ~8 minutes once), for the tracing test.
jaeger:
	@bash integration/tools/install-jaeger.sh $(TOOLS_BIN)

# Docker Compose v2 as the docker CLI plugin, built from its Go module when
# missing (cached; minutes once). Only where a Docker daemon answers.
compose:
	@if docker info >/dev/null 2>&1; then bash integration/tools/install-compose.sh; \
	else echo "docker compose: no Docker daemon here, not installed"; fi

# The images docker-compose.yml and the Dockerfile name, made locally when no
# registry can be pulled from (cached; the compose suite runs this too):
# from Consul, Redis, Go and Jaeger (the tracing profile) only, not pebble
# or Chromium, which compose does not use.
images: redis consul jaeger compose
	@CONSUL_BIN=$(TOOLS_BIN)/consul JAEGER_BIN=$(TOOLS_BIN)/jaeger bash integration/tools/images.sh

# The compose demo, built from this checkout and stamped with its version
# (`docker compose exec latch /latch -version`): docker compose up -d --wait
# with LATCH_VERSION and LATCH_REVISION, which docker-compose.yml passes to
# the Dockerfile. UP_FLAGS adds flags (the compose suite: --wait-timeout).
up:
	LATCH_VERSION=$(VERSION) LATCH_REVISION=$(REVISION) docker compose up -d --wait $(UP_FLAGS)

# The compose demo's teardown: every profile's containers (replica, extra
# included), its networks and volumes (sessions, Consul's state, the cookie
# secret). The README's command, as a target.
down:
	docker compose --profile '*' down -v

# The oldest supported Consul (CONSUL_OLDEST; integration/tools/consul-range.sh
# says the range) under latch's Consul tests (discovery, health, ACLs, TLS)
# and the demo (make demo and one joining a running agent), first on PATH:
# built from its Go module into .tools/compat (cached like the pinned one;
# about 8 minutes once, too long for `make test`, which runs the pinned,
# newest one).
CONSUL_OLDEST ?= 1.20.1
COMPAT_BIN    ?= $(CURDIR)/.tools/compat
compat: redis build
	@CONSUL_VERSION=$(CONSUL_OLDEST) bash integration/tools/install-consul.sh $(COMPAT_BIN)
	PATH=$(COMPAT_BIN):$$PATH $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^(TestConsul|TestMakeDemo$$|TestDemoOwnConsul$$)' -v ./integration/ | grep -v '^=== '

clean:
	rm -rf bin $(RELEASE_DIR) integration/results
