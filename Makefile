# Conveyor's front door. `make quickstart` and `make test` each set up what they need from scratch.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export CONVEYOR_HOME ?= $(CURDIR)/.conveyor
# Bytecode caches as an installed package has them: where PYTHONDONTWRITEBYTECODE is set (some shells and CI
# images set it), each `conveyor` process the quickstart or the tests start would recompile Conveyor's modules.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help install dev quickstart test test-fast test-long fuzz chaos lint format bench docs migration lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Conveyor needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	@echo "==> Creating $(VENV) (Python: $$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	@echo "==> Installing Conveyor and its dependencies into $(VENV) (about a minute the first time; pinned in constraints.txt)"
	$(PIP) install --progress-bar on -c constraints.txt -e . | grep -E --line-buffered '^(Collecting|Successfully|ERROR)' | sed -u 's/^/    /'; test $${PIPESTATUS[0]} -eq 0
	@echo "==> Installed: $$($(BIN)/conveyor --version)"
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "==> Installing the development tools (tests, lint, S3 and PostgreSQL drivers)"
	$(PIP) install --progress-bar on -c constraints.txt -e '.[dev]' | grep -E --line-buffered '^(Collecting|Successfully|ERROR)' | sed -u 's/^/    /'; test $${PIPESTATUS[0]} -eq 0
	@touch $@

install: $(VENV)/.installed  ## create .venv and install Conveyor

dev: $(VENV)/.installed-dev  ## create .venv with the dev extra (tests, lint, S3 and PostgreSQL drivers)

quickstart: install  ## run the whole lifecycle on sample data and keep serving until Ctrl+C
	$(BIN)/conveyor quickstart

test: dev  ## run the whole test suite (short fault and fuzzing passes; make test-long for the long ones)
	$(BIN)/python -m pytest -m "not long" $(PYTEST_ARGS)

test-fast: dev  ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow and not long" $(PYTEST_ARGS)

test-long: dev fuzz chaos  ## the long variants make test leaves out: long end-to-end runs, fuzzing and fault injection
	$(BIN)/python -m pytest -q -m long $(PYTEST_ARGS)

fuzz: dev  ## a longer fuzzing pass of the REST API from its OpenAPI document (schemathesis)
	CONVEYOR_FUZZ_EXAMPLES=$${CONVEYOR_FUZZ_EXAMPLES:-200} $(BIN)/python -m pytest -q tests/api/test_fuzz.py tests/serve/test_fuzz.py

chaos: dev  ## the long fault-injection runs: processes SIGKILLed at random moments (tests/faults)
	CONVEYOR_CHAOS_LONG=1 $(BIN)/python -m pytest -q -s -m chaos tests/faults $(PYTEST_ARGS)

lint: dev  ## ruff (lint and format check) and mypy --strict on src
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy

format: dev  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format src tests benchmarks tools
	$(BIN)/ruff check --fix src tests benchmarks tools

bench: dev  ## side-by-side benchmarks against the peers; writes docs/benchmarks.md
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

docs: dev  ## regenerate docs/cli.md from the command line's own help
	$(BIN)/typer conveyor.cli._app utils docs --name conveyor --title "Command-line reference" --output docs/cli.md

migration: dev  ## write a new schema migration: make migration m="add monitors"
	$(BIN)/python tools/new_migration.py "$(m)"

lock: dev  ## re-pin constraints.txt to what is installed in .venv
	$(PIP) freeze --exclude-editable | grep -v '^conveyor-ml' > constraints.txt

clean:  ## remove environments, caches and the repo-local workspace
	rm -rf $(VENV) .venv-bench .pytest_cache .mypy_cache .ruff_cache .hypothesis .conveyor benchmarks/.work
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
