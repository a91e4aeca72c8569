"""The whole graph materialized on a Dagster instance, twice: same rows, same predictions."""

import datetime as dt
import hashlib

import dagster as dg
import duckdb
import polars as pl
import pytest

from batch_ml.cli import run_pipeline
from batch_ml.definitions import build_definitions
from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.storage.tables import PartitionedTable

pytestmark = pytest.mark.definitions


def _predictions_digest(cfg) -> tuple[int, str]:
    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        rows = con.execute(
            "select forecast_date, target_date, store_id, item_id, prediction, model_version "
            "from predictions order by all"
        ).fetchall()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def test_whole_graph_runs_and_rerun_is_idempotent(small_project, tmp_path):
    cfg = small_project
    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(cfg, instance)
        count, digest = _predictions_digest(cfg)
        horizon = cfg.forecast.horizon
        first_day = cfg.first_model_week
        last_day = cfg.start_date + dt.timedelta(days=cfg.demo.days - 1)
        forecast_days = (last_day - first_day).days + 1
        assert count > 0 and count % horizon == 0
        preds = PartitionedTable(cfg.paths.tables, "predictions").read()
        assert preds.select("forecast_date").n_unique() == forecast_days
        # Each forecast day used the champion of that day (the gate's decision for its week;
        # the week's best baseline before any model passed), trained before the day.
        registry = PartitionedTable(cfg.paths.tables, "demand_model").read()
        gate = PartitionedTable(cfg.paths.tables, "model_promotion").read()
        used = preds.select("forecast_date", "model_version").unique()
        assert used.select("forecast_date").n_unique() == used.height  # one version a day
        expected = used.with_columns(model_week=pl.col("forecast_date").dt.truncate("1w")).join(
            gate, on="model_week", how="left"
        )
        assert expected.select(
            (
                pl.col("model_version")
                == pl.coalesce("champion_version", "baseline:" + pl.col("fallback_baseline"))
            ).all()
        ).item()
        models = used.join(registry, on="model_version")
        assert models.height > 0, "no model was ever promoted on the demo data"
        assert models.select((pl.col("model_week") <= pl.col("forecast_date")).all()).item()
        assert registry.select((pl.col("window_end") < pl.col("model_week")).all()).item()
        accuracy = PartitionedTable(cfg.paths.tables, "forecast_accuracy").read()
        assert set(accuracy["method"]) == {"model", "seasonal_naive", "moving_average"}
        assert (cfg.paths.reports / "evaluation_report.html").exists()
        materialized = instance.get_materialized_partitions(dg.AssetKey("predictions"))
        assert len(materialized) == forecast_days
        # The cost of a partition is in the UI: the range step's time, per partition too,
        # and its peak memory.
        cost = instance.fetch_materializations(dg.AssetKey("predictions"), limit=1).records[0]
        cost = {k: v.value for k, v in cost.asset_materialization.metadata.items()}
        assert cost["partitions_in_step"] == forecast_days
        assert 0 < cost["duration_per_partition_s"] <= cost["duration_s"]
        assert cost["peak_rss_mb"] > 50

        run_pipeline(cfg, instance)
        assert _predictions_digest(cfg) == (count, digest)


def test_single_partition_materialize_matches_the_range_run(small_project):
    cfg = small_project
    defs = build_definitions(cfg)
    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(cfg, instance)
        table = PartitionedTable(cfg.paths.tables, "demand_features")
        day = "2025-04-20"
        before = table.read([day])
        job = defs.resolve_job_def("ingest_job")
        assert job.execute_in_process(instance=instance, partition_key=day).success
        assert table.read([day]).equals(before)


def test_weekly_runs_one_week_at_a_time_extend_the_gate(small_project):
    """Live, the training schedule runs one week per run: the first gate decision (no
    champion yet) must not fix the types of the columns the next weeks fill."""
    cfg = small_project
    defs = build_definitions(cfg)
    first, last = cfg.start_date, cfg.start_date + dt.timedelta(days=cfg.demo.days - 1)
    with dg.DagsterInstance.ephemeral() as instance:

        def run(job: str, start: dt.date, end: dt.date) -> None:
            defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
            )

        defs.resolve_job_def("reference_data_job").execute_in_process(instance=instance)
        run("ingest_job", first, last)
        weeks = [cfg.first_model_week + dt.timedelta(weeks=k) for k in range(3)]
        for week in weeks:
            run("training_job", week, week)
    table = PartitionedTable(cfg.paths.tables, "model_promotion")
    assert table.read().sort("model_week")["model_week"].to_list() == weeks
    assert table.read([weeks[0].isoformat()])["champion_before"][0] is None
    assert table.schema()["champion_before"] == pl.String
    assert table.schema()["champion_score"] == pl.Float64
