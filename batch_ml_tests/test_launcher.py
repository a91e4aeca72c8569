"""LocalRunLauncher's health check on a real instance (the repository's dagster.yaml) with real
processes: what run monitoring asks before it fails a STARTED run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus

from batch_ml.harness.services import dagster_home
from batch_ml.launcher import PID_REUSE_MARGIN_S, LocalRunLauncher, process_alive

START_TIMEOUT = 2  # run_monitoring.start_timeout_seconds of the test's instance


@dg.op
def noop() -> None:
    pass


@dg.job
def noop_job():
    noop()


@pytest.fixture
def instance(tmp_path):
    home = dagster_home(tmp_path / "home", run_monitoring={"start_timeout_seconds": START_TIMEOUT})
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def started_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    run = instance.create_run_for_job(noop_job)
    instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
        run_id=run.run_id,
    )
    return instance.get_run_by_id(run.run_id)


def log_worker(instance: dg.DagsterInstance, run: dg.DagsterRun, pid: int) -> None:
    """What a run worker logs first (dagster/_grpc/impl.py)."""
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )


def test_the_instance_uses_the_launcher_with_monitoring_on(instance):
    assert isinstance(instance.run_launcher, LocalRunLauncher)
    assert instance.run_launcher.supports_check_run_worker_health
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_max_resume_run_attempts == 0


@pytest.mark.integration
def test_a_live_worker_is_running_and_a_killed_one_is_gone(instance, sleeper):
    run = started_run(instance)
    log_worker(instance, run, sleeper.pid)
    launcher = instance.run_launcher
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    sleeper.send_signal(signal.SIGKILL)
    # Not reaped yet: a zombie is not a worker either.
    deadline = time.monotonic() + 10
    while process_alive(sleeper.pid, time.time()) and time.monotonic() < deadline:
        time.sleep(0.05)
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.NOT_FOUND
    assert f"run worker process {sleeper.pid} is gone" in health.msg
    sleeper.wait()
    assert launcher.check_run_worker_health(run).status == WorkerStatus.NOT_FOUND


@pytest.mark.integration
def test_a_pid_reused_by_a_newer_process_is_not_the_worker(sleeper):
    started = time.time()
    assert process_alive(sleeper.pid, started + 1)
    logged_long_before = started - PID_REUSE_MARGIN_S - 60
    assert not process_alive(sleeper.pid, logged_long_before), "started after the worker logged"
    # A step of the wall clock smaller than the margin does not make a live worker look gone.
    assert process_alive(sleeper.pid, started - 60)
    assert process_alive(os.getpid(), time.time())


def test_a_run_without_a_logged_pid_gets_the_start_timeout(instance):
    run = started_run(instance)
    launcher = instance.run_launcher
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    time.sleep(START_TIMEOUT + 0.5)
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.NOT_FOUND and "no worker pid logged" in health.msg
