"""The run launcher of the local instance (`dagster.yaml`): Dagster's default launcher plus a
worker health check, so that run monitoring can fail a run whose worker process is gone.

The default launcher starts each run worker as a child process of the code server and cannot
say whether it is alive: the code server marks a run failed when its worker dies, but not
when the code server dies with it (the daemon or `dagster dev` killed, a restart, a reboot),
nor for a run executed in a process of its own (`batch-ml demo`) that was killed. Such runs
stayed STARTED forever and held the run queue's slots. Every run worker logs its pid
("Started process for run (pid: N)", or "Executing steps in process (pid: N)" in process);
this launcher reports a run's worker as gone when that process no longer exists.

Only for one machine: the daemon checks pids on its own host, which is where the default
launcher starts the workers (and where this instance's SQLite storage lives). Import nothing
heavy here: every process that opens the instance loads this module.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

# A run's first engine events hold the one with its worker's pid (logged before RUN_START).
_ENGINE_EVENTS_SCANNED = 50
_PROC = Path("/proc")
# A pid is reused only after the kernel's pid range wrapped around: the worker's pid held by a
# process that started this long after the worker logged it is another process.
PID_REUSE_MARGIN_S = 600.0


def worker_of(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, epoch seconds it was logged) of the run's worker process, or None if not logged."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=_ENGINE_EVENTS_SCANNED
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


def _boot_time() -> float:
    for line in (_PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_alive(pid: int, started_by: float) -> bool:
    """Whether process `pid` runs (not a zombie) and had started by `started_by` (epoch s):
    a pid the system gave to a newer process after the worker died is not the worker."""
    if not (_PROC / "self" / "stat").exists():  # no procfs (macOS): existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Fields after "(comm)", which may itself hold spaces: state is field 3, starttime 22.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X", "x"):
        return False
    started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    # The boot time moves with steps of the wall clock (NTP, a resumed VM), so only a
    # process started well after the worker logged its pid is taken for another one.
    return started <= started_by + PID_REUSE_MARGIN_S


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers run monitoring can check (see the module)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = worker_of(self._instance, run.run_id)
        if worker is None:
            # Not logged yet (an in-process run logs its pid just after RUN_START); a run
            # that never logs one is given the start timeout.
            record = self._instance.get_run_record_by_id(run.run_id)
            started = record.start_time if record else None
            waited = time.time() - started if started else 0.0
            if waited < self._instance.run_monitoring_start_timeout_seconds:
                return CheckRunHealthResult(WorkerStatus.RUNNING, "worker pid not logged yet")
            return CheckRunHealthResult(
                WorkerStatus.NOT_FOUND, f"no worker pid logged {waited:.0f} s after the start"
            )
        pid, logged_at = worker
        if process_alive(pid, logged_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {pid} is running")
        return CheckRunHealthResult(
            WorkerStatus.NOT_FOUND,
            f"run worker process {pid} is gone (killed, or its code server or daemon was)",
        )
