"""The champion on a real instance: time-travel predictions, pins and rollbacks.

The small demo project runs once through the whole graph (in-process runs on a Dagster
instance); the gate's own decisions then say which model was champion in which week, and the
tests re-run past partitions and record overrides the way a user does (jobs with config).
"""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from batch_ml.cli import run_pipeline
from batch_ml.config import load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import write_config
from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.demo import spec_from_config, write_landing
from batch_ml.products.forecasting.product import PRODUCT

pytestmark = pytest.mark.definitions


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("champion")
    cfg = load_config(write_config(folder))
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    with dg.DagsterInstance.ephemeral() as instance:
        run_pipeline(cfg, instance)
        yield cfg, build_definitions(cfg), instance


# Serving a day again: its predictions and their drift (the daily job's forecasting steps).
FORECAST = [dg.AssetKey("predictions"), dg.AssetKey("prediction_drift")]


def _table(cfg, name) -> pl.DataFrame:
    return PartitionedTable(cfg.paths.tables, name).read()


def _run(defs, instance, job, first, last=None, **kwargs):
    last = last or first
    tags = {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False, **kwargs
    )


def _versions(cfg, first, last) -> dict[dt.date, str]:
    preds = _table(cfg, "predictions").filter(pl.col("forecast_date").is_between(first, last))
    pairs = preds.select("forecast_date", "model_version").unique().sort("forecast_date")
    assert pairs["forecast_date"].is_unique().all(), "one model per forecast day"
    return dict(pairs.iter_rows())


def _override(defs, instance, **config):
    return defs.resolve_job_def(PRODUCT.champion_override_job).execute_in_process(
        instance=instance,
        run_config={"ops": {"champion_overrides": {"config": config}}},
        raise_on_error=False,
    )


def _promotions(cfg) -> pl.DataFrame:
    gate = _table(cfg, "model_promotion").sort("model_week")
    return gate.filter(pl.col("decision") == "promoted")


def test_a_backfilled_past_day_is_forecast_by_the_champion_of_that_day(project):
    cfg, defs, instance = project
    promoted = _promotions(cfg)
    assert promoted.height >= 2, "the demo data should see at least two promotions"
    latest = _table(cfg, "model_promotion").sort("model_week")["champion_version"][-1]
    first_champion_week = promoted["model_week"][0]
    past_champion = promoted["champion_version"][0]
    assert past_champion != latest
    day = first_champion_week + dt.timedelta(days=2)
    before_any = PRODUCT.first_week(cfg) + dt.timedelta(days=1)  # no model had passed yet
    for d in (day, before_any):
        assert _run(defs, instance, PRODUCT.daily_job, d, asset_selection=FORECAST).success
    versions = _versions(cfg, before_any, day)
    assert versions[day] == past_champion
    assert versions[before_any].startswith("baseline:")
    # Every stored day carries the version the gate made champion for its week.
    gate = _table(cfg, "model_promotion").select("model_week", "champion_version")
    stored = (
        _table(cfg, "predictions")
        .select("forecast_date", "model_version")
        .unique()
        .with_columns(model_week=pl.col("forecast_date").dt.truncate("1w"))
        .join(gate, on="model_week")
        .filter(pl.col("champion_version").is_not_null())
    )
    assert (stored["model_version"] == stored["champion_version"]).all()


def test_a_pin_and_a_rollback_are_honoured_from_their_day_and_recorded(project):
    cfg, defs, instance = project
    promoted = _promotions(cfg)
    old, new = promoted.row(0, named=True), promoted.row(1, named=True)
    week = new["model_week"]  # the week `new` became champion
    pin_day = week + dt.timedelta(days=2)
    result = _override(
        defs,
        instance,
        action="pin",
        model_version=old["champion_version"],
        effective_date=pin_day.isoformat(),
        reason="new model under investigation",
        requested_by="test",
    )
    assert result.success
    friday = week + dt.timedelta(days=4)
    assert _run(defs, instance, PRODUCT.daily_job, week, friday, asset_selection=FORECAST).success
    versions = _versions(cfg, week, week + dt.timedelta(days=4))
    assert versions[week + dt.timedelta(days=1)] == new["champion_version"]
    assert versions[pin_day] == old["champion_version"]
    assert versions[pin_day + dt.timedelta(days=2)] == old["champion_version"]

    # The gate holds the pin in the following weeks, whatever the challengers score.
    last_week = _table(cfg, "model_promotion")["model_week"].max()
    next_week = week + dt.timedelta(days=7)
    assert _run(defs, instance, PRODUCT.training_job, next_week, last_week).success
    later = _table(cfg, "model_promotion").filter(pl.col("model_week") >= next_week)
    assert set(later["champion_version"]) == {old["champion_version"]}
    assert set(later["decision"]) <= {"held", "rejected", "kept"}
    assert later["pinned"].all()

    # A rollback (no version: the champion before the current one) unpins and goes back.
    rollback_day = last_week + dt.timedelta(days=1)
    assert _override(
        defs,
        instance,
        action="rollback",
        effective_date=rollback_day.isoformat(),
        reason="pin lifted",
    ).success
    assert _run(
        defs, instance, PRODUCT.daily_job, last_week, rollback_day, asset_selection=FORECAST
    ).success
    versions = _versions(cfg, last_week, rollback_day)
    assert versions[last_week] == old["champion_version"]
    assert versions[rollback_day] == new["champion_version"]

    overrides = _table(cfg, "champion_overrides").sort("recorded_at")
    assert overrides.select("action", "model_version", "effective_date", "reason").rows() == [
        ("pin", old["champion_version"], pin_day, "new model under investigation"),
        ("rollback", None, rollback_day, "pin lifted"),
    ]


def test_overrides_that_would_break_the_rules_are_refused_and_not_recorded(project):
    cfg, defs, instance = project
    registry = _table(cfg, "demand_model").sort("model_week")
    before = PartitionedTable(cfg.paths.tables, "champion_overrides").partitions()
    stored = _table(cfg, "champion_overrides").height if before else 0
    last = registry.row(-1, named=True)
    cases = {
        "unknown": dict(action="pin", model_version="feedfacecafebeef", reason="x"),
        # A model of a later week did not exist on the effective day (it saw the future).
        "future": dict(
            action="pin",
            model_version=last["model_version"],
            effective_date=(last["model_week"] - dt.timedelta(days=1)).isoformat(),
            reason="x",
        ),
        "no version": dict(action="pin", reason="x"),
    }
    for name, config in cases.items():
        result = _override(defs, instance, **config)
        assert not result.success, name
    after = _table(cfg, "champion_overrides").height if before else 0
    assert after == stored
