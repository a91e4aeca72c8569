"""Dagster wiring: definitions load, assets with build_asset_context, the landing sensor."""

import datetime as dt

import dagster as dg
import pytest

from batch_ml.config import load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import FORECASTING_ASSETS, REPO, SENTIMENT_ASSETS
from batch_ml.platform.common import BuildContext
from batch_ml.platform.product import PRODUCT_TAG
from batch_ml.platform.resources import LandingZone, TableStore
from batch_ml.products.forecasting.product import PRODUCT
from batch_ml.products.sentiment.product import PRODUCT as SENTIMENT

pytestmark = pytest.mark.definitions

RUNNING = dg.DefaultSensorStatus.RUNNING


def _selected(job: dg.JobDefinition) -> set[str]:
    return {k.to_user_string() for k in job.asset_layer.selected_asset_keys}


def test_project_definitions_load_every_products_assets_jobs_schedules_and_sensors():
    config = load_config(REPO / "batch_ml.toml")
    defs = build_definitions(config)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    everything = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert everything == FORECASTING_ASSETS | SENTIMENT_ASSETS
    jobs = {j.name: j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    stages = ("sources", "features", "model", "predictions", "evaluation")
    products = ((PRODUCT, FORECASTING_ASSETS), (SENTIMENT, SENTIMENT_ASSETS))
    for product, assets in products:
        name = product.name
        groups = {graph.get(dg.AssetKey(a)).group_name for a in assets}
        assert groups == {f"{name}_{stage}" for stage in stages}
        # The platform gives every asset of a product its owners and the product tag.
        for asset in assets:
            node = graph.get(dg.AssetKey(asset))
            assert node.owners == [f"team:{name}"], asset
            assert node.tags[PRODUCT_TAG] == name, asset
        # The daily chain shares one partitioning: a day is one run.
        parts = BuildContext.from_config(config, product).parts
        daily = {graph.get(dg.AssetKey(a)).partitions_def for a in product.daily}
        assert daily == {parts.daily}
        assert _selected(jobs[product.daily_job]) == set(product.daily)
        assert _selected(jobs[product.training_job]) == set(product.weekly)
        # The landing sensor runs without anyone switching it on in the UI.
        sensor = defs.resolve_sensor_def(f"{name}_landing_sensor")
        assert sensor.default_status == RUNNING
        assert product.daily_job in {t.job_name for t in sensor.targets}
        assert defs.resolve_job_def(product.daily_job).executor_def.name == "in_process"
    # Every job and schedule is generated from the products' declarations; only forecasting
    # has reference data.
    assert set(jobs) == {
        f"{name}_{job}_job"
        for name in (p.name for p, _ in products)
        for job in ("daily", "training", "champion_override", "report")
    } | {"forecasting_reference_data_job"}
    names = {s.name for s in defs.schedules}
    assert names == {
        f"{name}_{kind}_schedule"
        for name in (p.name for p, _ in products)
        for kind in ("daily", "training", "report")
    }
    assert _selected(jobs[PRODUCT.daily_job]) == {
        "sales",
        "plans",
        "demand_features",
        "predictions",
        "prediction_drift",
        "forecast_accuracy",
    }
    assert _selected(jobs[PRODUCT.reference_data_job]) == {"calendar", "products", "stores"}
    schedules = {n: defs.resolve_schedule_def(n) for n in names}
    assert schedules["forecasting_daily_schedule"].job_name == PRODUCT.daily_job
    # On Mondays the week's training follows the daily run that loads Sunday.
    assert schedules["forecasting_daily_schedule"].cron_schedule == "0 6 * * *"
    assert schedules["forecasting_training_schedule"].cron_schedule == "0 7 * * 1"
    sensor = defs.resolve_sensor_def("forecasting_landing_sensor")
    assert {t.job_name for t in sensor.targets} == {PRODUCT.daily_job, PRODUCT.reference_data_job}
    # Declarative automation runs without anyone switching it on in the UI.
    automation = defs.resolve_sensor_def("batch_ml_automation_sensor")
    assert automation.default_status == RUNNING
    model = graph.get(dg.AssetKey("demand_model"))
    assert "lightgbm" in model.kinds and model.owners


def _asset(defs, name):
    return defs.resolve_assets_def(name)


def _io(cfg):
    return {
        "landing": LandingZone(root=str(cfg.paths.landing)),
        "tables": TableStore(
            tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse)
        ),
    }


def test_sales_asset_loads_one_day_and_reports_checks(small_project):
    defs = build_definitions(small_project)
    context = dg.build_asset_context(partition_key="2025-01-10")
    events = list(_asset(defs, "sales")(context=context, **_io(small_project)))
    result = events[0]  # the asset stores its partition with its log row (one commit)
    stored = TableStore(**_io(small_project)["tables"].model_dump()).table("sales").read()
    assert stored["date"].unique().to_list() == [dt.date(2025, 1, 10)]
    assert result.metadata["series"] == 12
    assert result.metadata["dagster/row_count"] == stored.height == 12
    checks = {e.check_name: e.passed for e in events[1:]}
    assert checks == {"unique_keys": True, "rows_every_day": True, "no_quarantined_rows": True}
    log = TableStore(**_io(small_project)["tables"].model_dump()).table("ingestion_log").read()
    assert log.select("file", "status", "rows_quarantined").to_dicts() == [
        {"file": "sales/sales_2025-01-10.csv", "status": "accepted", "rows_quarantined": 0}
    ]


def test_sales_asset_fails_on_a_bad_file_naming_file_row_and_column(small_project):
    path = small_project.paths.landing / "sales" / "sales_2025-01-10.csv"
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[3] = "lots"  # the units column of data row 3
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    defs = build_definitions(small_project)
    context = dg.build_asset_context(partition_key="2025-01-10")
    with pytest.raises(dg.Failure, match=r"sales_2025-01-10.csv[\s\S]*row 3, column 'units'"):
        list(_asset(defs, "sales")(context=context, **_io(small_project)))


def test_weekly_model_partitions_cover_exactly_the_forecast_days():
    """Each day from the first model week on has its model week, and no model week is left
    that no day needs."""
    parts = BuildContext.from_config(load_config(REPO / "batch_ml.toml"), PRODUCT).parts
    days = [dt.date.fromisoformat(k) for k in parts.daily.get_partition_keys()]
    days = [d for d in days if d >= parts.first_week]
    weeks = {dt.date.fromisoformat(k) for k in parts.weekly.get_partition_keys()}
    assert weeks == {d - dt.timedelta(days=d.weekday()) for d in days}


def test_without_an_end_date_the_running_week_has_its_model_partition(tmp_path):
    """Live operation: yesterday's forecast needs the model of yesterday's week today."""
    config = (REPO / "batch_ml.toml").read_text().replace('end_date = "2026-01-01"', "")
    (tmp_path / "batch_ml.toml").write_text(config)
    parts = BuildContext.from_config(load_config(tmp_path / "batch_ml.toml"), PRODUCT).parts
    last_day = dt.date.fromisoformat(parts.daily.get_last_partition_key())
    week = last_day - dt.timedelta(days=last_day.weekday())
    assert week.isoformat() in parts.weekly.get_partition_keys()


def test_backfill_chunks_come_from_the_project_config(tmp_path):
    """`[backfill]` sets how many partitions one backfill run covers, for every daily asset
    and the weekly model alike; the default is a month of days and 8 weeks."""
    config = (REPO / "batch_ml.toml").read_text()

    def policies(text: str) -> dict[str, int | None]:
        (tmp_path / "batch_ml.toml").write_text(text)
        graph = build_definitions(load_config(tmp_path / "batch_ml.toml")).resolve_asset_graph()
        return {
            key.to_user_string(): graph.get(key).backfill_policy.max_partitions_per_run
            for key in graph.materializable_asset_keys
            if graph.get(key).backfill_policy is not None
        }

    default = policies(config)
    assert default["demand_model"] == 8
    assert {default[a] for a in ("sales", "plans", "demand_features", "predictions")} == {31}
    assert {default[a] for a in ("prediction_drift", "forecast_accuracy")} == {31}

    chosen = policies(config + "\n[backfill]\ndays_per_run = 92\nweeks_per_run = 13\n")
    assert chosen["demand_model"] == chosen["review_model"] == 13
    weekly = {*PRODUCT.weekly, *SENTIMENT.weekly}
    assert {v for k, v in chosen.items() if k not in weekly} == {92}

    with pytest.raises(ValueError, match="days_per_run"):
        policies(config + "\n[backfill]\ndays_per_run = 0\n")
