"""One truth per ingested file, with real processes:

- a SIGKILL at every file-system step of an ingestion's commit (a sweep over its audit
  events) leaves the stored partitions, the `ingestion_log` and the `quarantine` table
  agreeing: all of the old state or all of the new one, never a mix;
- a correction that lands while a run is between reading the file and storing it wins: the
  slow run stores nothing and its content is logged `superseded`;
- two processes ingesting one day while a correction stream rewrites its file never store
  an older content after a newer one, and the last delivered content is what is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from batch_ml.config import load_config
from batch_ml.harness.project import write_config
from batch_ml.platform.sources.landing import content_hash
from batch_ml.platform.sources.records import LOG_TABLE, QUARANTINE_TABLE
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.platform.storage.transaction import JOURNAL_FOLDER, recover
from batch_ml.products.forecasting.demo import spec_from_config, write_landing

from . import ingest_workers as w

DAYS = [dt.date(2025, 1, 10) + dt.timedelta(days=i) for i in range(3)]
# Rows that only record when and by which run a file was read differ between two runs of
# the same content: the agreement checks compare everything else.
VOLATILE = ("ingested_at", "run_id")
PRELOADED_PACKAGES = {"dagster", "dagster_shared", "sqlalchemy", "alembic"}
MIN_KILL_POINTS = 50


@pytest.fixture(scope="module")
def ctx():
    """A forkserver preloaded with Dagster's modules (not Polars': forking a process with
    native threads can deadlock), so each killed ingestion starts in a fraction of a second."""
    import dagster  # noqa: F401 - loaded to be preloaded

    preload = [m for m in list(sys.modules) if m.split(".")[0] in PRELOADED_PACKAGES]
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(preload)
    starter = context.Process(target=time.sleep, args=(0,))
    starter.start()
    starter.join()
    return context


def _project(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text()
        + '\n[ingest]\nquarantine = ["negative"]\nmax_quarantined_fraction = 0.5\n'
        + "settle_seconds = 0\n"
    )
    cfg = load_config(config)
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    return config


def _sales_file(config: Path, day: dt.date) -> Path:
    return load_config(config).paths.landing / "sales" / f"sales_{day.isoformat()}.csv"


def _deliver(path: Path, units_offset: int, negative_row: int | None = None) -> str:
    """Rewrite a delivered sales file with every unit `+ units_offset` (and one negative
    row, which the project quarantines), atomically like a careful sender; its sha256."""
    frame = pl.read_csv(path, infer_schema=False)
    units = frame["units"].cast(pl.Float64) + units_offset
    if negative_row is not None:
        units = units.scatter(negative_row, -1.0)
    frame = frame.with_columns(units=units.cast(pl.String))
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_csv(tmp)
    tmp.replace(path)
    return content_hash(path)


def _digest(frame: pl.DataFrame) -> str:
    frame = frame.drop([c for c in VOLATILE if c in frame.columns])
    ordered = frame.select(sorted(frame.columns)).sort(sorted(frame.columns))
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()


def _state(tables: Path) -> dict:
    """Per day: the stored sales and quarantine content, and the contents the log accepted."""
    recover(tables)  # what any platform read or write does first
    sales = PartitionedTable(tables, "sales")
    quarantine = PartitionedTable(tables, QUARANTINE_TABLE)
    log = PartitionedTable(tables, LOG_TABLE).read()
    out = {}
    for day in DAYS:
        accepted = log.filter((pl.col("partition") == day) & (pl.col("status") == "accepted"))
        out[day] = {
            "sales": _digest(sales.read([day.isoformat()])),
            "quarantine": _digest(quarantine.read([f"sales_{day.isoformat()}"])),
            "accepted": frozenset(accepted["sha256"]),
            "not_accepted": log.filter(
                (pl.col("partition") == day) & (pl.col("status") != "accepted")
            ).height,
        }
    return out


def _restore(snapshot: Path, tables: Path) -> None:
    shutil.rmtree(tables)
    shutil.copytree(snapshot, tables)


@pytest.mark.integration
def test_a_sigkill_at_any_step_of_the_commit_leaves_log_and_data_agreeing(ctx, tmp_path):
    config = _project(tmp_path)
    tables = load_config(config).paths.tables
    w.ingest_sales(config, DAYS, run_id="first")  # the stored (old) state
    old_sha = {d: content_hash(_sales_file(config, d)) for d in DAYS}
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tables, snapshot)
    old = _state(tables)
    new_sha = {d: _deliver(_sales_file(config, d), 1, negative_row=d.day % 5) for d in DAYS}

    counts = ctx.Queue()
    probe = ctx.Process(target=w.count_file_events, args=(config, DAYS, counts))
    probe.start()
    probe.join(120)
    assert probe.exitcode == 0
    events = counts.get(timeout=5)
    new = _state(tables)  # the probe committed the corrections: the new state
    for day in DAYS:
        assert new[day]["sales"] != old[day]["sales"]
        assert new[day]["quarantine"] != old[day]["quarantine"]
        assert new[day]["accepted"] == {old_sha[day], new_sha[day]}
    assert events >= MIN_KILL_POINTS, f"only {events} file-system steps to kill at"

    outcomes = {"old": 0, "new": 0}
    for nth in range(1, events + 1):
        _restore(snapshot, tables)
        child = ctx.Process(target=w.die_at_event, args=(config, DAYS, nth))
        child.start()
        child.join(120)
        assert child.exitcode in (-9, 0), f"kill point {nth}: exit code {child.exitcode}"
        state = _state(tables)
        assert state in (old, new), f"kill point {nth} of {events}: log and data disagree"
        outcomes["old" if state == old else "new"] += 1
        assert not list((tables / JOURNAL_FOLDER).glob("*.json")), "a journal was not applied"
    # Killed before the commit point the old state stays; after it, recovery finishes it.
    assert outcomes["old"] and outcomes["new"], outcomes
    print(f"kill sweep: {events} kill points, outcomes {outcomes}")  # shown with pytest -s

    # With nothing killed, the corrections are stored, and running again changes nothing.
    _restore(snapshot, tables)
    w.ingest_sales(config, DAYS, run_id="fixed")
    assert _state(tables) == new
    w.ingest_sales(config, DAYS, run_id="again")
    assert _state(tables) == new


def _log_rows(tables: Path, day: dt.date) -> pl.DataFrame:
    log = PartitionedTable(tables, LOG_TABLE).read()
    return log.filter(pl.col("partition") == day).sort("ingested_at")


@pytest.mark.integration
@pytest.mark.parametrize("correction_stored_first", [True, False])
def test_a_correction_that_lands_while_a_run_works_wins(ctx, tmp_path, correction_stored_first):
    config = _project(tmp_path)
    tables = load_config(config).paths.tables
    day = DAYS[0]
    path = _sales_file(config, day)
    first_sha = content_hash(path)
    have_read, go, outcome = ctx.Event(), ctx.Event(), ctx.Queue()
    slow = ctx.Process(
        target=w.read_then_commit, args=(config, day, "slow", have_read, go, outcome)
    )
    slow.start()
    assert have_read.wait(60)
    correction_sha = _deliver(path, 5)  # lands after the slow run read the first delivery
    if correction_stored_first:  # another run reads and stores the correction meanwhile
        fast = ctx.Process(target=w.ingest_sales, args=(config, [day], "fast"))
        fast.start()
        fast.join(120)
        assert fast.exitcode == 0
    go.set()
    slow.join(120)
    result = outcome.get(timeout=5)
    assert result.startswith("refused") and "newer content" in result, result
    log = _log_rows(tables, day)
    superseded = log.filter(pl.col("status") == "superseded")
    assert superseded["sha256"].to_list() == [first_sha]
    assert superseded["run_id"].to_list() == ["slow"]
    if not correction_stored_first:  # nothing stored yet: the correction's own run comes next
        assert not PartitionedTable(tables, "sales").path(day.isoformat()).exists()
        w.ingest_sales(config, [day], run_id="fast")
    stored = w.sales_units(tables, day)
    delivered = pl.read_csv(path, schema_overrides={"units": pl.Float64})
    assert stored.sort("store_id", "item_id")["units"].to_list() == (
        delivered.sort("store_id", "item_id")["units"].to_list()
    )
    accepted = _log_rows(tables, day).filter(pl.col("status") == "accepted")
    assert accepted["sha256"].to_list() == [correction_sha]


@pytest.mark.integration
def test_racing_runs_never_store_an_older_correction_after_a_newer_one(ctx, tmp_path):
    config = _project(tmp_path)
    tables = load_config(config).paths.tables
    day = DAYS[0]
    path = _sales_file(config, day)
    base = pl.read_csv(path, schema_overrides={"units": pl.Float64})["units"].sum()
    stop, outcomes = ctx.Event(), ctx.Queue()
    runners = [
        ctx.Process(target=w.ingest_until, args=(config, day, f"runner{i}", stop, outcomes))
        for i in range(2)
    ]
    for runner in runners:
        runner.start()
    rows = pl.read_csv(path).height
    version_of = {}
    for version in range(1, 16):  # a stream of corrections, each adding `version` to units
        version_of[_deliver(path, version)] = version
        time.sleep(0.15 + 0.1 * (version % 3))
    time.sleep(1.0)
    stop.set()
    for runner in runners:
        runner.join(120)
        assert runner.exitcode == 0
    counts: dict[str, int] = {}
    for _ in runners:
        for outcome, n in outcomes.get(timeout=5).items():
            counts[outcome] = counts.get(outcome, 0) + n
    assert set(counts) <= {"stored", "superseded"}, counts
    assert counts.get("superseded"), f"the runs never raced: {counts}"

    def stored_version() -> int:
        """Which correction the stored partition holds (version v adds 1 + .. + v)."""
        added = (w.sales_units(tables, day)["units"].sum() - base) / rows
        return next(v for v in range(16) if sum(range(1, v + 1)) == pytest.approx(added))

    # What is stored is the newest content the log accepted (no lost update), and in the
    # order the runs read them the accepted contents never go backwards.
    accepted = _log_rows(tables, day).filter(pl.col("status") == "accepted")
    versions = [version_of.get(sha, 0) for sha in accepted["sha256"]]
    assert versions == sorted(versions), versions
    assert stored_version() == versions[-1]
    w.ingest_sales(config, [day], run_id="final")  # as the landing sensor would
    assert stored_version() == 15
