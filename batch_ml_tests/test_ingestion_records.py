"""Ingestion through Dagster: the ingestion log, the quarantine table and their metadata."""

import logging
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from batch_ml.config import load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import write_config
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.demo import spec_from_config, write_landing
from batch_ml.products.forecasting.product import PRODUCT

pytestmark = pytest.mark.definitions

DAY = "2025-01-10"


def _break_rows(cfg, units: dict[int, str]) -> None:
    """Set `units` of the given data rows (1-based) of the day's sales file."""
    path = cfg.paths.landing / "sales" / f"sales_{DAY}.csv"
    lines = path.read_text().splitlines()
    for row, value in units.items():
        fields = lines[row].split(",")
        fields[3] = value
        lines[row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def _ingest(cfg, instance):
    job = build_definitions(cfg).resolve_job_def(PRODUCT.daily_job)
    return job.execute_in_process(
        instance=instance,
        partition_key=DAY,
        raise_on_error=False,
        asset_selection=[dg.AssetKey("sales")],
    )


def test_quarantined_rows_are_kept_with_the_reason_and_shown_in_metadata_and_checks(tmp_path):
    config = write_config(tmp_path).read_text() + (
        '\n[ingest]\nquarantine = ["negative", "not_finite"]\nmax_quarantined_fraction = 0.2\n'
    )
    (tmp_path / "batch_ml.toml").write_text(config)
    cfg = load_config(tmp_path / "batch_ml.toml")
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    _break_rows(cfg, {2: "-4", 5: "NaN"})

    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(2):  # a re-run replaces its own records: nothing duplicated
            result = _ingest(cfg, instance)
            assert result.success
        sales = PartitionedTable(cfg.paths.tables, "sales").read([DAY])
        assert sales.height == 12 - 2
        materialization = result.asset_materializations_for_node("sales")[0]
        assert materialization.metadata["rows_quarantined"].value == 2
        check = next(
            c for c in result.get_asset_check_evaluations() if c.check_name == "no_quarantined_rows"
        )
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        warnings = [
            e.message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING
        ]
        assert any("sales: 2 row(s) sent to the quarantine table" in w for w in warnings)

    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        quarantine = con.execute(
            'select row, "column", rule, value from quarantine order by row'
        ).fetchall()
        log = con.execute(
            "select file, status, rows_in_file, rows_accepted, rows_quarantined "
            "from ingestion_log where source = 'sales'"
        ).fetchall()
    assert quarantine == [(2, "units", "negative", "-4.0"), (5, "units", "not_finite", "NaN")]
    assert log == [(f"sales/sales_{DAY}.csv", "accepted", 12, 10, 2)]


def test_a_corrected_redelivery_adds_a_log_row_and_the_failed_one_stays_recorded(small_project):
    cfg = small_project
    path = cfg.paths.landing / "sales" / f"sales_{DAY}.csv"
    good = path.read_bytes()
    _break_rows(cfg, {3: "lots"})
    landed = path.read_bytes()
    with dg.DagsterInstance.ephemeral() as instance:
        failed = _ingest(cfg, instance)
        assert not failed.success
        # A broken file is not retried (the retry policy is for transient errors only).
        assert not [e for e in failed.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert path.read_bytes() == landed  # the pipeline never touches landing files
        assert not PartitionedTable(cfg.paths.tables, "sales").path(DAY).exists()
        path.write_bytes(good)  # the supplier re-delivers a corrected file
        assert _ingest(cfg, instance).success
    log = (
        PartitionedTable(cfg.paths.tables, "ingestion_log")
        .read()
        .filter(pl.col("source") == "sales")
    )
    assert sorted(log["status"]) == ["accepted", "failed"]
    failed_row = log.filter(pl.col("status") == "failed").row(0, named=True)
    assert "row 3, column 'units'" in failed_row["error"]
    assert failed_row["rows_accepted"] is None
    assert log["sha256"].n_unique() == 2


def _run(cfg, instance, asset: str):
    job = build_definitions(cfg).resolve_job_def(PRODUCT.daily_job)
    return job.execute_in_process(
        instance=instance,
        partition_key=DAY,
        raise_on_error=False,
        asset_selection=[dg.AssetKey(asset)],
    )


def test_a_dangling_plans_link_fails_the_day_and_keeps_the_stored_plans(small_project):
    cfg = small_project
    path = cfg.paths.landing / "plans" / f"plans_{DAY}.parquet"
    with dg.DagsterInstance.ephemeral() as instance:
        assert _run(cfg, instance, "plans").success
        stored = PartitionedTable(cfg.paths.tables, "plans").read([DAY])
        assert stored.height > 0
        path.unlink()
        path.symlink_to(path.with_name("gone.parquet"))  # a delivery that points at nothing
        result = _run(cfg, instance, "plans")
        assert not result.success  # not "no plans that day": something was delivered
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert PartitionedTable(cfg.paths.tables, "plans").read([DAY]).equals(stored)
    log = PartitionedTable(cfg.paths.tables, "ingestion_log").read()
    failed = log.filter((pl.col("source") == "plans") & (pl.col("status") == "failed"))
    assert failed.height == 1 and "not a regular file" in failed["error"][0]


def test_a_schema_change_the_asset_did_not_declare_fails_once_without_retries(small_project):
    cfg = small_project
    path = cfg.paths.landing / "sales" / f"sales_{DAY}.csv"
    delivered = pl.read_csv(path, infer_schema=False)
    delivered.with_columns(is_open=pl.lit("1")).write_csv(path)  # an observed covariate
    with dg.DagsterInstance.ephemeral() as instance:
        assert _ingest(cfg, instance).success
    # The team drops that covariate from the contract: new sales partitions would lack a
    # column the stored ones have, which readers of the table cannot tell from lost data.
    config = Path(cfg.paths.root).parent / "batch_ml.toml"
    config.write_text(config.read_text().replace('"on_promo", "is_open"', '"on_promo"'))
    changed = load_config(config)
    delivered.write_csv(path)
    stored = PartitionedTable(cfg.paths.tables, "sales").read([DAY])
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest(changed, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "is_open" in str(failure.event_specific_data.error)
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert PartitionedTable(cfg.paths.tables, "sales").read([DAY]).equals(stored)
