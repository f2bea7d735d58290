# Twin Bridge. From a fresh clone with python3 (>= 3.11), node/npm and make: `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
SLITHER_VENV := .venv-slither
SLITHER_STAMP := $(SLITHER_VENV)/.installed
SLITHER_VERSION := 0.11.6
NODE_STAMP := node_modules/.installed
LOCK_VENV := .venv-lock

.PHONY: help venv node_modules browser compile test fuzz lint bench-gas bench-audit bench-ingest bench-settle bench soak run rehearse-testnet lock clean distclean

help: ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV_STAMP) ## Python venv with the bridge and its dev tools (pinned by requirements.lock)

$(VENV_STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

node_modules: $(NODE_STAMP) ## npm packages: solc (wasm), OpenZeppelin, anvil (pinned by package-lock.json)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The dashboard's end-to-end tests drive Debian's chromium (never a browser Playwright downloads).
browser: ## Debian's chromium for the dashboard's browser tests (apt-get, when /usr/bin/chromium is missing)
	test -x /usr/bin/chromium || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q </dev/null; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium </dev/null; }

compile: venv node_modules ## compile contracts/ into build/artifacts/ (skipped when unchanged)
	$(VENV)/bin/twin-bridge compile

test: venv node_modules browser compile ## the whole test suite (fuzz runs excluded)
	$(VENV)/bin/pytest -q -n 2

fuzz: venv node_modules compile ## long property-based runs
	TWIN_BRIDGE_HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/pytest -q -m fuzz

lint: venv compile $(SLITHER_STAMP) ## ruff, mypy --strict and slither (fails on medium or higher)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy bridge
	$(SLITHER_VENV)/bin/slither build/artifacts/standard-input.json \
		--compile-force-framework solc-json --solc scripts/solc --config-file slither.config.json

# slither-analyzer needs web3 < 8, so it lives in a venv of its own.
$(SLITHER_STAMP): requirements-slither.lock
	test -x $(SLITHER_VENV)/bin/python || $(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/python -m pip install -q -r requirements-slither.lock
	touch $@

bench-gas: venv node_modules compile ## gas per settled usage (scripts/bench_gas.py)
	$(VENV)/bin/python -m scripts.bench_gas

bench-audit: venv node_modules compile ## audit rebuild speed over 100,000 settled usages (scripts/bench_audit.py)
	$(VENV)/bin/python -m scripts.bench_audit

bench-ingest: venv node_modules compile ## API ingest rate and latency, SQLite and PostgreSQL (scripts/bench_ingest.py)
	$(VENV)/bin/python -m scripts.bench_ingest

bench-settle: venv node_modules compile ## accepted-to-settled latency and settlement rate (scripts/bench_settle.py)
	$(VENV)/bin/python -m scripts.bench_settle

bench: bench-gas bench-audit bench-ingest bench-settle ## all benchmarks

soak: venv node_modules compile ## 10 minutes of mixed load with a fault a minute, then the audit (scripts/soak.py)
	$(VENV)/bin/python -m scripts.soak $(SOAK_ARGS)

run: venv node_modules compile ## the whole system locally: anvil, contracts, demo, API, worker, indexer
	$(VENV)/bin/twin-bridge dev $(DEV_ARGS)

rehearse-testnet: venv node_modules compile ## Sepolia dress rehearsal on anvil (chain 11155111, 12 s blocks)
	$(VENV)/bin/python -m scripts.rehearse_testnet $(REHEARSE_ARGS)

lock: ## re-resolve requirements.lock and requirements-slither.lock in throwaway venvs
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[dev]'
	{ echo "# pip freeze of a fresh install of '.[dev]'; regenerate with: make lock"; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > requirements.lock
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q slither-analyzer==$(SLITHER_VERSION)
	{ echo "# pip freeze of slither-analyzer==$(SLITHER_VERSION); regenerate with: make lock"; \
	  $(LOCK_VENV)/bin/python -m pip freeze; } > requirements-slither.lock
	rm -rf $(LOCK_VENV)

clean: ## remove build outputs and tool caches
	rm -rf build crytic-export .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find bridge tests scripts -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove the venvs, node_modules and local chain state
	rm -rf $(VENV) $(SLITHER_VENV) $(LOCK_VENV) node_modules .twin-bridge *.egg-info
