# Set-up is part of every target: `make demo` and `make test` work on a fresh clone with
# only Python 3.11, make and access to the package registry.
PYTHON ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
VENV := .venv
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export UV_PYTHON := $(PYTHON)
# Installed packages get their .pyc at install time: where PYTHONDONTWRITEBYTECODE is set (as
# here and in many container images) every process would otherwise compile dagster's
# sources again (`import dagster` 2.2-2.9 s without, 1.3 s with; every run worker pays it).
export UV_COMPILE_BYTECODE := 1
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000

.PHONY: setup demo test test-fast ui lint clean bench bench-storage

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet
	touch $@

## The environment, and DAGSTER_HOME initialized once (its storage created under a lock, so
## that commands starting at once on a fresh home cannot corrupt it).
setup: $(VENV)/.synced
	$(VENV)/bin/batch-ml init-home --dagster-yaml dagster.yaml

## Generate the demo data if absent and materialize the whole graph on the Dagster instance.
demo: setup
	$(VENV)/bin/batch-ml demo

## The full test suite: the unit, definitions and integration layers (batch_ml_tests/).
test: setup
	$(VENV)/bin/ruff check batch_ml batch_ml_tests benchmarks
	$(VENV)/bin/ruff format --check batch_ml batch_ml_tests benchmarks
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

## The unit and definitions layers only: no process is started (about 2 minutes on 2 cores).
test-fast: setup
	$(VENV)/bin/ruff check batch_ml batch_ml_tests benchmarks
	$(VENV)/bin/ruff format --check batch_ml batch_ml_tests benchmarks
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10 \
		-m "not integration"

## Dagster webserver + daemon on 127.0.0.1, on the same instance as `make demo`.
ui: setup
	$(VENV)/bin/dagster dev -w workspace.yaml -h $(UI_HOST) -p $(UI_PORT)

clean:
	rm -rf data .dagster_home

## The benchmark suite (not part of `make test`, about 65 minutes on 2 cores): daily incremental
## run vs its compute floor at 1k and 30k series, memory at 1 and 3 years of history,
## feature/training/inference throughput, storage, full-graph backfill. Writes
## benchmarks/results/bench.{json,md} and the README table. One part:
## BENCH_ARGS="--sections scale --scales 1k".
bench: $(UV)
	$(UV) sync --frozen --group bench --quiet
	$(VENV)/bin/python -m benchmarks.suite $(BENCH_ARGS)

## Benchmark the stock DuckDBPolarsIOManager against ParquetTableIOManager (bench group;
## a later `make test` re-syncs the default groups). Knobs: BENCH_ARGS="--partitions 20".
BENCH_ARGS ?=
bench-storage: $(UV)
	$(UV) sync --frozen --group bench --quiet
	$(VENV)/bin/python -m benchmarks.storage_io --out benchmarks/results/storage_io.json $(BENCH_ARGS)
