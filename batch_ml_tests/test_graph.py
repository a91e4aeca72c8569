"""The whole graph materialized on a Dagster instance, twice: same rows, same predictions; a
day's chain is one run, and a day whose week is not decided yet fails clearly."""

import datetime as dt
import hashlib

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from batch_ml.cli import run_pipeline
from batch_ml.definitions import build_definitions
from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.product import PRODUCT

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
        run = run_pipeline(cfg, instance)["forecasting"]
        # Reference data, the chain's first part, the weeks, the chain's rest, the report.
        assert len(run["timings"]) == len(instance.get_runs()) == 5
        count, digest = _predictions_digest(cfg)
        horizon = settings(cfg).forecast.horizon
        first_day = PRODUCT.first_week(cfg)
        last_day = cfg.start_date + dt.timedelta(days=settings(cfg).demo.days - 1)
        forecast_days = (last_day - first_day).days + 1
        all_days = settings(cfg).demo.days
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
        # Every day of the chain is materialized; the days before the first model week are
        # stored empty, with the reason.
        for asset in PRODUCT.daily:
            materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert len(materialized) == all_days, asset
        # The cost of a partition is in the UI: the range step's time, per partition too,
        # and its peak memory.
        cost = instance.fetch_materializations(dg.AssetKey("predictions"), limit=1).records[0]
        cost = {k: v.value for k, v in cost.asset_materialization.metadata.items()}
        assert cost["partitions_in_step"] == all_days
        assert cost["empty_days"] == all_days - forecast_days
        assert cost["empty_reason"] == f"before the first model week {first_day}"
        assert 0 < cost["duration_per_partition_s"] <= cost["duration_s"]
        assert cost["peak_rss_mb"] > 50

        run_pipeline(cfg, instance)
        assert _predictions_digest(cfg) == (count, digest)


def _materialized(result) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in result.get_asset_materialization_events():
        found.setdefault(event.asset_key.to_user_string(), []).append(event.partition)
    return found


def test_a_days_whole_chain_is_one_run_with_the_range_runs_results(small_project):
    """A new day (what the landing sensor and the daily schedule start): sources, features,
    predictions, drift and accuracy of that day in one run, the same rows as the range run."""
    cfg = small_project
    defs = build_definitions(cfg)
    day = "2025-04-20"
    tables = ["demand_features", "predictions", "prediction_drift", "forecast_accuracy"]
    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(cfg, instance)
        before = {t: PartitionedTable(cfg.paths.tables, t).read([day]) for t in tables}
        runs = len(instance.get_runs())
        job = defs.resolve_job_def(PRODUCT.daily_job)
        result = job.execute_in_process(instance=instance, partition_key=day)
        assert result.success
        assert len(instance.get_runs()) == runs + 1
        assert _materialized(result) == {a: [day] for a in PRODUCT.daily}
    for table, rows in before.items():
        assert not rows.is_empty(), table
        # Sums over the range's rows and the day's add in another order: last bits differ.
        assert_frame_equal(
            PartitionedTable(cfg.paths.tables, table).read([day]), rows, rel_tol=1e-9
        )


def test_a_day_whose_week_is_undecided_fails_clearly_until_its_week_is_trained(small_project):
    """Days before the first model week have no gate decision to wait for: their predictions
    (and what follows) are stored empty with the reason. A later day whose week has no gate
    decision yet fails at its predictions, naming the week and the job that decides it; its
    files and features stay stored. Once the week is trained, the day's chain is one run."""
    cfg = small_project
    defs = build_definitions(cfg)
    daily = defs.resolve_job_def(PRODUCT.daily_job)
    week = PRODUCT.first_week(cfg)
    eve = week - dt.timedelta(days=1)
    predictions = PartitionedTable(cfg.paths.tables, "predictions")
    accuracy = PartitionedTable(cfg.paths.tables, "forecast_accuracy")
    with dg.DagsterInstance.ephemeral() as instance:
        defs.resolve_job_def(PRODUCT.reference_data_job).execute_in_process(instance=instance)
        tags = {RANGE_START: cfg.start_date.isoformat(), RANGE_END: eve.isoformat()}
        early = daily.execute_in_process(instance=instance, tags=tags)
        assert early.success
        days_before = (week - cfg.start_date).days
        for asset in PRODUCT.daily:
            assert len(_materialized(early)[asset]) == days_before, asset
        assert len(predictions.partitions()) == days_before and predictions.read().is_empty()
        assert len(accuracy.partitions()) == days_before and accuracy.read().is_empty()
        (record,) = instance.fetch_materializations(dg.AssetKey("predictions"), limit=1).records
        reason = record.asset_materialization.metadata["empty_reason"].value
        assert reason == f"before the first model week {week}"

        result = daily.execute_in_process(
            instance=instance, partition_key=week.isoformat(), raise_on_error=False
        )
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert failure.step_key == "predictions"
        message = failure.step_failure_data.user_failure_data.description
        assert f"has not decided week {week}" in message, message
        assert PRODUCT.training_job in message, message
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
        assert _materialized(result) == {a: [week.isoformat()] for a in PRODUCT.daily[:3]}

        training = defs.resolve_job_def(PRODUCT.training_job)
        assert training.execute_in_process(
            instance=instance, partition_key=week.isoformat()
        ).success
        for day in (week, week + dt.timedelta(days=1)):
            result = daily.execute_in_process(instance=instance, partition_key=day.isoformat())
            assert result.success
            assert _materialized(result) == {a: [day.isoformat()] for a in PRODUCT.daily}
    assert not predictions.read([week.isoformat()]).is_empty()
    # The first target day with a forecast: stored beside the empty days, same columns.
    assert not accuracy.read([(week + dt.timedelta(days=1)).isoformat()]).is_empty()


def test_weekly_runs_one_week_at_a_time_extend_the_gate(small_project):
    """Live, the training schedule runs one week per run: the first gate decision (no
    champion yet) must not fix the types of the columns the next weeks fill."""
    cfg = small_project
    defs = build_definitions(cfg)
    first, last = cfg.start_date, cfg.start_date + dt.timedelta(days=settings(cfg).demo.days - 1)
    with dg.DagsterInstance.ephemeral() as instance:

        def run(job: str, start: dt.date, end: dt.date, assets=None) -> None:
            defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
                asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
            )

        defs.resolve_job_def(PRODUCT.reference_data_job).execute_in_process(instance=instance)
        run(PRODUCT.daily_job, first, last, ["sales", "plans", "demand_features"])
        weeks = [PRODUCT.first_week(cfg) + dt.timedelta(weeks=k) for k in range(3)]
        for week in weeks:
            run(PRODUCT.training_job, week, week)
    table = PartitionedTable(cfg.paths.tables, "model_promotion")
    assert table.read().sort("model_week")["model_week"].to_list() == weeks
    assert table.read([weeks[0].isoformat()])["champion_before"][0] is None
    assert table.schema()["champion_before"] == pl.String
    assert table.schema()["champion_score"] == pl.Float64
