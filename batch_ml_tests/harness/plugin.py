"""The test suite's pytest plugin (`-p batch_ml_tests.harness.plugin` in pyproject.toml's
addopts): the order of the longest files and the shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_ml.config import ProjectConfig

from .project import demo_project

# The longest test files, longest first: `make test` runs two pytest-xdist workers with
# --dist loadfile and no reordering, so these start at once on both workers and the short
# files fill in behind them (about 4 minutes each, mostly waiting for daemon ticks).
LONGEST_FIRST = (
    "test_automation_daemon.py",
    "test_orchestration_daemon.py",
    "test_run_monitoring.py",
    "test_storage_faults.py",
    "test_ingest_commit.py",
    "test_cli_demo.py",
    "test_bench_suite.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


@pytest.fixture
def small_project(tmp_path: Path) -> ProjectConfig:
    """A small demo project (2 stores x 6 items, 130 days) with its landing files written."""
    return demo_project(tmp_path)
