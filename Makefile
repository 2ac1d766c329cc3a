# Every target sets up what it needs itself: a fresh machine runs `make run` or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ./data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck imports unit integration bench clean deps-system

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/fortrolig serve --data-dir $(DATA_DIR)

lint: $(STAMP)
	$(BIN)/ruff check fortrolig tests bench
	$(BIN)/ruff format --check fortrolig tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

test: lint typecheck imports
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench.sfu_bench --out docs/bench-sfu.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
