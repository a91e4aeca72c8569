"""A run whose worker is killed becomes FAILURE and its re-execution stores the data.

A real `dagster-webserver` and `dagster-daemon run` on an instance made from the repository's
dagster.yaml (run monitoring on, `LocalRunLauncher`), with a poll interval of one second
instead of 30 so the test is short. The daily job's sources and features run over the 130
days of a small project (about 7 s of steps, after the worker's start-up), launched as the UI
launches it.

1. The run worker alone is SIGKILLed while the run is STARTED (the kernel's OOM killer, a
   stray `kill -9`): the code server that started the worker sees it die and fails the run
   (or run monitoring does, if it notices first).
2. The daemon is SIGKILLed with its whole process group while the run is STARTED (a crash,
   a reboot, `dagster dev` killed): no process is left to notice, the run would stay STARTED
   forever and hold a slot of the run queue. A new daemon starts; its run monitoring must
   find the worker gone and fail the run within one poll interval (+ margin).
3. The second run is re-executed from failure (the UI's "Re-execute from failure"): it must
   succeed, and the stored sales, plans, features and ingestion log must be whole.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_ml.config import load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.graphql import LAUNCH_RUN, REEXECUTE_RUN, REPOSITORIES, stop_running_sensors
from batch_ml.harness.project import write_config
from batch_ml.harness.services import Webserver, daemon_and_webserver, dagster_home
from batch_ml.launcher import process_alive, worker_of
from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.sources.records import LOG_TABLE
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.demo import spec_from_config, write_landing
from batch_ml.products.forecasting.product import PRODUCT

pytestmark = pytest.mark.integration

START = dt.date(2025, 1, 1)
DAYS = 130
LAST = START + dt.timedelta(days=DAYS - 1)
INGESTED = ("sales", "plans", "demand_features")
POLL_SECONDS = 1  # run_monitoring.poll_interval_seconds of the test's instance
# Margin over one poll for the monitoring daemon's own query and the test's polling (two
# test files share the two cores in CI).
MARGIN_SECONDS = 10
RUN_TIMEOUT = 180


def launch_ingest_range(web: Webserver) -> str:
    (repo,) = web.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"]
    params = {
        "selector": {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "jobName": PRODUCT.daily_job,
            # No week is trained here: the files and features of the days, not their forecasts.
            "assetSelection": [{"path": [a]} for a in INGESTED],
        },
        "executionMetadata": {
            "tags": [
                {"key": RANGE_START, "value": START.isoformat()},
                {"key": RANGE_END, "value": LAST.isoformat()},
            ]
        },
    }
    result = web.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def wait_for_status(
    instance: dg.DagsterInstance, run_id: str, statuses: set[dg.DagsterRunStatus], timeout: float
) -> tuple[dg.DagsterRunStatus, float]:
    """The run's status once it is one of `statuses`, and the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status = instance.get_run_by_id(run_id).status
        if status in statuses:
            return status, time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} still {status} after {timeout} s, not in {statuses}")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = parent_of(pid)
        if pid == ancestor:
            return True
    return False


def started_worker(instance: dg.DagsterInstance, run_id: str, daemon_pid: int) -> int:
    """Wait until the run is STARTED; return its worker's pid, checked to be a live process
    launched under the daemon (its code server's child)."""
    wait_for_status(instance, run_id, {dg.DagsterRunStatus.STARTED}, RUN_TIMEOUT)
    pid, logged_at = worker_of(instance, run_id)
    assert process_alive(pid, logged_at), pid
    assert descends_from(pid, daemon_pid), (pid, daemon_pid)
    assert pid not in (os.getpid(), daemon_pid)
    return pid


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return " ".join(e.message or "" for e in events)


def test_killed_worker_fails_its_run_and_the_reexecution_stores_the_data(tmp_path, capsys):
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    config = write_config(tmp_path, start=START, days=DAYS)
    cfg = load_config(config)
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    home = dagster_home(tmp_path / "dagster_home", run_monitoring={"poll_interval_seconds": 1})
    # demand_features reads the static sources: load them first, as a user would.
    defs = build_definitions(cfg)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        reference_job = defs.resolve_job_def(PRODUCT.reference_data_job)
        reference = reference_job.execute_in_process(instance=instance)
        assert reference.success

    with (
        daemon_and_webserver(
            home, config, tmp_path / "logs", before_daemon=stop_running_sensors
        ) as services,
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        web = services.webserver
        timings.update(services.startup)
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_poll_interval_seconds == POLL_SECONDS

        # 1. Only the worker dies: its code server fails the run.
        launched = time.monotonic()
        first = launch_ingest_range(web)
        timings["launch_request"] = time.monotonic() - launched
        worker = started_worker(instance, first, services.daemon.process.pid)
        timings["launch_to_started"] = time.monotonic() - launched
        os.kill(worker, signal.SIGKILL)
        status, timings["worker_killed_to_failure"] = wait_for_status(
            instance, first, {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS}, 60
        )
        assert status == dg.DagsterRunStatus.FAILURE, failure_message(instance, first)
        # The code server that started the worker sees it die; run monitoring (polling every
        # second here) may notice first on a busy machine: either names the dead worker.
        engine = instance.all_logs(first, of_type=dg.DagsterEventType.ENGINE_EVENT)
        noticed = [e.message or "" for e in engine] + [failure_message(instance, first)]
        assert any(
            "terminated by signal 9 (SIGKILL)" in m or f"run worker process {worker} is gone" in m
            for m in noticed
        ), noticed

        # 2. The daemon dies with its code server and the worker: only run monitoring, in the
        # next daemon, can fail the run.
        second = launch_ingest_range(web)
        worker = started_worker(instance, second, services.daemon.process.pid)

        def nobody_notices() -> None:
            assert not process_alive(worker, time.time())
            time.sleep(3 * POLL_SECONDS)
            assert instance.get_run_by_id(second).status == dg.DagsterRunStatus.STARTED

        timings["daemon_restart"] = services.crash_daemon(while_down=nobody_notices)
        status, timings["new_daemon_to_failure"] = wait_for_status(
            instance,
            second,
            {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS},
            POLL_SECONDS + MARGIN_SECONDS,
        )
        assert status == dg.DagsterRunStatus.FAILURE
        message = failure_message(instance, second)
        assert f"run worker process {worker} is gone" in message, message

        # 3. Re-execute the second run from its failure: the steps not done run again.
        result = web.graphql(
            REEXECUTE_RUN, {"params": {"parentRunId": second, "strategy": "FROM_FAILURE"}}
        )["launchRunReexecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        retry = result["run"]["runId"]
        status, timings["reexecution"] = wait_for_status(
            instance, retry, {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS}, 180
        )
        assert status == dg.DagsterRunStatus.SUCCESS, failure_message(instance, retry)
        assert instance.get_run_by_id(retry).parent_run_id == second

    # Every day of every source is stored once, as its landing file holds it, and the log
    # has one accepted row per file (re-ingesting the same bytes replaces its own row).
    days = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    landing_rows = {
        d: pl.read_csv(cfg.paths.landing / "sales" / f"sales_{d}.csv").height for d in days
    }
    sales = PartitionedTable(cfg.paths.tables, "sales")
    assert sorted(sales.partitions()) == days
    stored = sales.read()
    assert stored.select("date", "store_id", "item_id").is_duplicated().sum() == 0
    per_day = dict(stored.group_by("date").len().iter_rows())
    assert {d: per_day.get(dt.date.fromisoformat(d), 0) for d in days} == landing_rows
    assert sorted(PartitionedTable(cfg.paths.tables, "demand_features").partitions()) == days
    log = PartitionedTable(cfg.paths.tables, LOG_TABLE).read()
    landing_files = sorted(
        f"{p.parent.name}/{p.name}"
        for source in ("sales", "plans")
        for p in (cfg.paths.landing / source).iterdir()
    )
    daily = log.filter(pl.col("source").is_in(["sales", "plans"]))
    assert sorted(daily["file"]) == landing_files
    assert set(daily["status"]) == {"accepted"}
    timings["total"] = time.monotonic() - t0
    with capsys.disabled():
        print(
            "\nrun monitoring timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
        )
