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

.PHONY: help tools clients-tools run test test-fast test-services test-soak test-faults fuzz test-clients gen fmt lint bench

help:
	@echo "make run    - run the server: embedded in-memory store, development profile (hour-long leases), gRPC on 127.0.0.1:50051; ARGS=... for flags"
	@echo "make test   - everything CI runs: test-fast, the benches as tests, test-services, test-soak, the client tests"
	@echo "make test-fast     - cargo test: unit tests and the conformance suite on the embedded store; no services"
	@echo "make test-services - the production store's tests, the conformance suite on Redis and on a Redis Cluster"
	@echo "make test-soak     - soak and fault tests (own Redis instances), one at a time"
	@echo "make test-faults   - the seeded fault scenario over 20 seeds, with a summary table"
	@echo "make fuzz          - the long fuzzing run: FUZZ_CASES (5000) cases per property and RPC, embedded store then Redis; release build"
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
	$(CARGO) run -- serve --dev $(ARGS)

# The client tests run against the real server binary: Python (pytest, incl. the README grpcurl
# walk-through run verbatim) and Go (GOPATH mode with Debian's packages). They first check that the
# committed generated code is what `make gen` would write.
define client-tests
$(CARGO) build
bash clients/gen.sh --check
$(CLIENT_PYTHON) -m pytest clients/python/tests
$(GO_ENV) && cd $(GO_CLIENT_DIR) && unformatted="$$(gofmt -l .)" && { [[ -z "$$unformatted" ]] || { echo "gofmt -w needed: $$unformatted" >&2; exit 1; }; } && go vet ./... && go test -race -count=1 ./...
endef

# The test pyramid. `make test-fast`: plain `cargo test`, no services (unit tests, the conformance
# suite on the embedded store, the learned scorer, the server's layers). `make test-services`: the
# production store's tests (tests/production) on the shared Redis and Postgres, then the
# conformance suite (tests/conformance) again on the Redis store and on a private three-node Redis
# Cluster (scripts/with-cluster.sh), where each type is one slot and Redis refuses any script
# touching a key outside it. `make test-soak`: long and fault-injecting runs (tests/soak), one at a
# time. `make test` runs them all, the benches once as tests, and the client tests.
test: tools clients-tools
	$(CARGO) test --all-targets
	$(MAKE) --no-print-directory test-services
	$(MAKE) --no-print-directory test-soak
	$(client-tests)

test-fast: tools
	$(CARGO) test

test-services:
	$(CARGO) test --test production
	SWITCHBOARD_TEST_STORE=redis $(CARGO) test --test conformance
	SWITCHBOARD_TEST_STORE=redis scripts/with-cluster.sh $(CARGO) test --test conformance

test-soak: clients-tools
	$(CARGO) test --test soak -- --test-threads=1

# The seeded fault scenario over 20 seeds (make test runs one), with a summary table.
test-faults:
	bash scripts/test-faults.sh

# The long fuzzing run of tests/fuzz.rs (`cargo test` runs 64 cases per property and RPC): random
# bytes, structured garbage and gRPC framing into every RPC, on the embedded store, then on the
# shared Redis. Release build. The two known findings run with `-- --ignored`.
FUZZ_CASES ?= 5000
fuzz:
	SWITCHBOARD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release --test fuzz
	SWITCHBOARD_FUZZ_CASES=$(FUZZ_CASES) SWITCHBOARD_TEST_STORE=redis $(CARGO) test --release --test fuzz

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
	$(CARGO) clippy --test production --test soak -- -D warnings
	buf lint

# Micro-benchmarks (criterion, release build). The load generator is `switchboard bench`.
bench:
	$(CARGO) bench --bench scoring --bench embedded_store --bench redis_scripts --bench proto --bench scorer
