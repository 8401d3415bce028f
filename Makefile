# dcr-gateway: development entry points. No Docker needed: providers run as local processes on 127.0.0.1.
#
#   make venv        .venv with the project, its dev tools and the example adapter (reinstalled when a pyproject.toml changes)
#   make providers   build/fetch Hydra and Keycloak into the cache (~/.cache/dcr-gateway), once per version
#   make system-deps nginx, redis and postgresql from Debian's packages (path-routing test, shared rate limiter, the
#                    providers' PostgreSQL cells); as root, else a message
#   make node-deps   npm ci of the TypeScript SDK client of the end-to-end test (tests/integration/mcp_e2e/ts); needs Node 20+
#   make chart-tools helm, helm-unittest and the Pod Security checker for the Helm chart, built from the Go module proxy
#                    into the cache (~/.cache/dcr-gateway), once per version (deploy/helm/tools.sh); `make test` needs them
#   make chart-check the Helm chart's checks alone: lint, render, Kubernetes schemas, Pod Security, unit tests
#                    (deploy/helm/check.sh; tests/deploy/test_helm_chart.py runs the same checks in `make test`)
#   make test        venv + providers + system-deps + node-deps, then the whole test suite (it starts its own providers)
#   make image       the image localhost/dcr-gateway:<version> (Docker if an engine answers, else podman on a Debian
#                    base bootstrapped locally and cached; deploy/image/build.sh); as root it installs podman first
#   make bench       registration latency (gateway vs admin API, real providers), the proxy floor (gateway vs a bare
#                    aiohttp pass-through vs admin API), discovery req/s, then make bench-throughput; make bench-scale
#                    apart (minutes to an hour with BENCH_SCALE_ARGS='--clients 100000'); bench/README.md has the table
#   make bench-throughput  registration/s at concurrency 1/8/32/64 and the front door (token, authorize, JWKS),
#                    gateway vs provider, both providers; JSON + PNG in bench/results/ (BENCH_THROUGHPUT_ARGS=--profile)
#   make lint        ruff check + ruff format --check + mypy --strict (the package and the example adapter) + lint-imports
#                    (the layers in pyproject.toml) + hadolint (Dockerfile)
#   make stack-up    Hydra :4444/:4445, dev login app :8090, Keycloak :8180, gateways :8080 (Hydra) and :8081
#                    (Keycloak), CIMD documents https://localhost:8443 (.stack/cimd/docs); idempotent; logs and pids
#                    in .stack/
#   make stack-down  stop the stack
#   make stack-status
#   make bench-scale registration p50, clients list/gc and the quota recount with N clients per provider (bench/scale.py)
#   make run         Hydra + dev login app + a gateway on http://127.0.0.1:8080 in the foreground (Ctrl-C stops)
#   make matrix      the adapter contract and conformance suites against every supported provider version and on
#                    PostgreSQL (devstack/matrix.py; versions.env KEYCLOAK_MATRIX, HYDRA_MATRIX); prints the table of the
#                    README's "Supported providers" and writes build/matrix/matrix.json (MATRIX_ARGS=--ends: the oldest
#                    and newest of each provider, what .ci/run runs; --cells NAME,...: some)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv providers system-deps node-deps test lint bench bench-throughput stack-up stack-down stack-status run
.PHONY: image image-deps

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

# The worked example of an external adapter (examples/sqlite-adapter) is installed next to the project, as a third
# party's package would be: through its dcr_gateway.adapters entry point; `make test` runs its contract suite.
EXAMPLE_ADAPTER := examples/sqlite-adapter

$(STAMP): pyproject.toml $(EXAMPLE_ADAPTER)/pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[dev,tracing]' -e $(EXAMPLE_ADAPTER)
	@touch $(STAMP)

providers:
	@deploy/providers/hydra.sh ensure
	@deploy/providers/keycloak.sh ensure

# nginx runs only as a foreground test process (own prefix, pid and log files): never as a system service.
# (/usr/sbin is not on every user's PATH; on a host with a service manager the package may start its own
# nginx on :80, which the tests do not use.)
system-deps:
	@missing=""; \
	{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || missing="$$missing nginx-light"; \
	{ command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; } || missing="$$missing redis-server"; \
	{ compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; } || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "system-deps: missing$$missing and this is not root on Debian/Ubuntu: skipping (as root: apt-get install -y$$missing); the tests that need them will be skipped"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# Pinned by package-lock.json; reinstalled when it changes (npm's own cache keeps the tarballs). Without npm the
# TypeScript SDK test skips with that reason.
NODE_E2E := tests/integration/mcp_e2e/ts
NODE_STAMP := $(NODE_E2E)/node_modules/.installed

node-deps: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_E2E)/package.json $(NODE_E2E)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_E2E) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "node-deps: npm not found: the TypeScript SDK end-to-end test will be skipped"; \
	fi

# The Helm chart's validation tools (deploy/helm/tools.sh): helm, helm-unittest, psacheck.
.PHONY: chart-tools chart-check
chart-tools:
	@deploy/helm/tools.sh ensure >/dev/null

chart-check: venv chart-tools
	@PYTHON=$(VPY) deploy/helm/check.sh

# tests/deploy/test_helm_chart.py runs the chart's checks with these tools.
test: chart-tools

test: venv providers system-deps node-deps
	$(VENV)/bin/pytest -q -ra --durations=10 $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy --strict $(EXAMPLE_ADAPTER)/dcr_gateway_sqlite
	$(VENV)/bin/hadolint Dockerfile

# The image (tests/integration/test_image.py runs it). Without a Docker engine: podman, buildah and debootstrap from
# Debian's packages (installed as root by image-deps), a Debian base bootstrapped once into the cache.
image-deps:
	@deploy/image/build.sh deps

image:
	@deploy/image/build.sh build

BENCH_REGISTRATION_ARGS ?= --requests 200 --concurrency 8
BENCH_DISCOVERY_ARGS ?=
BENCH_THROUGHPUT_ARGS ?=
BENCH_FLOOR_ARGS ?=

bench: venv providers
	PYTHONPATH=. $(VPY) bench/registration_latency.py $(BENCH_REGISTRATION_ARGS)
	PYTHONPATH=. $(VPY) bench/registration_floor.py $(BENCH_FLOOR_ARGS)
	PYTHONPATH=. $(VPY) bench/discovery_rps.py $(BENCH_DISCOVERY_ARGS)
	$(MAKE) bench-throughput

# Registration throughput at concurrency 1/8/32/64 and the front door (token, authorize redirect, JWKS), both
# providers; JSON and PNG into bench/results/ (matplotlib and py-spy: the bench extra).
bench-throughput: venv providers
	@$(VPY) -c 'import matplotlib' 2>/dev/null && [ -x $(VENV)/bin/py-spy ] || \
		$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	PYTHONPATH=. $(VPY) bench/throughput.py $(BENCH_THROUGHPUT_ARGS)

stack-up: venv providers
	@$(VPY) -m devstack.stack up

stack-down:
	@if [ -x $(VPY) ]; then $(VPY) -m devstack.stack down; else echo "no $(VENV): nothing to stop"; fi

stack-status: venv
	@$(VPY) -m devstack.stack status

run: venv providers
	@$(VPY) -m devstack.stack run

# make bench-scale: N managed + N unmanaged clients per provider (bench/scale.py; the issue's targets are
# --clients 10000 and 100000; BENCH_SCALE_ARGS overrides the small default)
BENCH_SCALE_ARGS ?= --clients 500
.PHONY: bench-scale
bench-scale: venv providers
	PYTHONPATH=. $(VPY) bench/scale.py $(BENCH_SCALE_ARGS)

# make matrix: one pytest session per cell (provider x version x database); each cell fetches or builds its provider
# into the cache once (deploy/providers/*.sh keyed by version). The PostgreSQL cells need `make system-deps`.
MATRIX_ARGS ?=
.PHONY: matrix
matrix: venv system-deps
	$(VPY) -m devstack.matrix $(MATRIX_ARGS)
