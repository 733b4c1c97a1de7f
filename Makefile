# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start Hookgate on SQLite with the example flows and print their URLs.
demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/hookgate serve --config examples/flows.yaml --data-dir ./hookgate-data

## Lint, type-check, check the import layers, run the whole test suite.
test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

## Every benchmark scenario (under 10 minutes), then BENCHMARKS.md's results section rewritten.
## Needs wrk and nginx (the harness prints the apt-get command when one is missing) and, for
## the postgres scenario, PostgreSQL on 127.0.0.1:5432 (or BENCH_POSTGRES_URL).
bench: $(STAMP)
	$(BIN)/python -m bench --summary

## The whole set in short runs (under 2 minutes); results saved, BENCHMARKS.md left as it is.
bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) hookgate-data .pytest_cache .mypy_cache .ruff_cache
