"""Bring your own data: a real public dataset, loaded through the landing contract only.

The UCI bike-sharing daily counts (../shared/data, CC BY 4.0) become two series (casual and
registered riders at one 'store'), with the holiday and working-day flags as calendar
covariates declared in the project config. No code changes: the same graph runs on it.
"""

import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from batch_ml.cli import run_pipeline
from batch_ml.config import load_config
from batch_ml.harness.project import SHARED_DATA, write_config
from batch_ml.products.forecasting.config import settings

pytestmark = pytest.mark.definitions

BIKES = SHARED_DATA / "bike_sharing_uci" / "bike_sharing_daily.csv"


@pytest.mark.skipif(not BIKES.exists(), reason="../shared/data is not beside the repository")
def test_bike_sharing_runs_through_the_whole_graph(tmp_path):
    start, days = dt.date(2011, 1, 1), 200
    cfg = load_config(
        write_config(
            tmp_path,
            start=start,
            days=days,
            known=(),
            calendar=("holiday", "workingday"),
            products=(),
            stores=(),
        )
    )
    raw = pl.read_csv(BIKES, try_parse_dates=True).filter(
        pl.col("dteday") < start + dt.timedelta(days=days)
    )
    sales = raw.unpivot(
        index="dteday", on=["casual", "registered"], variable_name="item_id", value_name="units"
    ).select(pl.col("dteday").alias("date"), pl.lit("dc").alias("store_id"), "item_id", "units")
    landing = cfg.paths.landing
    (landing / "sales").mkdir(parents=True)
    for (day,), part in sales.group_by("date"):
        part.sort("item_id").write_csv(landing / "sales" / f"sales_{day}.csv")
    (landing / "calendar").mkdir()
    raw.select(
        pl.col("dteday").alias("date"),
        pl.col("holiday").cast(pl.Float64),
        pl.col("workingday").cast(pl.Float64),
    ).write_parquet(landing / "calendar" / "calendar.parquet")

    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(cfg, instance)
        report = instance.fetch_materializations(dg.AssetKey("accuracy_report"), limit=1)
        metadata = report.records[0].asset_materialization.metadata
    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        series, leads = con.execute(
            "select count(distinct item_id), count(distinct lead) from predictions"
        ).fetchone()
        features = con.execute("select holiday, workingday from demand_features limit 1").fetchone()
    assert (series, leads) == (2, settings(cfg).forecast.horizon)
    assert features is not None  # the declared calendar covariates reached the features
    wape = {m: metadata[f"wape_{m}"].value for m in ("model", "seasonal_naive", "moving_average")}
    assert all(0 < w < 1 for w in wape.values()), wape
