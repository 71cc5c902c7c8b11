# hubspoke: one command for everything a contributor needs. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format typecheck check bench bench-quick bench-scale chaos chaos-long e2e-real clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv if missing and install hubspoke with its dev tools

demo: $(STAMP) ## Run the sales pipeline offline (live view on a terminal)
	$(BIN)/hubspoke demo sales --latency 150 --db $${HUBSPOKE_DB:-demo.db}

test: $(STAMP) ## Run all tests
	$(BIN)/python -m pytest -q

format: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

lint: $(STAMP) ## Check formatting and lint
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: $(STAMP) ## Strict type checking of source and tests
	$(BIN)/mypy

check: lint typecheck test ## Format check, lint, types and tests

bench: $(STAMP) ## Benchmarks (full form) — prints a table, writes benchmarks/results/latest.json
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP) ## Benchmarks, quick form (under two minutes)
	$(BIN)/python benchmarks/run.py --quick

bench-scale: $(STAMP) ## Wall time vs N, 1,000 to 100,000 items (~10 min): docs/images/scale.png
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

chaos: $(STAMP) ## Crash-and-resume harness, CI form (20+ SIGKILLs)
	$(BIN)/python -m pytest -q tests/chaos

chaos-long: $(STAMP) ## Crash-and-resume harness, long form (200 SIGKILLs, then 20 on a shared run on Postgres)
	$(BIN)/python -m tests.chaos --kills 200 --items 600 --seed 1
	$(BIN)/python -m tests.chaos --shared both --postgres --kills 20 --items 800 --seed 1

e2e-real: $(STAMP) ## Against a real model: build llama.cpp's server (~7 min once), run README + demo (~3 min)
	$(BIN)/python scripts/e2e_real.py $(E2E_ARGS)

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist src/*.egg-info
