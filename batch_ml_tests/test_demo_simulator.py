"""The demo retailer simulator: deterministic, and with patterns a model can learn."""

import hashlib
from pathlib import Path

import polars as pl

from batch_ml.products.forecasting.demo import SimulationSpec, simulate, write_landing


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_writes_byte_identical_files_and_another_seed_does_not(tmp_path):
    spec = SimulationSpec(stores=2, items=5, days=30, seed=11, horizon=7)
    write_landing(spec, tmp_path / "a")
    write_landing(spec, tmp_path / "b")
    write_landing(SimulationSpec(stores=2, items=5, days=30, seed=12, horizon=7), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert len(list((tmp_path / "a" / "sales").glob("sales_*.csv"))) == 30
    assert len(list((tmp_path / "a" / "plans").glob("plans_*.parquet"))) == 30


def test_demand_has_weekly_season_promo_uplift_closed_days_and_slow_movers():
    frames = simulate(SimulationSpec(stores=4, items=30, days=365, seed=5))
    sales = frames["sales"].with_columns(dow=pl.col("date").dt.weekday())
    by_dow = sales.group_by("dow").agg(pl.col("units").mean()).sort("dow")["units"]
    assert by_dow.max() / by_dow.min() > 1.2  # weekly seasonality
    promo = sales.group_by("on_promo").agg(pl.col("units").mean()).sort("on_promo")["units"]
    assert promo[1] > 1.3 * promo[0]  # promotion uplift
    days = sales["date"].unique()
    assert len(days) < 365  # Jan 1 and Dec 25: all stores closed, no sales rows
    zero_share = sales.group_by("item_id").agg((pl.col("units") == 0).mean().alias("z"))
    assert zero_share["z"].max() > 0.3  # intermittent slow movers
    first_sale = sales.group_by("item_id").agg(pl.col("date").min())["date"]
    assert first_sale.max() > first_sale.min()  # new items launch during the period
    plans = frames["plans"]
    assert plans.filter(pl.col("is_open") == 0).height > 0


def test_years_of_history_for_many_items_keep_demand_positive():
    """Declining items level off: a 3-year benchmark history once failed on negative demand."""
    frames = simulate(SimulationSpec(stores=2, items=300, days=3 * 365, seed=7, horizon=14))
    by_item = frames["sales"].group_by("item_id").agg(pl.col("units").sum())
    assert frames["sales"]["units"].min() >= 0
    assert by_item.height == 300 and by_item["units"].min() > 0
