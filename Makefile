# Two commands on a fresh machine: `make demo` and `make test`.
# `make demo` installs only what Hookgate needs to run; `make test` adds the dev extras.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extra `hookgate serve` options for the demo, e.g. other ports:
#   make demo DEMO_ARGS="--listen 127.0.0.1:9080 --admin-listen 127.0.0.1:9081"
DEMO_ARGS ?=

.PHONY: demo test lint unit bench bench-quick clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Hookgate needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1). Use make PYTHON=python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The package and its runtime dependencies only.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Everything the tests, linters and benchmarks use.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

## Start Hookgate on SQLite with the example flows and print their URLs.
demo: $(VENV)/.installed-run
	$(BIN)/hookgate serve --config examples/flows.yaml --data-dir ./hookgate-data $(DEMO_ARGS)

## Lint, type-check, check the import layers, run the whole test suite.
test: lint unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The tests mostly wait on subprocesses and sockets, so they run in parallel (pytest-xdist,
# work stealing for the few long ones): 3 workers suit 2 cores. 4 were faster (4 min 40 s
# against 5 min 10 s to 5 min 50 s) but loaded the machine enough for the adaptive limit's
# end-to-end convergence test to miss its window (it did in the one clean-clone CI run tried). `make unit TEST_WORKERS=0` runs them in one process;
# `TEST_WORKERS=auto` takes one per core (or PYTEST_XDIST_AUTO_NUM_WORKERS).
TEST_WORKERS ?= 3

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal

## Every benchmark scenario (under 10 minutes), then BENCHMARKS.md's results section rewritten.
## Needs wrk and nginx (the harness prints the apt-get command when one is missing) and, for
## the postgres scenario, PostgreSQL on 127.0.0.1:5432 (or BENCH_POSTGRES_URL).
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench --summary

## The whole set in short runs (under 2 minutes); results saved, BENCHMARKS.md left as it is.
bench-quick: $(VENV)/.installed-dev
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) hookgate-data .pytest_cache .mypy_cache .ruff_cache
