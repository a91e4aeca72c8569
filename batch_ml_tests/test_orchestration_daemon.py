"""A partition-range backfill through a real daemon and webserver, driven over GraphQL only.

`dagster-webserver` and `dagster-daemon run` run as two processes on one instance (a copy of the
repository's dagster.yaml: queued runs, at most 2 at a time). An asset backfill of `sales` and
`plans` over 93 days runs as three runs of 31 days (BackfillPolicy.multi_run(31)); the first
and the third chunk each hold a corrupt sales file. A multi-partition run cannot partly succeed
(Dagster #17836), so every sales partition of those two chunks fails and the middle chunk
succeeds. After the files are restored, the backfill re-execution the UI offers ("re-execute
failed and missing", `reexecutePartitionBackfill` with FROM_FAILURE) must materialize the
failed partitions, and only those: the event log then holds exactly one materialization of
every partition.

`demand_features` is left out: it needs the static sources materialized first, and its chunks
wait for the sales chunks of their 56-day lookback, which adds daemon ticks (30 s each) to
both backfills and the file would no longer run in about 4 minutes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARENT_BACKFILL_ID_TAG,
    ROOT_BACKFILL_ID_TAG,
)

from batch_ml.config import load_config
from batch_ml.harness.graphql import (
    BACKFILL,
    BACKFILL_RUNS,
    LAUNCH_BACKFILL,
    PARTITION_STATUSES,
    REEXECUTE_BACKFILL,
    stop_running_sensors,
)
from batch_ml.harness.project import write_config
from batch_ml.harness.services import Webserver, daemon_and_webserver, dagster_home
from batch_ml.products.forecasting.demo import spec_from_config, write_landing

pytestmark = pytest.mark.integration

START = dt.date(2025, 1, 1)
DAYS = 93  # three backfill runs of 31 days
CHUNK = 31  # BackfillPolicy.multi_run(max_partitions_per_run=31) of sales and plans
CORRUPT = (dt.date(2025, 1, 10), dt.date(2025, 3, 20))  # in the first and the third chunk
ASSETS = ("sales", "plans")
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
BACKFILL_TIMEOUT = 240


def days(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(d)).isoformat() for d in range((last - first).days + 1)]


ALL_KEYS = days(START, START + dt.timedelta(DAYS - 1))
CHUNKS = [ALL_KEYS[i : i + CHUNK] for i in range(0, DAYS, CHUNK)]
FAILED_CHUNKS = [c for c in CHUNKS if any(d.isoformat() in c for d in CORRUPT)]
FAILED_KEYS = [k for c in FAILED_CHUNKS for k in c]
GOOD_KEYS = [k for k in ALL_KEYS if k not in FAILED_KEYS]


def corrupt(path: Path) -> bytes:
    """Replace the first data row's units value with `lots`; return the original bytes."""
    original = path.read_bytes()
    header, first, rest = original.decode().split("\n", 2)
    units = header.split(",").index("units")
    cells = first.split(",")
    cells[units] = "lots"
    path.write_text("\n".join([header, ",".join(cells), rest]))
    return original


def wait_for_backfill(web: Webserver, backfill_id: str) -> tuple[dict, float]:
    started = time.monotonic()
    while time.monotonic() - started < BACKFILL_TIMEOUT:
        backfill = web.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in TERMINAL:
            return backfill, time.monotonic() - started
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} not done in {BACKFILL_TIMEOUT} s: {backfill}")


def counts(backfill: dict) -> dict[str, dict]:
    return {
        s["assetKey"]["path"][-1]: {k: v for k, v in s.items() if k.startswith("num")}
        for s in backfill["assetBackfillData"]["assetBackfillStatuses"]
    }


def backfill_runs(web: Webserver, backfill_id: str) -> list[dict]:
    runs = web.graphql(BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]["results"]
    for run in runs:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return runs


def run_ranges(runs: list[dict]) -> dict[tuple[str, str], str]:
    """(range start, range end) -> run status of each run of a backfill."""
    ranges = {
        (
            r["tags"][ASSET_PARTITION_RANGE_START_TAG],
            r["tags"][ASSET_PARTITION_RANGE_END_TAG],
        ): r["status"]
        for r in runs
    }
    assert len(ranges) == len(runs), runs
    return ranges


def partition_statuses(web: Webserver) -> dict[str, dict[str, str]]:
    """asset -> partition key -> MATERIALIZED / FAILED / MATERIALIZING, from the UI's ranges."""
    nodes = web.graphql(PARTITION_STATUSES, {"keys": [{"path": [a]} for a in ASSETS]})
    statuses: dict[str, dict[str, str]] = {}
    for node in nodes["assetNodes"]:
        by_key = statuses.setdefault(node["assetKey"]["path"][-1], {})
        for r in node["assetPartitionStatuses"]["ranges"]:
            first, last = dt.date.fromisoformat(r["startKey"]), dt.date.fromisoformat(r["endKey"])
            by_key.update(dict.fromkeys(days(first, last), r["status"]))
    return statuses


def timeline(name: str, launched_at: float, runs: list[dict], done_at: float) -> dict:
    """Seconds after launch (wall clock) until the first run started, the last run ended and
    the backfill was seen done, and each run's own duration."""
    return {
        f"{name}_first_run_start": min(r["startTime"] for r in runs) - launched_at,
        f"{name}_last_run_end": max(r["endTime"] for r in runs) - launched_at,
        f"{name}_done": done_at - launched_at,
        f"{name}_longest_run": max(r["endTime"] - r["startTime"] for r in runs),
    }


def chunk_ranges(chunks: list[list[str]], status: str) -> dict[tuple[str, str], str]:
    return {(c[0], c[-1]): status for c in chunks}


def test_backfill_with_corrupt_days_then_reexecute_failed_partitions_only(tmp_path, capsys):
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    config = write_config(tmp_path, start=START, days=130)
    cfg = load_config(config)
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    sales_file = {d: cfg.paths.landing / "sales" / f"sales_{d}.csv" for d in CORRUPT}
    originals = {d: corrupt(path) for d, path in sales_file.items()}
    home = dagster_home(tmp_path / "dagster_home")

    with daemon_and_webserver(
        home, config, tmp_path / "logs", before_daemon=stop_running_sensors
    ) as services:
        web = services.webserver
        timings.update(services.startup)
        assert services.daemon.process.pid != services.webserver_process.process.pid

        # 1. The backfill, as the UI's launchpad launches it for a selected range.
        launched, launched_at = time.monotonic(), time.time()
        result = web.graphql(
            LAUNCH_BACKFILL,
            {
                "params": {
                    "assetSelection": [{"path": [a]} for a in ASSETS],
                    "partitionNames": ALL_KEYS,
                    "title": "sales and plans with two corrupt days",
                }
            },
        )["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        first_id = result["backfillId"]
        first, _ = wait_for_backfill(web, first_id)
        first_done_at = time.time()

        # 2. Only the chunks holding a corrupt day failed, whole: a run is all or nothing.
        assert first["isAssetBackfill"]
        assert first["status"] == "COMPLETED_FAILED", first
        first_runs = backfill_runs(web, first_id)
        timings.update(timeline("backfill", launched_at, first_runs, first_done_at))
        assert run_ranges(first_runs) == {
            **chunk_ranges(FAILED_CHUNKS, "FAILURE"),
            **chunk_ranges([c for c in CHUNKS if c not in FAILED_CHUNKS], "SUCCESS"),
        }
        assert all(
            {tuple(a["path"]) for a in r["assetSelection"]} == {(a,) for a in ASSETS}
            for r in first_runs
        ), "sales and plans share a partitioning and a backfill policy: one run per chunk"
        after_first = partition_statuses(web)
        assert {k for k, s in after_first["sales"].items() if s == "MATERIALIZED"} == set(GOOD_KEYS)
        assert {k for k, s in after_first["sales"].items() if s == "FAILED"} == set(FAILED_KEYS)
        # plans is a separate step of the same runs: it succeeds even where sales failed.
        assert {k for k, s in after_first["plans"].items() if s == "MATERIALIZED"} == set(ALL_KEYS)
        first_counts = counts(first)
        assert first_counts == {
            "sales": {
                "numPartitionsTargeted": DAYS,
                "numPartitionsInProgress": 0,
                "numPartitionsMaterialized": len(GOOD_KEYS),
                "numPartitionsFailed": len(FAILED_KEYS),
            },
            "plans": {
                "numPartitionsTargeted": DAYS,
                "numPartitionsInProgress": 0,
                "numPartitionsMaterialized": DAYS,
                "numPartitionsFailed": 0,
            },
        }, first_counts

        # 3. Restore the files and re-execute the failed and missing partitions.
        for d, original in originals.items():
            sales_file[d].write_bytes(original)
        relaunched_at = time.time()
        result = web.graphql(
            REEXECUTE_BACKFILL,
            {"params": {"parentRunId": first_id, "strategy": "FROM_FAILURE"}},
        )["reexecutePartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        retry_id = result["backfillId"]
        retry, _ = wait_for_backfill(web, retry_id)
        retry_done_at = time.time()
        assert retry["status"] == "COMPLETED_SUCCESS", retry
        retry_tags = {t["key"]: t["value"] for t in retry["tags"]}
        assert retry_tags[PARENT_BACKFILL_ID_TAG] == retry_tags[ROOT_BACKFILL_ID_TAG] == first_id
        retry_runs = backfill_runs(web, retry_id)
        timings.update(timeline("reexecution", relaunched_at, retry_runs, retry_done_at))
        assert run_ranges(retry_runs) == chunk_ranges(FAILED_CHUNKS, "SUCCESS")
        assert all([a["path"] for a in r["assetSelection"]] == [["sales"]] for r in retry_runs)
        # The re-execution targets the failed sales partitions only: not plans, although it
        # ran in the failed runs, and not the sales partitions of the chunk that succeeded.
        assert counts(retry) == {
            "sales": {
                "numPartitionsTargeted": len(FAILED_KEYS),
                "numPartitionsInProgress": 0,
                "numPartitionsMaterialized": len(FAILED_KEYS),
                "numPartitionsFailed": 0,
            }
        }
        after_retry = partition_statuses(web)
        for asset in ASSETS:
            assert after_retry[asset] == dict.fromkeys(ALL_KEYS, "MATERIALIZED"), asset
        timings["launch_to_all_materialized"] = time.monotonic() - launched

    # Both services stopped on SIGINT with their code servers; nothing had to be killed.
    for service in services.services:
        assert service.clean_exit, (service.name, service.returncode, service.log.read_text())
    timings["stop"] = max(s.stop_seconds for s in services.services)

    # 4. The instance's event log: each partition materialized exactly once over both
    # backfills; the runs of each backfill cover exactly the expected ranges.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs_of = {
            backfill_id: instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
            for backfill_id in (first_id, retry_id)
        }
        assert {
            (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
            for r in runs_of[first_id]
        } == {(c[0], c[-1]) for c in CHUNKS}
        assert {
            (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
            for r in runs_of[retry_id]
        } == {(c[0], c[-1]) for c in FAILED_CHUNKS}
        assert len(instance.get_runs()) == len(runs_of[first_id]) + len(runs_of[retry_id])
        # Each failed run failed on the sales step only, for its corrupt file.
        for run in (r for r in runs_of[first_id] if r.is_failure):
            failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            assert [e.step_key for e in failures] == ["sales"], run.tags
            text = failures[0].dagster_event.step_failure_data.user_failure_data.description
            start = run.tags[ASSET_PARTITION_RANGE_START_TAG]
            end = run.tags[ASSET_PARTITION_RANGE_END_TAG]
            (day,) = [d for d in CORRUPT if start <= d.isoformat() <= end]
            assert f"sales_{day}.csv breaks the data contract" in text, text
            assert "lots" in text, text
        backfill_of_run = {r.run_id: b for b, runs in runs_of.items() for r in runs}
        materialized: dict[str, Counter] = {}
        for asset in ASSETS:
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
            materialized[asset] = Counter(
                (r.partition_key, backfill_of_run[r.run_id]) for r in records
            )
        assert materialized["sales"] == Counter(
            {(k, first_id): 1 for k in GOOD_KEYS} | {(k, retry_id): 1 for k in FAILED_KEYS}
        )
        # Re-executing failed partitions did not redo what had succeeded (cf. Dagster #20465):
        # plans of the failed chunks had materialized in the failed runs and are not redone.
        assert materialized["plans"] == Counter({(k, first_id): 1 for k in ALL_KEYS})

    timings["total"] = time.monotonic() - t0
    with capsys.disabled():
        print("\nbackfill timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
