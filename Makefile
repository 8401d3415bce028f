# dcr-gateway: development entry points. No Docker needed: providers run as local processes on 127.0.0.1.
#
#   make venv        .venv with the project and its dev tools (reinstalled when pyproject.toml changes)
#   make providers   build/fetch Hydra and Keycloak into the cache (~/.cache/dcr-gateway), once per version
#   make test        venv + providers, then the whole test suite (it starts its own providers on free ports)
#   make lint        ruff + mypy --strict
#   make stack-up    Hydra :4444/:4445, dev login app :8090, Keycloak :8180, gateways :8080 (Hydra) and :8081
#                    (Keycloak); idempotent; logs and pids in .stack/
#   make stack-down  stop the stack
#   make stack-status
#   make run         Hydra + dev login app + a gateway on http://127.0.0.1:8080 in the foreground (Ctrl-C stops)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv providers test lint stack-up stack-down stack-status run

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

providers:
	@deploy/providers/hydra.sh ensure
	@deploy/providers/keycloak.sh ensure

test: venv providers
	$(VENV)/bin/pytest -q -ra --durations=10 $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

stack-up: venv providers
	@$(VPY) -m gateway.devstack.stack up

stack-down:
	@if [ -x $(VPY) ]; then $(VPY) -m gateway.devstack.stack down; else echo "no $(VENV): nothing to stop"; fi

stack-status: venv
	@$(VPY) -m gateway.devstack.stack status

run: venv providers
	@$(VPY) -m gateway.devstack.stack run
