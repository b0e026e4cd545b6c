# Huiyuan — `make help` lists the targets. Everything installs from the project's own files:
# a pinned uv in .tools/, then the locked dependencies in .venv/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

install: .venv/.synced ## install the locked dependencies into .venv

demo: .venv/.synced ## build the demo (SQLite) and serve the API and console on :8000
	.venv/bin/huiyuan demo

serve: .venv/.synced ## serve the API on the configured database (HUIYUAN_DATABASE_URL)
	.venv/bin/huiyuan serve

test: .venv/.synced ## run every test (lint, types, unit, integration on SQLite and PostgreSQL)
	.venv/bin/pytest -n 2 --dist loadgroup

lint: .venv/.synced ## ruff lint and format check, import contracts
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/lint-imports

format: .venv/.synced ## format the code
	.venv/bin/ruff format src tests bench
	.venv/bin/ruff check --fix src tests bench

typecheck: .venv/.synced ## mypy (strict on domain and services)
	.venv/bin/mypy

bench: .venv/.synced ## run the benchmarks (needs PostgreSQL)
	.venv/bin/python -m bench

lock: $(UV) ## re-resolve uv.lock after changing pyproject.toml
	$(UV) lock

clean: ## remove the environments and caches (keeps var/)
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache

.PHONY: help install demo serve test lint format typecheck bench lock clean
