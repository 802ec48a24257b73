# depharness — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := bin/depharness
IMAGE ?= depharness:local
# Every package but the Docker end-to-end tests, which `test-docker` runs.
PKGS = $(shell $(GO) list ./... | grep -v /e2e)
BENCHTIME ?= 1x
# The version the binary reports (verify's report, --version): git describe, or "dev".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 10s
# make perf: flags of sim/load/perf, e.g. PERF_FLAGS="-runs 5 -devices 20000".
PERF_FLAGS ?=
# make chaos: SIGKILLs of the proxy (CHAOS_KILLS=200 for a longer run), a fixed seed to replay
# one (CHAOS_SEED=…; empty draws one), and how long the whole-API fuzzer runs.
CHAOS_KILLS ?= 20
CHAOS_SEED ?=
CHAOS_FUZZTIME ?= 20s
export TESTCONTAINERS_RYUK_DISABLED := true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1

.PHONY: help build run test lint bench perf fuzz clean image compose-up compose-down test-docker deps-docker deps-browser verify self-check load chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the static depharness binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w -X github.com/depharness/depharness/internal/version.Version=$(VERSION)' -o $(BIN) ./cmd/depharness

run: build ## bring the whole world up in one process (depharness up)
	$(BIN) up

test: ## all unit, integration and BDD tests, with the race detector (browser tests skip without chromium: make deps-browser)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

lint: ## go vet, and gofmt must print nothing
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

bench: ## Go benchmarks of the proxy, fakes and simulator (see README for targets)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=$(BENCHTIME) ./proxy/... ./fakes/... ./sim/...

perf: build ## the headline numbers beside their floors: a 10,000-device rollout (median of 3), the proxy's headline benchmarks, the suite's time
	$(GO) run ./sim/load/perf -bin $(BIN) $(PERF_FLAGS)

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $(PKGS); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

verify: build ## run the compliance suite against the reference proxy, reports in reports/
	$(BIN) verify

self-check: build ## prove the suite catches every violation (at an assertion) and passes every allowance; prints both tables
	$(BIN) verify --self-check --self-check-parallel 6

chaos: build ## fault battery: SIGKILLs and cloud outages in a 1,000-device rollout, held connections, API fuzzing; fails on any loss
	$(BIN) chaos --kills $(CHAOS_KILLS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))
	DEPHARNESS_CHAOS_SELFTEST=1 $(GO) test -count=1 -v -run '^TestBattery' ./world/chaos/
	$(GO) test -run '^$$' -fuzz '^FuzzAPIRequest$$' -fuzztime $(CHAOS_FUZZTIME) -parallel 2 ./proxy/httpapi/

load: build ## a rollout load run against the in-process world, report in reports/
	$(BIN) load

image: build ## the FROM-scratch container image holding the static binary
	mkdir -p bin/image/data && chmod 0755 bin/image/data
	docker build -q -t $(IMAGE) -f Dockerfile .

compose-up: image ## the world as containers (docker-compose; COMPOSE_FILES="-f docker-compose.yml -f docker-compose.scale.yml" for two gateways)
	DEPHARNESS_IMAGE=$(IMAGE) docker-compose -p depharness $(COMPOSE_FILES) up -d
	docker-compose -p depharness $(COMPOSE_FILES) ps

compose-down: ## stop and remove the compose world and its volumes (same COMPOSE_FILES as compose-up)
	docker-compose -p depharness $(COMPOSE_FILES) down -v --remove-orphans

deps-docker: ## Debian packages the Docker tests need (prometheus, promtool, docker-compose)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v docker-compose >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus docker-compose >/dev/null; }
	@systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true

deps-browser: ## Debian's chromium, for the tests that look at pages in a browser (the fleet view, the report)
	@command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

test-docker: image deps-docker ## end-to-end tests with containers and a real Prometheus
	DEPHARNESS_IMAGE=$(IMAGE) $(GO) test -count=1 -timeout 20m -v ./e2e/... 2>&1 | tee reports/e2e.log | awk -f e2e/summary.awk ; exit $${PIPESTATUS[0]}

clean: ## remove build output, data and generated reports
	rm -rf bin data
	find reports -mindepth 1 ! -name README.md -exec rm -rf {} +
