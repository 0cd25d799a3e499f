# otelfleet — the two commands on a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/otelfleet/otelfleet/pkg/platform.Version=$(VERSION)
# Every Go module of the workspace (go.work lists them).
MODULES := $(shell $(GO) work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')
SERVICES := $(notdir $(wildcard services/*))
# Modules kept out of go.work (GOWORK=off), so their heavy dependencies (the Prometheus
# module's) cannot raise the versions the services build with.
ISOLATED := deploy/monitoring/check
TEST_TIMEOUT ?= 20m
BENCHTIME ?= 1s
# Tag of the images (make images, deploy/compose reads OTELFLEET_TAG; make e2e uses its own).
TAG ?= dev
COMPOSE ?= docker-compose

.PHONY: run build test test-alerts lint bench images up nats-server e2e faults interop interop-opamp certs clean

## run: embedded NATS + every service + a simulated fleet, admin on http://127.0.0.1:8080
run: build
	./bin/otelfleet dev $(ARGS)

## build: every binary into bin/ (static, CGO off)
build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/otelfleet ./cmd/otelfleet
	@for s in $(SERVICES); do \
	  echo "CGO_ENABLED=0 $(GO) build -o bin/otelfleet-$$s ./services/$$s/cmd/otelfleet-$$s"; \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/otelfleet-$$s ./services/$$s/cmd/otelfleet-$$s || exit 1; \
	done

## test: every module, with the race detector, and the alert unit tests (test-alerts)
test: test-alerts
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(addsuffix /...,$(MODULES))
	@for m in $(ISOLATED); do echo "cd $$m && GOWORK=off $(GO) test -race ./..."; (cd $$m && GOWORK=off $(GO) test -race -timeout $(TEST_TIMEOUT) ./...) || exit 1; done

## test-alerts: promtool check rules and the alert unit tests of deploy/monitoring (promtool built once into ~/.cache/otelfleet-tools by deploy/monitoring/promtool.sh; the first build takes minutes)
test-alerts:
	@promtool=$$(bash deploy/monitoring/promtool.sh) && cd deploy/monitoring && \
	  echo "$$promtool check rules alerts.yaml" && $$promtool check rules alerts.yaml && \
	  echo "$$promtool test rules alerts_test.yaml" && $$promtool test rules alerts_test.yaml

## lint: gofmt and go vet on every module
lint:
	@out=$$(gofmt -l $(MODULES) $(ISOLATED)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(addsuffix /...,$(MODULES))
	@for m in $(ISOLATED); do (cd $$m && GOWORK=off $(GO) vet ./...) || exit 1; done

## bench: every Go benchmark (BENCHTIME=1s each; the 10k-collector and failover ones take minutes; figures and per-benchmark commands in docs/PERFORMANCE.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(addsuffix /...,$(MODULES))

## images: one FROM-scratch image per binary, plus nats-server built from its Go module
images: build nats-server
	docker build -q -f deploy/Dockerfile --build-arg BIN=nats-server -t otelfleet/nats-server:$(TAG) .
	docker build -q -f deploy/Dockerfile --build-arg BIN=otelfleet -t otelfleet/otelfleet:$(TAG) .
	@for s in $(SERVICES); do \
	  docker build -q -f deploy/Dockerfile --build-arg BIN=otelfleet-$$s -t otelfleet/$$s:$(TAG) . || exit 1; \
	done

## up: make images, then the compose stack in the background (OTLP on localhost:4317/4318; ARGS='--scale router=3' passes through)
up: images
	OTELFLEET_TAG=$(TAG) $(COMPOSE) -f deploy/compose/docker-compose.yml up -d $(ARGS)

## nats-server: bin/nats-server, built from its Go module (for images and faults)
nats-server:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/nats-server github.com/nats-io/nats-server/v2

## interop: real OpenTelemetry Collectors (built by test/interop/build.sh into ~/.cache/otelfleet-interop, reused when up to date) registered by otelfleet agent --metrics-url, as the router's backends
interop:
	OTELFLEET_INTEROP_OTELCOL=$$(bash test/interop/build.sh) && export OTELFLEET_INTEROP_OTELCOL && \
	  $(GO) test -race -tags interop -run '^TestInterop' -count=1 -timeout 10m ./cmd/otelfleet

## e2e: the docker compose stack end to end (needs Docker and docker-compose)
e2e:
	$(MAKE) images TAG=e2e
	OTELFLEET_TAG=e2e bash test/e2e/compose.sh

## interop-opamp: real collectors over OpAMP (our otelcol-opamp and the opampsupervisor, built into ~/.cache/otelfleet-interop by test/interop/build-opamp.sh) against the opamp service
OPAMP_BIN ?= $(HOME)/.cache/otelfleet-interop
interop-opamp: build
	OPAMP_BIN=$(OPAMP_BIN) bash test/interop/build-opamp.sh
	cd test/interop && OTELFLEET_INTEROP_BIN=$(OPAMP_BIN) OTELFLEET_BIN=$(CURDIR)/bin $(GO) test -count=1 -timeout 10m -v ./...

## faults: the fault scenarios (kill -9, hostile bucket values, floods) against the real binaries and a nats-server; one line per scenario (docs/RELIABILITY.md)
faults: build nats-server
	$(GO) build -o bin/otelfleet-faults ./test/faults
	./bin/otelfleet-faults --bin bin $(ARGS)

## certs: throw-away TLS certificates in .certs/ (CA, server for localhost,127.0.0.1,nats,router, client) for compose and local runs; HOSTS=... to change
certs:
	$(GO) run ./pkg/testcerts/cmd/certs --dir .certs $(if $(HOSTS),--hosts $(HOSTS))

clean:
	rm -rf bin .data .certs
