"""The landing sensor driven through a sequence of arrivals, with its real cursor."""

import datetime as dt
import hashlib
import json
import os
import time

import dagster as dg
import polars as pl
import pytest

from batch_ml.config import ConfigError, load_config, parse_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import write_config
from batch_ml.harness.sensors import LandingSensor, age, landing_files
from batch_ml.platform.orchestration import MAX_RUNS_PER_TICK, REQUEST_TAG, load_cursor
from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.resources import TableStore
from batch_ml.platform.sources.arrivals import MAX_RUN_ATTEMPTS, contiguous_ranges
from batch_ml.platform.sources.contract import PROBLEM_SCHEMA, LoadedFile
from batch_ml.platform.sources.records import LOG_TABLE, FileFacts, log_row
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.demo import spec_from_config, write_landing
from batch_ml.products.forecasting.product import PRODUCT

pytestmark = pytest.mark.definitions


def _days(request) -> list[str]:
    if request.partition_key:
        return [request.partition_key]
    first = dt.date.fromisoformat(request.tags[RANGE_START])
    last = dt.date.fromisoformat(request.tags[RANGE_END])
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _sales(cfg, day: str):
    return cfg.paths.landing / "sales" / f"sales_{day}.csv"


def test_contiguous_days_become_bounded_ranges():
    d = dt.date(2025, 1, 1)
    days = [d + dt.timedelta(days=i) for i in (*range(40), 41, 42, 50)]
    assert contiguous_ranges(days, 31) == [
        (d, d + dt.timedelta(days=30)),
        (d + dt.timedelta(days=31), d + dt.timedelta(days=39)),
        (d + dt.timedelta(days=41), d + dt.timedelta(days=42)),
        (d + dt.timedelta(days=50), d + dt.timedelta(days=50)),
    ]


def test_sensor_sequence_new_duplicate_changed_partial_burst_and_bad_names(small_project):
    cfg = small_project
    (cfg.paths.landing / "sales" / "sales_;rm -rf ~.csv").write_text("x")  # a bad name
    age(*landing_files(cfg))
    sensor = LandingSensor(PRODUCT, cfg)

    # New: 130 days become ranges of consecutive days, plus one run for the static sources.
    first = sensor.tick()
    ingest = [r for r in first.run_requests if r.job_name == PRODUCT.daily_job]
    assert [r.job_name for r in first.run_requests].count(PRODUCT.reference_data_job) == 1
    requested = [d for r in ingest for d in _days(r)]
    assert len(requested) == len(set(requested)) == 130
    assert len(ingest) == -(-130 // cfg.backfill.days_per_run)  # ranges of at most 31 days
    assert all(r.tags["batch_ml/trigger"] == "new" for r in ingest)

    # Nothing new: a skip with its reason, no run.
    again = sensor.tick()
    assert (
        again.run_requests in (None, []) and "no new or changed" in again.skip_reason.skip_message
    )

    # Identical re-delivery (same bytes, new mtime): nothing to do.
    day = "2025-02-10"
    path = _sales(cfg, day)
    path.write_bytes(path.read_bytes())
    age(path, seconds=60)
    assert not sensor.tick().run_requests

    # Changed content: that day again, tagged as a change.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # one row fewer: a correction
    age(path, seconds=60)
    changed = sensor.tick().run_requests
    assert [(r.job_name, r.partition_key) for r in changed] == [(PRODUCT.daily_job, day)]
    assert changed[0].tags["batch_ml/trigger"] == "changed"

    # Partial: a file written moments ago waits; a temporary name is ignored altogether.
    busy = _sales(cfg, "2025-05-10")
    busy.write_text(busy.read_text() + busy.read_text().splitlines()[1] + "\n")
    (cfg.paths.landing / "sales" / "sales_2025-05-09.csv.tmp").write_text("half a fi")
    waiting = sensor.tick()
    assert not waiting.run_requests and "settle" in waiting.skip_reason.skip_message
    age(busy, seconds=60)
    assert [r.partition_key for r in sensor.tick().run_requests] == ["2025-05-10"]

    # Burst: 60 separate corrected days become at most MAX_RUNS_PER_TICK runs per tick, and
    # every day is requested exactly once over the following ticks.
    burst = [(dt.date(2025, 1, 1) + dt.timedelta(days=2 * i)).isoformat() for i in range(60)]
    for d in burst:
        p = _sales(cfg, d)
        p.write_bytes(p.read_bytes() + b"\n")  # new bytes, same rows: still a new delivery
        age(p, seconds=60)
    seen = []
    for _ in range(10):
        runs = sensor.tick().run_requests or []
        assert len(runs) <= MAX_RUNS_PER_TICK
        seen += [d for r in runs for d in _days(r)]
    assert sorted(seen) == burst


def test_a_fresh_cursor_does_not_rerequest_what_the_ingestion_log_accepted(small_project):
    """State survives a lost cursor (e.g. the sensor was reset): the ingestion log knows."""
    cfg = small_project
    age(*landing_files(cfg))
    landing = cfg.paths.landing
    tables = TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))
    all_days = sorted(p.stem.removeprefix("sales_") for p in (landing / "sales").glob("*.csv"))
    loaded_days = all_days[:100]
    records = {}
    for source, ext in (("sales", "csv"), ("plans", "parquet")):
        for day in loaded_days:
            path = landing / source / f"{source}_{day}.{ext}"
            if not path.exists():
                continue
            facts = FileFacts.of(
                source, path, landing, path.read_bytes(), dt.date.fromisoformat(day)
            )
            loaded = LoadedFile(pl.DataFrame(), pl.DataFrame(schema=PROBLEM_SCHEMA), 0)
            records[facts.log_key()] = log_row(
                facts, loaded, None, "earlier-run", dt.datetime.now(dt.UTC)
            )
    tables.write(LOG_TABLE, records)

    runs = LandingSensor(PRODUCT, cfg).tick().run_requests
    requested = sorted(d for r in runs if r.job_name == PRODUCT.daily_job for d in _days(r))
    assert requested == all_days[100:]


@pytest.mark.parametrize(
    "name", ["sales_2025-13-01.csv", "sales_2025-01-01.csv.bak", "sales_$(reboot).csv", "x.csv"]
)
def test_bad_names_are_reported_not_read(small_project, name):
    cfg = small_project
    (cfg.paths.landing / "sales" / name).write_text("not read")
    age(*landing_files(cfg))
    result = LandingSensor(PRODUCT, cfg).tick()  # reported in the tick's log, never raised
    days = [d for r in result.run_requests if r.job_name == PRODUCT.daily_job for d in _days(r)]
    assert len(days) == 130  # the valid files still get their runs
    assert not any(name in str(r.tags) for r in result.run_requests)


def _execute(cfg, requests, instance, succeed: bool = True) -> None:
    """Run what the sensor requested, as the daemon would (reference data first). No week is
    trained here: a run of days from the first model week on stores their files and features,
    then fails at the predictions (their week has no gate decision)."""
    defs = build_definitions(cfg)
    for request in sorted(requests, key=lambda r: r.job_name != PRODUCT.reference_data_job):
        job = defs.resolve_job_def(request.job_name)
        result = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            raise_on_error=False,
        )
        failed = {e.step_key for e in result.get_step_failure_events()}
        if not succeed:
            assert not result.success and "predictions" not in failed, (request.tags, failed)
            continue
        days = _days(request) if request.job_name == PRODUCT.daily_job else []
        undecided = any(d >= PRODUCT.first_week(cfg).isoformat() for d in days)
        assert failed == ({"predictions"} if undecided else set()), (request.tags, failed)


def test_requested_runs_store_every_day_once_and_a_correction_replaces_its_day(small_project):
    cfg = small_project
    age(*landing_files(cfg))
    sales = PartitionedTable(cfg.paths.tables, "sales")
    with dg.DagsterInstance.ephemeral() as instance:
        sensor = LandingSensor(PRODUCT, cfg, instance)
        _execute(cfg, sensor.tick().run_requests, instance)
        stored = sales.read()
        assert len(sales.partitions()) == 130  # closed days are stored as empty partitions
        assert stored.select("date", "store_id", "item_id").is_duplicated().sum() == 0
        log = PartitionedTable(cfg.paths.tables, LOG_TABLE).read()
        assert log.filter(pl.col("source") == "sales").height == 130

        day = "2025-03-03"
        path = _sales(cfg, day)
        before = sales.read([day]).height
        path.write_bytes(path.read_bytes())  # identical re-delivery: nothing runs
        age(path, seconds=60)
        assert not sensor.tick().run_requests
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:-1]) + "\n")  # correction: one row fewer
        age(path, seconds=60)
        _execute(cfg, sensor.tick().run_requests, instance)
    assert sales.read([day]).height == before - 1
    assert len(sales.partitions()) == 130
    assert (
        PartitionedTable(cfg.paths.tables, LOG_TABLE)
        .read()
        .filter(pl.col("file") == f"sales/sales_{day}.csv")
        .height
        == 2
    )  # both deliveries are on record


def _worker_killed(cfg, request: dg.RunRequest, instance: dg.DagsterInstance) -> str:
    """The instance's record of the requested run after its worker was SIGKILLed before it
    recorded anything: created with the request's tags, then failed by run monitoring
    (test_run_monitoring.py kills a real worker)."""
    job = build_definitions(cfg).resolve_job_def(request.job_name)
    tags = dict(request.tags)
    if request.partition_key:
        tags["dagster/partition"] = request.partition_key
    run = instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.STARTED)
    instance.report_run_failed(run, "run worker process 4242 is gone")
    return run.run_id


@pytest.fixture
def short_project(tmp_path):
    """20 days: one range run, so a test can execute what the sensor requests quickly."""
    cfg = load_config(write_config(tmp_path, days=20))
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    age(*landing_files(cfg))
    return cfg


def _ingest(requests) -> list[dg.RunRequest]:
    return [r for r in requests or [] if r.job_name == PRODUCT.daily_job]


def test_a_run_whose_worker_died_is_requested_again_until_it_is_stored(short_project):
    cfg = short_project
    with dg.DagsterInstance.ephemeral() as instance:
        sensor = LandingSensor(PRODUCT, cfg, instance)
        first = sensor.tick().run_requests
        (died,) = _ingest(first)
        _execute(cfg, [r for r in first if r is not died], instance)  # the static sources
        dead_run = _worker_killed(cfg, died, instance)

        (retry,) = sensor.tick().run_requests
        assert _days(retry) == _days(died)
        assert retry.tags["batch_ml/trigger"] == "retry"
        assert retry.tags["batch_ml/attempt"] == "2"
        assert retry.tags["batch_ml/sha256"] == died.tags["batch_ml/sha256"]  # the same bytes
        assert retry.tags[REQUEST_TAG] != died.tags[REQUEST_TAG]
        assert any(f"40 file(s) were not recorded: run {dead_run} failed" in m for m in sensor.logs)

        # While the retry's run is queued or running, nothing is requested twice.
        assert not sensor.tick().run_requests
        _execute(cfg, [retry], instance)
        assert not sensor.tick().run_requests
        assert not sensor.tick().run_requests
    assert len(PartitionedTable(cfg.paths.tables, "sales").partitions()) == 20
    log = PartitionedTable(cfg.paths.tables, LOG_TABLE).read()
    assert log.filter(pl.col("source") == "sales")["status"].to_list() == ["accepted"] * 20


def test_attempts_per_content_are_bounded_and_new_content_starts_over(short_project):
    cfg = short_project
    with dg.DagsterInstance.ephemeral() as instance:
        sensor = LandingSensor(PRODUCT, cfg, instance)
        (request,) = _ingest(sensor.tick().run_requests)
        for attempt in range(2, MAX_RUN_ATTEMPTS + 1):
            _worker_killed(cfg, request, instance)
            (request,) = _ingest(sensor.tick().run_requests)
            assert request.tags["batch_ml/attempt"] == str(attempt)
        _worker_killed(cfg, request, instance)
        assert not _ingest(sensor.tick().run_requests)
        assert any(
            m.startswith("WARNING") and f"gave up after {MAX_RUN_ATTEMPTS} run(s)" in m
            for m in sensor.logs
        ), sensor.logs
        assert not _ingest(sensor.tick().run_requests), "a fault that stays does not loop"

        # A new delivery is new content: its own attempts.
        day = "2025-01-05"
        path = _sales(cfg, day)
        path.write_bytes(path.read_bytes() + b"\n")
        age(path, seconds=60)
        (fresh,) = sensor.tick().run_requests
        assert fresh.partition_key == day and fresh.tags["batch_ml/attempt"] == "1"


def test_a_contract_violation_is_not_requested_again(short_project):
    cfg = short_project
    day = "2025-01-07"
    path = _sales(cfg, day)
    header, first, rest = path.read_text().split("\n", 2)
    cells = first.split(",")
    cells[header.split(",").index("units")] = "lots"
    path.write_text("\n".join([header, ",".join(cells), rest]))
    age(path)
    with dg.DagsterInstance.ephemeral() as instance:
        sensor = LandingSensor(PRODUCT, cfg, instance)
        first_tick = sensor.tick().run_requests
        (failing,) = _ingest(first_tick)
        _execute(cfg, [r for r in first_tick if r is not failing], instance)
        _execute(cfg, [failing], instance, succeed=False)
        # The range run stored nothing: its good days are requested again, the bad one not.
        retries = sensor.tick().run_requests
        assert any(
            "1 file(s) break the data contract" in m and f"sales/sales_{day}.csv" in m
            for m in sensor.logs
        ), sensor.logs
        assert {r.tags["batch_ml/trigger"] for r in retries} == {"retry"}
        retried = [d for r in retries for d in _days(r)]
        assert sorted([*retried, day]) == _days(failing)
        _execute(cfg, retries, instance)
        assert not sensor.tick().run_requests
    log = PartitionedTable(cfg.paths.tables, LOG_TABLE).read()
    assert log.filter(pl.col("file") == f"sales/sales_{day}.csv")["status"].to_list() == ["failed"]


def test_a_correction_with_the_same_size_and_mtime_is_requested(short_project):
    cfg = short_project
    sensor = LandingSensor(PRODUCT, cfg)
    sensor.tick()
    day = "2025-01-10"
    path = _sales(cfg, day)
    before = path.stat()
    text = path.read_text()
    last = text.rstrip("\n").rsplit(",", 1)
    digit = last[1][-1]
    corrected = f"{last[0]},{last[1][:-1]}{'1' if digit != '1' else '2'}\n"
    assert len(corrected) == len(text)
    time.sleep(0.05)  # past the kernel's timestamp granularity, so the ctime moves
    path.write_text(corrected)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` leaves it
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    (request,) = sensor.tick().run_requests
    assert request.partition_key == day and request.tags["batch_ml/trigger"] == "changed"


def test_a_cursor_of_the_first_format_still_loads(short_project):
    """The first cursor held {file: [size, mtime_ns, sha256]}: it loads, each file is hashed
    once (inode and ctime unknown), and unchanged files start nothing."""
    cfg = short_project
    landing = cfg.paths.landing
    old = {}
    for p in landing_files(cfg):
        st = p.stat()
        old[f"{p.parent.name}/{p.name}"] = [
            st.st_size,
            st.st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        ]
    sensor = LandingSensor(PRODUCT, cfg)
    sensor.cursor = json.dumps(old)
    result = sensor.tick()
    assert not result.run_requests
    assert any(f"{len(old)} file(s) hashed (0 periodically)" in m for m in sensor.logs)
    files, pending = load_cursor(sensor.cursor)
    assert set(files) == set(old) and not pending
    assert all(s.inode is not None and s.hashed_ns is not None for s in files.values())
    assert not sensor.tick().run_requests
    assert not any("hashed" in m for m in sensor.logs), "nothing to hash on the next tick"
    path = landing / "plans" / "plans_2025-01-03.parquet"
    path.write_bytes(path.read_bytes())  # same bytes, new mtime and ctime: hashed, no run
    age(path, seconds=60)
    assert not sensor.tick().run_requests
    assert any("1 file(s) hashed (0 periodically)" in m for m in sensor.logs)


def test_rehash_seconds_must_be_positive(tmp_path):
    raw = {"calendar": {"start_date": "2025-01-01"}, "ingest": {"rehash_seconds": 0}}
    with pytest.raises(ConfigError, match="ingest.rehash_seconds must be > 0"):
        parse_config(raw, tmp_path)
    assert parse_config({"calendar": raw["calendar"]}, tmp_path).ingest.rehash_seconds == 3600
