# Switchboard developer entry points. CI runs `bash .ci/run`, which calls `make lint` and `make test`.
# Non-Rust tools (grpcurl, buf) live in .tools/ (see scripts/install-tools.sh); every recipe sees
# them first on PATH, so nothing needs to be installed system-wide. The clients' tools (Go from
# Debian's packages, a Python venv with grpcio-tools, protoc-gen-go) come from
# scripts/install-clients.sh, also into .tools/ (apart from the Debian packages).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c

TOOLS_DIR := $(CURDIR)/.tools
export PATH := $(TOOLS_DIR)/venv/bin:$(TOOLS_DIR)/node_modules/.bin:$(PATH)

CARGO ?= cargo
# Extra flags for the server, e.g. `make run ARGS='--listen 0.0.0.0:50051'`.
ARGS ?=

# Client tests start this server binary (built by `cargo build`).
export SWITCHBOARD_BIN ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug/switchboard
CLIENT_PYTHON := $(TOOLS_DIR)/pyvenv/bin/python
# clients/go as seen at its import path inside the GOPATH that install-clients.sh sets up.
GO_CLIENT_DIR := $(TOOLS_DIR)/go/path/src/github.com/switchboard-dev/switchboard/clients/go
GO_ENV = source <(bash scripts/install-clients.sh --print-go-env)

.PHONY: help tools clients-tools run test test-clients gen fmt lint bench

help:
	@echo "make run    - run the server (embedded in-memory store, gRPC on 127.0.0.1:50051; ARGS=... for flags)"
	@echo "make test   - install tools, cargo test --all-targets, the conformance tests again on Redis and on a Redis Cluster, the client tests"
	@echo "make test-clients - generated code up to date?, Python client pytest, Go client go vet + go test"
	@echo "make gen    - regenerate stubs: Rust (build.rs), Python and Go clients (clients/gen.sh)"
	@echo "make fmt    - cargo fmt"
	@echo "make lint   - cargo fmt --check, clippy -D warnings, buf lint"
	@echo "make bench  - criterion micro-benchmarks (scoring, embedded store cycle, proto, learned scorer); release build"

tools:
	bash scripts/install-tools.sh

clients-tools:
	bash scripts/install-clients.sh

run:
	$(CARGO) run -- serve $(ARGS)

# The client tests run against the real server binary: Python (pytest, incl. the README grpcurl
# walk-through run verbatim) and Go (GOPATH mode with Debian's packages). They first check that the
# committed generated code is what `make gen` would write.
define client-tests
$(CARGO) build
bash clients/gen.sh --check
$(CLIENT_PYTHON) -m pytest clients/python/tests
$(GO_ENV) && cd $(GO_CLIENT_DIR) && unformatted="$$(gofmt -l .)" && { [[ -z "$$unformatted" ]] || { echo "gofmt -w needed: $$unformatted" >&2; exit 1; }; } && go vet ./... && go test -race -count=1 ./...
endef

# The API test files are the conformance suite: they run once on the embedded store (with everything
# else), again on the Redis store (the shared Redis on 127.0.0.1:6379, a namespace per test), and a
# third time on a private three-node Redis Cluster (scripts/with-cluster.sh), where each type is one
# slot and Redis refuses any script touching a key outside it.
CONFORMANCE := registration scoring queue dependencies fencing watch validation server concurrency

test: tools clients-tools
	$(CARGO) test --all-targets
	SWITCHBOARD_TEST_STORE=redis $(CARGO) test $(foreach name,$(CONFORMANCE),--test $(name))
	SWITCHBOARD_TEST_STORE=redis scripts/with-cluster.sh $(CARGO) test $(foreach name,$(CONFORMANCE),--test $(name))
	$(client-tests)

test-clients: tools clients-tools
	$(client-tests)

# build.rs compiles proto/ into the Rust stubs (and the reflection descriptor set) on every build;
# clients/gen.sh writes the Python (grpcio-tools, with .pyi) and Go (protoc-gen-go, -go-grpc) stubs.
gen: clients-tools
	$(CARGO) build
	bash clients/gen.sh

fmt:
	$(CARGO) fmt

lint: tools
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	buf lint

# Micro-benchmarks (criterion, release build). The load generator is `switchboard bench`.
bench:
	$(CARGO) bench --bench scoring --bench embedded_store --bench redis_scripts --bench proto --bench scorer
