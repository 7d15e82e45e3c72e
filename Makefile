# sluice — see README.md. Every target that needs servers runs
# scripts/services.sh first, which installs, configures and starts them.
GO      ?= go
BIN     := bin/sluice
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build services demo test unit bench release vet clean

build:
	$(GO) build -o $(BIN) ./cmd/sluice

services:
	bash scripts/services.sh

demo: build services
	bash scripts/demo.sh

# The whole suite: unit tests and the integration tests against real
# PostgreSQL, MariaDB and NATS.
# The race detector runs in the tests and in the sluice binary they start
# (SLUICE_TEST_RACE): a data race fails the suite.
test: services
	@unformatted=$$("$$($(GO) env GOROOT)/bin/gofmt" -l .) || exit 1; if [ -n "$$unformatted" ]; then echo "not gofmt-formatted (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	SLUICE_TEST_RACE=1 $(GO) test -race -count=1 -timeout 60m ./...

unit:
	$(GO) test -count=1 -short ./...

# Benchmarks: copy vs. an offline dump-and-load, live sync under pgbench, events.
# Each script writes its own section of docs/BENCHMARKS.md.
bench: build services
	bash scripts/bench.sh
	bash scripts/bench-sync.sh
	if [ -f scripts/bench-events.sh ]; then bash scripts/bench-events.sh; fi

release:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o dist/sluice ./cmd/sluice
	./dist/sluice version

vet:
	gofmt -l . | (! grep .) && $(GO) vet ./...

clean:
	rm -rf bin dist

# The events story (docs/EVENTS.md): a likes service V1 on PostgreSQL emits events to
# NATS JetStream; sluice backfills and applies them into a V2 schema on MariaDB.
.PHONY: demo-events
demo-events: build services
	bash scripts/demo-events.sh
