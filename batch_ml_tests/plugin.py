"""The test suite's pytest plugin (`-p batch_ml_tests.plugin` in pyproject.toml's
addopts): the test layers with a timeout each, the order of the longest files, and the shared
fixtures.

Layers, one per test, by marker (a test marked `integration` is in that layer even in a file
marked `definitions`; a test with neither marker is a `unit` test and gets that marker here):
- unit: functions on real files, DuckDB and Dagster instances, in the test's own process;
- definitions: the project's code location (its Definitions) loaded and run in-process;
- integration: real processes (the CLI, webserver, daemon, forkserver workers, Chromium).
`make test-fast` runs `-m "not integration"`; `make test` runs all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_ml.config import ProjectConfig
from batch_ml.harness.project import demo_project

LAYERS = {
    "unit": "no process started, no code location loaded (the default)",
    "definitions": "loads the project's Definitions and runs them in-process",
    "integration": "starts real processes (CLI, dagster webserver and daemon, workers, browser)",
}
# Per-test timeouts (set-up, call and teardown) by layer: about 5x the longest test of the
# layer on an idle machine (`--durations`, 2 workers: unit 3.5 s, but a minute at least as a
# first Dagster import alone takes seconds under load; definitions 26-52 s, the whole graph
# run twice; integration about 190 s, the daemon scenarios), so that they hold on a loaded
# machine. `--timeout N` or PYTEST_TIMEOUT replaces them all; `@pytest.mark.timeout(N)` one.
LAYER_TIMEOUT_S = {"unit": 60, "definitions": 300, "integration": 1000}

# The longest test files, longest first: `make test` and `make test-fast` run two
# pytest-xdist workers with --dist loadfile and no reordering, so these start at once on both
# workers and the short files fill in behind them (the integration files about 4 minutes
# each, mostly waiting for daemon ticks; then the longest of the definitions layer).
LONGEST_FIRST = (
    "test_automation_daemon.py",
    "test_orchestration_daemon.py",
    "test_run_monitoring.py",
    "test_storage_faults.py",
    "test_ingest_commit.py",
    "test_cli_demo.py",
    "test_bench_suite.py",
    "test_graph.py",
    "test_champion_lifecycle.py",
)


def pytest_configure(config: pytest.Config) -> None:
    for layer, what in LAYERS.items():
        config.addinivalue_line("markers", f"{layer}: {what}")


def layer_of(item: pytest.Item) -> str:
    marked = {m.name for m in item.iter_markers()}
    return next((layer for layer in ("integration", "definitions") if layer in marked), "unit")


def _timeout_given(config: pytest.Config) -> bool:
    return config.getoption("timeout", None) is not None or "PYTEST_TIMEOUT" in os.environ


# First, so that `-m unit` and the timeouts see the layer markers added here.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    by_layer = not _timeout_given(config)
    for item in items:
        layer = layer_of(item)
        if layer == "unit":
            item.add_marker(pytest.mark.unit)
        if by_layer and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LAYER_TIMEOUT_S[layer]))

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


@pytest.fixture
def small_project(tmp_path: Path) -> ProjectConfig:
    """A small demo project (2 stores x 6 items, 130 days) with its landing files written."""
    return demo_project(tmp_path)
