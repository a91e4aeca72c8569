"""Shared fixtures: small project configs in temporary folders, small demo data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from batch_ml.config import ProjectConfig, load_config
from batch_ml.demo.simulator import spec_from_config, write_landing

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

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


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


SMALL_CONFIG = """
[data]
root = "data"

[calendar]
start_date = "{start}"
end_date = "{end}"

[forecast]
horizon = {horizon}
lookback_days = 56
training_weeks = 4
min_history_days = 70
seed = 42
num_threads = 2

[features]
known_in_advance = {known}
calendar = {calendar}
product_attributes = {products}
store_attributes = {stores}
numeric_attributes = {numeric}

[demo]
stores = {n_stores}
items = {n_items}
start_date = "{start}"
days = {days}
seed = 7
"""


def write_config(
    folder: Path,
    start: dt.date = dt.date(2025, 1, 1),
    days: int = 130,
    horizon: int = 7,
    n_stores: int = 2,
    n_items: int = 6,
    known=("price", "on_promo", "is_open"),
    calendar=("is_holiday",),
    products=("category", "base_price"),
    stores=("region", "store_size"),
    numeric=("base_price",),
) -> Path:
    def toml_list(xs):
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    path = folder / "batch_ml.toml"
    path.write_text(
        SMALL_CONFIG.format(
            start=start,
            end=start + dt.timedelta(days=days),
            horizon=horizon,
            days=days,
            n_stores=n_stores,
            n_items=n_items,
            known=toml_list(known),
            calendar=toml_list(calendar),
            products=toml_list(products),
            stores=toml_list(stores),
            # Only attributes the config lists can be numeric (`base_price` is the demo's).
            numeric=toml_list(a for a in numeric if a in (*products, *stores)),
        )
    )
    return path


@pytest.fixture
def small_project(tmp_path: Path) -> ProjectConfig:
    """A small demo project (2 stores x 6 items, 130 days) with its landing files written."""
    cfg = load_config(write_config(tmp_path))
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    return cfg
