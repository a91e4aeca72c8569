"""Benchmark: a full-graph backfill through the real daemon, batched vs one run per partition.

The demo project (`batch_ml.harness.project.write_config`: `--stores` x `--items` series
(default 2 x 10), `--days` daily partitions from 2025-01-01, horizon 7, 4 training weeks) with
its landing files. Three parts, each on a fresh data root and a fresh DAGSTER_HOME (a copy of
the repository's dagster.yaml: queued runs, at most 2 at a time):

1. compute floor: `batch_ml.cli.run_pipeline` in this process (one in-process run per stage
   of `catch_up_stages` over its whole range: reference data, the daily assets the models read,
   the weeks, the rest of the daily chain, the report): the work itself with almost no
   orchestration.
2. batched: a real `dagster-webserver` and `dagster-daemon run` on the project's code location
   (workspace.yaml; steps run in the run's process, `in_process_executor`); ONE asset backfill
   of every asset (but champion_overrides, set by people) over all their partitions
   (`launchPartitionBackfill` with
   `assetSelection` and `allPartitions: true`: one backfill spans the daily (one partitions
   definition for a day's whole chain), weekly and unpartitioned assets), honouring the project's
   BackfillPolicy (`[backfill]` of the project: by default multi_run 31 days, 8 weeks for the
   model; `--days-per-run` / `--weeks-per-run` set them).
3. one run per partition: the same graph, the same daemon path, the same kind of backfill,
   with every BackfillPolicy replaced by `BackfillPolicy.multi_run(max_partitions_per_run=1)`
   and the executor set by `--per-partition-executor` (code location
   `benchmarks.backfill:per_partition_defs`, which reads it from the environment variable
   BATCH_ML_BENCH_PER_PARTITION_EXECUTOR; nothing else changes): `multiprocess` (default),
   Dagster's default executor, one subprocess per step - what one run per partition costs a
   user who uses neither batching nor another executor - or `in_process`, the project's
   executor without its batching. It runs on `--per-partition-days` days (starting on a
   Monday in the middle of the year: those days of sales, plans and features, the model weeks
   starting in them, their predictions and accuracy, plus the static sources and the report)
   on the data root of part 1, so every input outside the window exists; the backfill
   re-materializes the window. Its wall time is EXTRAPOLATED to the full graph of `--days`
   days from the number of runs a full-graph backfill with that policy makes (each run group
   scaled by its partition count).

Before the daemon starts, running sensors (the landing sensor and batch_ml_automation_sensor,
both RUNNING by default) are stopped over GraphQL and auto-materialization is paused, so only
the backfill starts runs; the report records which were stopped, their states after the
backfill and any run that did not come from the backfill.

Run: `.venv/bin/python -m benchmarks.backfill [--days N --per-partition-days M]` writes
benchmarks/results/backfill.json and backfill.md (or `--out`). The other executor's
per-partition arm as a second reference, added to that report (its .md regenerated):
`.venv/bin/python -m benchmarks.backfill --skip-batched --per-partition-executor in_process
--add-to benchmarks/results/backfill.json` (its own facts in
backfill_per_partition_in_process.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg

from batch_ml.config import BackfillConfig
from batch_ml.harness.graphql import (
    BACKFILL,
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    PAUSE_AUTOMATION,
    sensor_states,
    stop_running_sensors,
)
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.product import PRODUCT
from benchmarks.event_store import STORAGE, event_store_cost
from benchmarks.facts import git, loadavg, uncommitted, version

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "backfill.json"
START = dt.date(2025, 1, 1)
N_STORES, N_ITEMS = 2, 10  # defaults of --stores / --items
ASSETS = (
    "calendar",
    "products",
    "stores",
    "sales",
    "plans",
    "demand_features",
    "demand_model",
    "model_promotion",
    "predictions",
    "prediction_drift",
    "forecast_accuracy",
    "accuracy_report",
)
# Materialized by a person's config (forecasting_champion_override_job), never by a backfill.
NOT_BACKFILLED = {"champion_overrides"}
WEEKLY = {"demand_model", "model_promotion"}
PER_PARTITION_LOCATION = "batch_ml_one_run_per_partition"
ONE_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
# The executor of the per-partition code location, read from this variable (set by the
# benchmark for the webserver and the daemon, inherited by their code servers and run workers).
EXECUTOR_ENV = "BATCH_ML_BENCH_PER_PARTITION_EXECUTOR"
EXECUTORS = {
    # Dagster's default: one subprocess per step (what a user who sets no executor gets).
    "multiprocess": dg.multiprocess_executor,
    # What this project's code location uses: steps run in the run's process.
    "in_process": dg.in_process_executor,
}
EXECUTOR_LABELS = {
    "multiprocess": "multiprocess executor (Dagster's default)",
    "in_process": "in-process executor (as the project)",
}
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
BACKFILL_DAEMON_INTERVAL_S = 30  # dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS
RUN_QUEUE_DEQUEUE_INTERVAL_S = 5  # QueuedRunCoordinator default dequeue_interval_seconds
SERVICES_START_TIMEOUT_S = 180  # until the webserver serves and the daemons are healthy


# -- the per-partition code location ------------------------------------------------------------


def one_run_per_partition(defs: dg.Definitions, executor: str = "multiprocess") -> dg.Definitions:
    """The same definitions with every BackfillPolicy set to one partition per run, and the
    executor `executor` (a key of EXECUTORS) instead of the project's in-process one."""
    assets = [
        a.with_attributes(backfill_policy=ONE_PER_RUN)
        if isinstance(a, dg.AssetsDefinition) and a.backfill_policy is not None
        else a
        for a in defs.assets or []
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources=defs.resources,
        executor=EXECUTORS[executor],
    )


@dg.definitions
def per_partition_defs() -> dg.Definitions:
    """Code location of part 3 (loaded by the webserver, the daemon and every run worker);
    its executor is named by the environment variable EXECUTOR_ENV (default multiprocess)."""
    from batch_ml.config import load_config
    from batch_ml.definitions import build_definitions

    executor = os.environ.get(EXECUTOR_ENV, "multiprocess")
    if executor not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={executor!r}: expected one of {sorted(EXECUTORS)}")
    return one_run_per_partition(build_definitions(load_config()), executor)


def quiet_sensors_and_automation(web) -> list[str]:
    """Stop every running sensor (as in the UI: the landing sensor and the automation sensor
    batch_ml_automation_sensor, both RUNNING by default) and pause auto-materialization, before
    the daemon's first tick: only the backfill may start runs. The sensors it stopped."""
    stopped = stop_running_sensors(web)
    web.graphql(PAUSE_AUTOMATION)
    still_running = [name for name, status in sensor_states(web).items() if status != "STOPPED"]
    if still_running:
        raise RuntimeError(f"sensors still running after stopping them: {still_running}")
    return stopped


# -- measurement helpers --------------------------------------------------------------------------


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def new_project(
    folder: Path,
    days: int,
    stores: int = N_STORES,
    items: int = N_ITEMS,
    backfill: dict[str, int] | None = None,
) -> tuple[Path, object, Path]:
    """A demo project config in `folder` with its landing files, and a fresh DAGSTER_HOME.
    `backfill`: the project's `[backfill]` settings that differ from the defaults."""
    from batch_ml.config import load_config
    from batch_ml.harness.project import write_config
    from batch_ml.harness.services import dagster_home
    from batch_ml.products.forecasting.demo import spec_from_config, write_landing

    folder.mkdir(parents=True)
    config = write_config(
        folder,
        start=START,
        days=days,
        n_stores=stores,
        n_items=items,
        sections={"backfill": backfill} if backfill else None,
    )
    cfg = load_config(config)
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    return config, cfg, dagster_home(folder / "dagster_home")


def floor_event_store(floor: dict) -> str:
    """The floor's seconds in Dagster's event log storage (reports before it was recorded:
    nothing)."""
    ev = floor.get("event_store")
    if not ev:
        return ""
    top = sorted(ev["by_type"].items(), key=lambda kv: -kv[1][1])[:3]
    return (
        f" Of the floor's {fmt_s(floor['seconds'])}, {fmt_s(ev['seconds'])} went to storing its "
        f"{ev['events']:,} run events in the instance's SQLite event log ({STORAGE}); "
        + ", ".join(f"{k} {n:,} in {s:.0f} s" for k, (n, s) in top)
        + "."
    )


def batched_chunks(params: dict) -> tuple[int, int]:
    """Days and weeks per run of the batched arm; reports written before they were recorded
    ran with the project defaults."""
    default = BackfillConfig()
    return (
        params.get("batched_days_per_run", default.days_per_run),
        params.get("batched_weeks_per_run", default.weeks_per_run),
    )


def partition_counts(cfg) -> dict[str, int | None]:
    """asset -> number of partitions (None: unpartitioned) of the whole graph."""
    from batch_ml.definitions import build_definitions

    graph = build_definitions(cfg).resolve_asset_graph()
    defined = {k.to_user_string() for k in graph.get_all_asset_keys()} - NOT_BACKFILLED
    if defined != set(ASSETS):
        raise SystemExit(f"ASSETS must be every backfilled asset: {sorted(defined ^ set(ASSETS))}")
    counts = {}
    for name in ASSETS:
        pdef = graph.get(dg.AssetKey(name)).partitions_def
        counts[name] = None if pdef is None else len(pdef.get_partition_keys())
    return counts


def window_selection(cfg, days: int) -> tuple[list[dict], dict[str, int | None]]:
    """partitionsByAssets for `days` days starting on a Monday mid-period, and the number of
    partitions each asset gets."""
    end = cfg.end_date - dt.timedelta(days=1)
    middle = START + dt.timedelta(days=(end - START).days // 2)
    # Days from the first model week on have a model (earlier forecasts are stored empty).
    first = max(middle, PRODUCT.first_week(cfg) + dt.timedelta(days=1))
    first += dt.timedelta(days=(7 - first.weekday()) % 7)
    last = first + dt.timedelta(days=days - 1)
    if last > end:
        raise SystemExit(f"the per-partition window {first}..{last} ends after {end}")
    mondays = [first + dt.timedelta(weeks=w) for w in range((days + 6) // 7)]
    mondays = [m for m in mondays if m <= last]
    ranges = {
        "sales": (first, last),
        "plans": (first, last),
        "demand_features": (first, last),
        "demand_model": (mondays[0], mondays[-1]),
        "model_promotion": (mondays[0], mondays[-1]),
        "predictions": (first, last),
        "prediction_drift": (first, last),
        "forecast_accuracy": (first, last),
    }
    selection, counts = [], {}
    for name in ASSETS:
        entry: dict = {"assetKey": {"path": [name]}}
        if name in ranges:
            a, b = ranges[name]
            entry["partitions"] = {"range": {"start": a.isoformat(), "end": b.isoformat()}}
            counts[name] = len(mondays) if name in WEEKLY else days
        else:
            counts[name] = None
        selection.append(entry)
    return selection, counts


def batched_selection() -> dict:
    """The whole graph in one asset backfill: every partition of every asset."""
    return {"assetSelection": [{"path": [a]} for a in ASSETS], "allPartitions": True}


def wait_for_backfill(web, backfill_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last_log = 0.0
    while time.monotonic() < deadline:
        backfill = web.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill.get("status") in TERMINAL:
            return backfill
        if time.monotonic() - last_log > 60:
            log(f"  backfill {backfill_id}: {backfill.get('status')}")
            last_log = time.monotonic()
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} not done within {timeout:.0f} s")


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, current = 0.0, None
    for a, b in sorted(intervals):
        if current is None or a > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [a, b]
        else:
            current[1] = max(current[1], b)
    if current is not None:
        total += current[1] - current[0]
    return total


STEP_EVENTS = {
    dg.DagsterEventType.STEP_WORKER_STARTING,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def step_times(entries) -> dict:
    """A run's step phase from its event log: first step subprocess launched
    (STEP_WORKER_STARTING; the multiprocess executor only) or first step started, and last
    step done (wall clock), and summed over the steps (which may overlap): subprocess start-up
    (first STEP_WORKER_STARTING -> first STEP_START) and execution (first STEP_START -> last
    success/failure, retries included); how many step subprocesses were launched."""
    spawn: dict[str, float] = {}
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    for e in entries:
        kind, key = e.dagster_event.event_type, e.step_key
        if kind == dg.DagsterEventType.STEP_WORKER_STARTING:
            spawn.setdefault(key, e.timestamp)
        elif kind == dg.DagsterEventType.STEP_START:
            start.setdefault(key, e.timestamp)
        else:
            end[key] = e.timestamp
    return {
        "steps_first": min([*spawn.values(), *start.values()], default=None),
        "steps_last": max(end.values(), default=None),
        "step_spawn_seconds": round(sum(start[k] - spawn[k] for k in start if k in spawn), 2),
        "step_seconds": round(sum(end[k] - start[k] for k in end if k in start), 2),
        "step_subprocesses": len(spawn),
    }


def run_facts(home: Path, backfill_id: str) -> tuple[list[dict], int, int]:
    """Each run of the backfill from the instance's run storage and event log (created =
    queued by the backfill daemon, launched = RUN_STARTING by the queue, started = RUN_START
    in the run worker, ended = success/failure); all runs and max_concurrent_runs."""
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        runs = []
        for record in records:
            run = record.dagster_run
            starting = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING)
            steps = step_times(instance.all_logs(run.run_id, of_type=STEP_EVENTS))
            runs.append(
                {
                    "run_id": run.run_id,
                    "status": run.status.value,
                    "assets": sorted(k.to_user_string() for k in run.asset_selection or ()),
                    "partition": run.tags.get("dagster/partition"),
                    "range": [
                        run.tags.get("dagster/asset_partition_range_start"),
                        run.tags.get("dagster/asset_partition_range_end"),
                    ],
                    "created": record.create_timestamp.timestamp(),
                    "launched": starting[0].timestamp if starting else None,
                    "started": record.start_time,
                    "ended": record.end_time,
                    **steps,
                }
            )
        all_runs = instance.get_runs_count()
        limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    return sorted(runs, key=lambda r: r["created"]), all_runs, limit


def summarize_runs(runs: list[dict], launched_at: float, done_at: float) -> dict:
    durations = [r["ended"] - r["started"] for r in runs]
    slots = [r["ended"] - (r["launched"] or r["started"]) for r in runs]
    startup = [r["started"] - r["launched"] for r in runs if r["launched"]]
    queued = [(r["launched"] or r["started"]) - r["created"] for r in runs]
    waves: list[list[str]] = []
    previous = None
    for r in runs:  # runs created within 10 s of each other: one backfill-daemon iteration
        if previous is None or r["created"] - previous > 10:
            waves.append([])
        waves[-1].append(" + ".join(r["assets"]))
        previous = r["created"]
    busy = union_seconds([(r["launched"] or r["started"], r["ended"]) for r in runs])
    groups = Counter(" + ".join(r["assets"]) for r in runs)
    return {
        "runs": len(runs),
        "run_statuses": dict(Counter(r["status"] for r in runs)),
        "runs_by_asset_group": dict(groups),
        "submission_waves": len(waves),
        "runs_by_wave": waves,
        "sum_run_seconds": round(sum(durations), 1),
        "sum_slot_seconds": round(sum(slots), 1),
        "sum_run_startup_seconds": round(sum(startup), 1),
        "sum_before_steps_seconds": round(sum(r["steps_first"] - r["started"] for r in runs), 1),
        "sum_step_phase_seconds": round(sum(r["steps_last"] - r["steps_first"] for r in runs), 1),
        "sum_after_steps_seconds": round(sum(r["ended"] - r["steps_last"] for r in runs), 1),
        "sum_step_seconds": round(sum(r["step_seconds"] for r in runs), 1),
        "sum_step_spawn_seconds": round(sum(r["step_spawn_seconds"] for r in runs), 1),
        # 0 under the in-process executor: the check that each arm ran the executor it names.
        "runs_with_step_subprocesses": sum(1 for r in runs if r["step_subprocesses"]),
        "step_subprocesses": sum(r["step_subprocesses"] for r in runs),
        "mean_run_seconds": round(statistics.mean(durations), 2),
        "mean_slot_seconds": round(statistics.mean(slots), 2),
        "median_run_startup_seconds": round(statistics.median(startup), 2) if startup else None,
        "median_queued_seconds": round(statistics.median(queued), 2),
        "first_run_created_after_launch": round(runs[0]["created"] - launched_at, 1),
        "last_run_end_to_done": round(done_at - max(r["ended"] for r in runs), 1),
        "seconds_with_a_run_in_flight": round(busy, 1),
        "seconds_with_no_run_in_flight": round(done_at - launched_at - busy, 1),
    }


def run_backfill(
    name: str,
    folder: Path,
    home: Path,
    config: Path,
    workspace: Path,
    params: dict,
    timeout: float,
    prior_runs: int = 0,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Start the services, launch one backfill, wait for it, stop the services; the facts."""
    from batch_ml.harness.services import daemon_and_webserver

    load_start = loadavg()
    stopped_sensors: list[str] = []
    log_dir = folder / f"logs_{name}"
    log(f"{name}: service logs in {log_dir}")
    with daemon_and_webserver(
        home,
        config,
        log_dir,
        before_daemon=lambda web: stopped_sensors.extend(quiet_sensors_and_automation(web)),
        timeout=SERVICES_START_TIMEOUT_S,
        workspace=workspace,
        extra_env=extra_env,
    ) as services:
        web = services.webserver
        log(f"{name}: services up {services.startup}; launching the backfill")
        launched_at = time.time()
        result = web.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"{name}: launch failed: {result}")
        backfill_id = result["backfillId"]
        done = wait_for_backfill(web, backfill_id, timeout)
        seen_done_at = time.time()
        detail = web.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        sensors_after = sensor_states(web)
        startup = dict(services.startup)
    statuses = {}
    for s in detail["assetBackfillData"]["assetBackfillStatuses"]:
        statuses[s["assetKey"]["path"][-1]] = {k: v for k, v in s.items() if k != "assetKey"}
    runs, all_runs, max_runs = run_facts(home, backfill_id)
    # The daemon's own timestamps: backfill created -> backfill marked done.
    wall = done["endTimestamp"] - done["timestamp"]
    facts = {
        "backfill_id": backfill_id,
        "status": done["status"],
        "wall_seconds": round(wall, 1),
        "launch_to_seen_done_seconds": round(seen_done_at - launched_at, 1),
        **summarize_runs(runs, done["timestamp"], done["endTimestamp"]),
        "runs_in_instance_not_from_this_backfill": all_runs - len(runs) - prior_runs,
        "sensors_stopped_before_daemon": stopped_sensors,
        "sensor_states_after_backfill": sensors_after,
        "max_concurrent_runs": max_runs,
        "asset_statuses": statuses,
        "services_startup_seconds": {k: round(v, 1) for k, v in startup.items()},
        "loadavg_at_start": load_start,
        "loadavg_at_end": loadavg(),
        "runs_detail": runs,
    }
    log(
        f"{name}: {facts['status']} in {facts['wall_seconds']} s, {facts['runs']} runs "
        f"({facts['submission_waves']} waves), runs summed {facts['sum_run_seconds']} s; "
        f"stopped sensors {stopped_sensors}; other runs "
        f"{facts['runs_in_instance_not_from_this_backfill']}; runs with step subprocesses "
        f"{facts['runs_with_step_subprocesses']}"
    )
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    if failed:
        log(
            f"{name}: {len(failed)} runs did not succeed: "
            + ", ".join(
                f"{r['run_id']} {r['assets']} {r['partition'] or r['range']}" for r in failed
            )
            + f"; their event and compute logs are under DAGSTER_HOME {home}, the services' "
            f"logs in {log_dir}"
        )
    return facts


# -- extrapolation --------------------------------------------------------------------------------


def extrapolate(measured: dict, window_counts: dict, full_counts: dict) -> dict:
    """Runs and wall time of a one-run-per-partition backfill of the full graph.

    Runs: each group of assets that ran together scales with its partitions (full / window),
    unpartitioned groups stay. Wall, from high to low: (a) linear: measured wall per run x
    runs (also scales the waits for daemon ticks, which a full backfill hides behind a full
    queue); (b) busy throughput: measured seconds with a run in flight per run x runs, plus
    the measured seconds with none in flight; (c) saturated queue: the runs' summed slot time
    (RUN_STARTING -> end) over max_concurrent_runs plus the seconds with no run in flight -
    it assumes a slot is refilled the moment it frees (the queue dequeues every 5 s), so it
    understates, and the ratio computed from it is conservative."""
    runs_by_group: dict[str, float] = defaultdict(float)
    slot_by_group: dict[str, list[float]] = defaultdict(list)
    for r in measured["runs_detail"]:
        group = " + ".join(r["assets"])
        counts = [window_counts[a] for a in r["assets"] if window_counts[a]]
        scale = full_counts[r["assets"][0]] / counts[0] if counts else 1.0
        runs_by_group[group] += scale
        slot_by_group[group].append(r["ended"] - (r["launched"] or r["started"]))
    runs_full = sum(runs_by_group.values())
    slot_full = sum(statistics.mean(slot_by_group[g]) * n for g, n in runs_by_group.items())
    idle = measured["seconds_with_no_run_in_flight"]
    linear = measured["wall_seconds"] / measured["runs"] * runs_full
    saturated = slot_full / measured["max_concurrent_runs"] + idle
    busy = measured["seconds_with_a_run_in_flight"] / measured["runs"] * runs_full + idle
    return {
        "runs": round(runs_full),
        "runs_by_asset_group": {g: round(n) for g, n in runs_by_group.items()},
        "summed_slot_seconds": round(slot_full, 1),
        "wall_seconds_linear": round(linear, 1),
        "wall_seconds_saturated_queue": round(saturated, 1),
        "wall_seconds_busy_throughput": round(busy, 1),
    }


# -- report ---------------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds:,.0f} s ({seconds / 3600:.2f} h)"
    if seconds >= 120:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.1f} s"


def met(ratio: float) -> str:
    return "met" if ratio >= 20 else "NOT met"


def arm_label(executor: str, upper: bool = False) -> str:
    return f"{'O' if upper else 'o'}ne run per partition, {EXECUTOR_LABELS[executor]}"


def markdown(report: dict) -> str:
    p, m = report["params"], report["machine"]
    b, f = report["batched"], report["compute_floor"]
    arms = [report["per_partition"][e] for e in EXECUTORS if e in report["per_partition"]]
    lines = [
        "# Full-graph backfill through the daemon: batched vs one run per partition",
        "",
        f"`{report['command']}` at {report['created_utc']} (git {report['git']['head'][:12]}"
        + (
            ", uncommitted changes under batch_ml/"
            if report["git"]["batch_ml_dirty"] or report["git"].get("batch_ml_dirty_at_end")
            else ""
        )
        + f"), {report['total_seconds']:.0f} s in all"
        + "".join(
            f"; `{a['command']}` at {a['created_utc']} (git {a['git_head'][:12]}"
            + (", uncommitted changes under batch_ml/" if a["batch_ml_dirty"] else "")
            + f"), {a['total_seconds']:.0f} s"
            for a in arms
            if a.get("separate_run")
        )
        + ".",
        f"Machine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". Load average (1/5/15 min) {m['loadavg_at_start']} at start, "
        f"{m['loadavg_at_end']} at end (a shared machine: other test suites may run at the "
        "same time; the load includes the benchmark's own processes).",
        "",
        f"Data: demo project, {p['stores']} stores x {p['items']} items "
        f"({p['stores'] * p['items']} series), {p['days']} daily partitions from {p['start']}, "
        f"horizon {p['horizon']}, first model week {p['first_model_week']}. Graph partitions: "
        + ", ".join(f"{a} {n if n is not None else 'unpartitioned'}" for a, n in p["full"].items())
        + ".",
        f"Instance: dagster.yaml of the repository (queued runs, max_concurrent_runs "
        f"{b['max_concurrent_runs']}); backfill daemon iteration every "
        f"{BACKFILL_DAEMON_INTERVAL_S} s, run queue dequeue every {RUN_QUEUE_DEQUEUE_INTERVAL_S} s "
        "(Dagster defaults). Sensors stopped and auto-materialization paused before the daemon "
        "started: only the backfills started runs (see Findings).",
        "",
        "Executors: the **batched** arm runs the project's code location, whose runs execute "
        "their steps in the run's process (`executor=dg.in_process_executor`). The "
        "**one-run-per-partition** arm is measured twice: with Dagster's default "
        "**multiprocess** executor (one subprocess per step: what one run per partition costs a "
        "user who neither batches nor changes the executor) and with the **in-process** "
        "executor (the project's executor, only the batching taken away).",
        "",
        f"Load average (1 min) during the batched backfill {b['loadavg_at_start'][0]} -> "
        f"{b['loadavg_at_end'][0]}"
        + "".join(
            f", during the per-partition one with the {a['executor'].replace('_', '-')} "
            f"executor {a['measured']['loadavg_at_start'][0]} -> "
            f"{a['measured']['loadavg_at_end'][0]}"
            for a in arms
        )
        + " (on 2 cores, run and step start-up slow down markedly under load).",
        "",
        "## Result",
        "",
        "| | wall (backfill created -> completed) | runs | runs summed (start->end) "
        "| no run in flight |",
        "|---|---:|---:|---:|---:|",
        f"| batched (in-process executor), {p['days']} days, measured "
        f"| **{fmt_s(b['wall_seconds'])}** | {b['runs']} "
        f"| {fmt_s(b['sum_run_seconds'])} | {fmt_s(b['seconds_with_no_run_in_flight'])} |",
    ]
    for a in arms:
        pp, x = a["measured"], a["extrapolated"]
        label = arm_label(a["executor"])
        lines += [
            f"| {label}, {a['per_partition_days']} days, measured "
            f"| {fmt_s(pp['wall_seconds'])} | {pp['runs']} | {fmt_s(pp['sum_run_seconds'])} "
            f"| {fmt_s(pp['seconds_with_no_run_in_flight'])} |",
            f"| {label}, {p['days']} days, **extrapolated** (saturated queue) "
            f"| **{fmt_s(x['wall_seconds_saturated_queue'])}** | {x['runs']} | | |",
            f"| {label}, {p['days']} days, extrapolated (busy throughput) "
            f"| {fmt_s(x['wall_seconds_busy_throughput'])} | {x['runs']} | | |",
            f"| {label}, {p['days']} days, extrapolated (linear per run) "
            f"| {fmt_s(x['wall_seconds_linear'])} | {x['runs']} | | |",
        ]
    lines += [
        f"| compute floor: `run_pipeline` in-process, {p['days']} days "
        f"| {fmt_s(f['seconds'])} | {f['runs']} | | |",
        "",
    ]
    for a in arms:
        r = a["ratios"]
        lines += [
            f"- **Ratio vs {arm_label(a['executor'])}: {r['saturated_queue']:.1f}x** "
            f"(extrapolated {fmt_s(a['extrapolated']['wall_seconds_saturated_queue'])} / "
            f"batched {fmt_s(b['wall_seconds'])}) with the saturated-queue extrapolation (the "
            f"lowest, conservative one: the headline), {r['busy_throughput']:.1f}x with the "
            f"busy-throughput one, {r['linear']:.1f}x with the linear one. Target at least 20x "
            f"(conservative): **{met(r['saturated_queue'])}**.",
        ]
    days_per_run, weeks_per_run = batched_chunks(p)
    lines += [
        f"- Batched wall over the compute floor: {b['wall_seconds'] / f['seconds']:.1f}x.",
        "",
        "## How each was measured",
        "",
        "- **Batched**: one `launchPartitionBackfill` of every asset but champion_overrides "
        "with `allPartitions: "
        "true` (a single asset backfill spans the daily, weekly and unpartitioned assets; "
        "every daily asset shares one partitions definition), with the project's BackfillPolicy "
        f"(`[backfill]` days_per_run {days_per_run}, weeks_per_run {weeks_per_run}: multi_run "
        "of that many days, model weeks) and code location (workspace.yaml, in-process "
        f"executor: {b['runs_with_step_subprocesses']} of its runs launched a step subprocess). "
        f"Status {b['status']}. Runs by asset group: "
        + "; ".join(f"{g}: {n}" for g, n in b["runs_by_asset_group"].items())
        + ".",
    ]
    for a in arms:
        pp = a["measured"]
        lines.append(
            f"- **{arm_label(a['executor'], upper=True)}**: the same graph in code location "
            "`benchmarks.backfill:per_partition_defs`, identical except every BackfillPolicy is "
            "`multi_run(max_partitions_per_run=1)` and the executor is "
            f"`dg.{a['executor']}_executor` (`{EXECUTOR_ENV}={a['executor']}` in the webserver's "
            f"and the daemon's environment; {pp['runs_with_step_subprocesses']} of "
            f"{pp['runs']} runs launched step subprocesses, {pp['step_subprocesses']} in all), "
            "launched the same way as ONE asset backfill (`partitionsByAssets`) over "
            f"{a['per_partition_days']} days {a['window'][0]}..{a['window'][1]} "
            "(every asset but champion_overrides: "
            "those days, the model weeks starting in them, the static sources and the report), "
            "on the data root of a compute-floor run so every input outside the window exists. "
            f"Status {pp['status']}. Runs by asset group: "
            + "; ".join(f"{g}: {n}" for g, n in pp["runs_by_asset_group"].items())
            + "."
        )
    lines += [
        "- Asset backfills were used rather than job backfills (which also make one run per "
        "partition, Dagster #17665) because no job spans the graph's daily and weekly "
        "partitionings (the weekly models sit inside the daily chain): job backfills would "
        "need one backfill per stage, started by hand in order.",
        "- **Extrapolation** to the full graph (not measured): every asset group's runs scale "
        "with its partition count (full graph / window). Saturated queue: the runs' summed "
        "slot time (RUN_STARTING -> end, mean per group from the measurement) over the "
        "concurrent runs, plus the measured seconds with no run in flight; it leaves out the "
        "up-to-5 s queue dequeue gap after each run, so it understates the per-partition time. "
        "Busy throughput: measured seconds with a run in flight per run x runs, plus the same "
        "idle seconds. Linear: measured wall per run x runs (it also scales the waits for "
        "daemon ticks, which the full backfill would hide behind a full queue: an upper "
        "estimate).",
    ]
    for a in arms:
        pp, x = a["measured"], a["extrapolated"]
        lines.append(
            f"  - {a['executor'].replace('_', '-')}: {x['runs']} runs ("
            + "; ".join(f"{g}: {n}" for g, n in x["runs_by_asset_group"].items())
            + f"); summed slot time {fmt_s(x['summed_slot_seconds'])} over "
            f"{pp['max_concurrent_runs']} concurrent runs, plus "
            f"{pp['seconds_with_no_run_in_flight']:.0f} s with no run in flight."
        )
    lines += [
        "- **Compute floor**: `batch_ml.cli.run_pipeline` on a fresh data root and instance, in "
        f"this process ({len(f['stage_seconds'])} in-process runs, one per stage over its whole "
        "range): "
        + ", ".join(f"{k} {v} s" for k, v in f["stage_seconds"].items())
        + "."
        + floor_event_store(f),
        "",
        "## What limits each",
        "",
        "Where the runs' time went, in seconds summed over the runs. A run's slot (RUN_STARTING "
        f"-> end: it holds one of the {b['max_concurrent_runs']} run slots) = process start-up "
        "(-> RUN_START: a new Python process loads the code location) + until the first step "
        "starts + the step phase (first step subprocess launched under the multiprocess "
        "executor, first step started under the in-process one -> last step done) + after the "
        "last step. The last two columns sum over steps, which may overlap within a run; step "
        "subprocess start-up is 0 under the in-process executor.",
        "",
        "| | runs | slot | process start-up | before steps | step phase | after steps "
        "| step subprocess start-up | step execution |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {label} | {a['runs']} | {a['sum_slot_seconds']:,.0f} "
            f"| {a['sum_run_startup_seconds']:,.0f} | {a['sum_before_steps_seconds']:,.0f} "
            f"| {a['sum_step_phase_seconds']:,.0f} | {a['sum_after_steps_seconds']:,.0f} "
            f"| {a['sum_step_spawn_seconds']:,.0f} | {a['sum_step_seconds']:,.0f} |"
            for label, a in (
                (f"batched (in-process executor), {p['days']} days", b),
                *(
                    (
                        f"{arm_label(arm['executor'])}, {arm['per_partition_days']} days",
                        arm["measured"],
                    )
                    for arm in arms
                ),
            )
        ),
        "",
        f"- Batched: {b['runs']} runs in {b['submission_waves']} submission waves (backfill "
        f"daemon iterations that requested runs: a stage's runs are requested only on the "
        f"first {BACKFILL_DAEMON_INTERVAL_S}-s iteration after what they read is done). A run "
        f"was in flight {fmt_s(b['seconds_with_a_run_in_flight'])} of the "
        f"{fmt_s(b['wall_seconds'])}; for {fmt_s(b['seconds_with_no_run_in_flight'])} nothing "
        f"ran, waiting for the daemon (first run created {b['first_run_created_after_launch']} "
        f"s after the launch; backfill marked done {b['last_run_end_to_done']} s after its last "
        f"run). Median run start-up {b['median_run_startup_seconds']} s; the steps themselves "
        f"ran {fmt_s(b['sum_step_seconds'])} against the in-process floor of "
        f"{fmt_s(f['seconds'])}."
        + (
            " The waves: "
            + "; ".join(
                f"{k}. {', '.join(groups)}" for k, groups in enumerate(b["runs_by_wave"], 1)
            )
            + "."
            if "runs_by_wave" in b  # reports before it was recorded: not there
            else ""
        ),
    ]
    for a in arms:
        pp = a["measured"]
        lines.append(
            f"- {arm_label(a['executor'], upper=True)}: {pp['runs']} runs, mean slot "
            f"{pp['mean_slot_seconds']} s per run (median start-up "
            f"{pp['median_run_startup_seconds']} s, step subprocess start-up "
            f"{pp['sum_step_spawn_seconds'] / pp['runs']:.2f} s per run) for "
            f"{pp['sum_step_seconds'] / pp['runs']:.2f} s of step execution per run; median "
            f"{pp['median_queued_seconds']} s queued"
            + (
                ": the run queue, not the daemon tick, sets the pace "
                f"({pp['max_concurrent_runs']} runs at a time x start-up per run)."
                if pp["median_queued_seconds"] > pp["mean_slot_seconds"]
                else f" (less than a run's slot: the {BACKFILL_DAEMON_INTERVAL_S}-s backfill "
                "daemon iterations, not the run queue, set the pace in this short window)."
            )
        )
    lines += [
        "",
        "## Findings",
        "",
        "- Sensors: the code location's sensors are RUNNING by default (the landing sensor and "
        "the automation sensor `batch_ml_automation_sensor`); each arm stopped them over "
        "GraphQL before the daemon's first tick ("
        + "; ".join(
            f"{label}: {', '.join(facts['sensors_stopped_before_daemon']) or 'none running'}"
            for label, facts in (
                ("batched", b),
                *((a["executor"].replace("_", "-"), a["measured"]) for a in arms),
            )
        )
        + "). After each backfill every sensor was "
        + (
            "still STOPPED"
            if all(
                s == "STOPPED"
                for facts in (b, *(a["measured"] for a in arms))
                for s in facts["sensor_states_after_backfill"].values()
            )
            else "NOT all STOPPED (see backfill.json)"
        )
        + ", and the instances held "
        + ", ".join(
            f"{facts['runs_in_instance_not_from_this_backfill']} ({label})"
            for label, facts in (
                ("batched", b),
                *((a["executor"].replace("_", "-"), a["measured"]) for a in arms),
            )
        )
        + " runs besides the backfill's (and the compute floor's): no automation or sensor run.",
        "- Every partition of every asset is backfilled (`allPartitions: true`; the daily "
        "assets share one partitions definition from the first day, the forecasts of days "
        f"before the first model week stored empty): {b['status']}.",
        "",
        "Raw per-run timestamps are in backfill.json (`runs_detail`).",
    ]
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------------


def measure_per_partition(args, tmp: Path, floor_config, floor_cfg, floor_home, floor_runs):
    """Part 3 on the compute floor's root: the facts and the extrapolation."""
    workspace = tmp / "per_partition_workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: benchmarks.backfill\n"
        "      attribute: per_partition_defs\n"
        f"      working_directory: {REPO}\n"
        f"      location_name: {PER_PARTITION_LOCATION}\n"
    )
    selection, window_counts = window_selection(floor_cfg, args.per_partition_days)
    window = selection[ASSETS.index("sales")]["partitions"]["range"]
    executor = args.per_partition_executor
    measured = run_backfill(
        f"per_partition_{executor}",
        tmp / "floor",
        floor_home,
        floor_config,
        workspace,
        {
            "partitionsByAssets": selection,
            "title": f"benchmark: {args.per_partition_days} days, one run per partition, "
            f"{executor} executor",
        },
        args.timeout,
        prior_runs=floor_runs,
        extra_env={EXECUTOR_ENV: executor},
    )
    extrapolated = extrapolate(measured, window_counts, partition_counts(floor_cfg))
    log(f"extrapolated ({executor}): {extrapolated}")
    return {
        "executor": executor,
        "per_partition_days": args.per_partition_days,
        "window": [window["start"], window["end"]],
        "window_partitions": window_counts,
        "measured": measured,
        "extrapolated": extrapolated,
    }


def arm_ratios(arm: dict, batched_wall: float) -> dict:
    x = arm["extrapolated"]
    return {
        "saturated_queue": round(x["wall_seconds_saturated_queue"] / batched_wall, 2),
        "busy_throughput": round(x["wall_seconds_busy_throughput"] / batched_wall, 2),
        "linear": round(x["wall_seconds_linear"] / batched_wall, 2),
        "target_20x_met_conservative": x["wall_seconds_saturated_queue"] / batched_wall >= 20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="daily partitions of the graph")
    parser.add_argument(
        "--per-partition-days",
        type=int,
        default=14,
        help="days backfilled with one run per partition (then extrapolated to --days)",
    )
    parser.add_argument(
        "--per-partition-executor",
        choices=sorted(EXECUTORS),
        default="multiprocess",
        help="executor of the one-run-per-partition code location (default: multiprocess, "
        "Dagster's default executor; the project's code location uses in_process)",
    )
    parser.add_argument(
        "--skip-batched",
        action="store_true",
        help="measure only the compute floor (for its data root) and the per-partition arm",
    )
    parser.add_argument(
        "--add-to",
        type=Path,
        help="with --skip-batched: add this per-partition arm to that report (a backfill.json "
        "of a full run with the same --days) and regenerate its .md",
    )
    parser.add_argument(
        "--days-per-run",
        type=int,
        help="the batched project's [backfill] days_per_run (default: the project default)",
    )
    parser.add_argument(
        "--weeks-per-run", type=int, help="the batched project's [backfill] weeks_per_run"
    )
    parser.add_argument("--stores", type=int, default=N_STORES)
    parser.add_argument("--items", type=int, default=N_ITEMS, help="series = stores x items")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per backfill")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"result JSON (.md next to it); default {DEFAULT_OUT.relative_to(REPO)}, with "
        "--skip-batched backfill_per_partition_<executor>.json next to it",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.add_to and not args.skip_batched:
        parser.error("--add-to needs --skip-batched")
    if args.out is None:
        args.out = (
            DEFAULT_OUT.with_name(f"backfill_per_partition_{args.per_partition_executor}.json")
            if args.skip_batched
            else DEFAULT_OUT
        )
    if args.add_to:
        target = json.loads(args.add_to.read_text())
        if target["params"]["days"] != args.days:
            parser.error(f"{args.add_to} has --days {target['params']['days']}, not {args.days}")
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from batch_ml.cli import run_pipeline

    started = time.perf_counter()
    command = (
        f"python -m benchmarks.backfill --days {args.days} "
        f"--per-partition-days {args.per_partition_days} "
        f"--per-partition-executor {args.per_partition_executor} "
        f"--stores {args.stores} --items {args.items}"
        + (f" --days-per-run {args.days_per_run}" if args.days_per_run else "")
        + (f" --weeks-per-run {args.weeks_per_run}" if args.weeks_per_run else "")
        + (" --skip-batched" if args.skip_batched else "")
    )
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": loadavg(),
        "versions": {
            d: version(d)
            for d in ("dagster", "dagster-webserver", "dagster-graphql", "polars", "lightgbm")
        },
    }
    git_head = git("rev-parse", "HEAD")
    batch_ml_dirty = uncommitted(["batch_ml"])
    tmp = Path(tempfile.mkdtemp(prefix="bench_backfill_"))
    log(f"temporary folder {tmp}; load average {machine['loadavg_at_start']}")

    # 1. Compute floor (fresh root F); its root then serves the per-partition window.
    floor_config, floor_cfg, floor_home = new_project(
        tmp / "floor", args.days, args.stores, args.items
    )
    full_counts = partition_counts(floor_cfg)
    log(f"graph partitions: {full_counts}")
    t0 = time.perf_counter()
    with dg.DagsterInstance.from_config(str(floor_home)) as instance, event_store_cost() as events:
        pipeline = run_pipeline(floor_cfg, instance)["forecasting"]
        floor_runs = instance.get_runs_count()
    floor = {
        "seconds": round(time.perf_counter() - t0, 1),
        "runs": floor_runs,
        "stage_seconds": pipeline["timings"],
        "event_store": events.as_dict(),
    }
    log(f"compute floor: {floor['seconds']} s")

    # 2. Batched: the project's code location, one backfill of everything.
    batched, batched_cfg = None, floor_cfg
    if not args.skip_batched:
        batched_config, batched_cfg, batched_home = new_project(
            tmp / "batched",
            args.days,
            args.stores,
            args.items,
            {
                k: v
                for k, v in (
                    ("days_per_run", args.days_per_run),
                    ("weeks_per_run", args.weeks_per_run),
                )
                if v
            },
        )
        batched = run_backfill(
            "batched",
            tmp / "batched",
            batched_home,
            batched_config,
            REPO / "workspace.yaml",
            {**batched_selection(), "title": f"benchmark: full graph, {args.days} days, batched"},
            args.timeout,
        )

    # 3. One run per partition over a window, on root F.
    arm = measure_per_partition(args, tmp, floor_config, floor_cfg, floor_home, floor_runs)

    machine["loadavg_at_end"] = loadavg()
    statuses = [arm["measured"]["status"], *([batched["status"]] if batched else [])]
    ok = all(s == "COMPLETED_SUCCESS" for s in statuses)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    total = round(time.perf_counter() - started, 1)
    batch_ml_dirty_at_end = uncommitted(["batch_ml"])
    arm |= {
        "command": command,
        "created_utc": created,
        "git_head": git_head,
        "batch_ml_dirty": batch_ml_dirty or batch_ml_dirty_at_end,
        "total_seconds": total,
        "compute_floor_seconds": floor["seconds"],
        "loadavg": [machine["loadavg_at_start"], machine["loadavg_at_end"]],
    }
    report = {
        "command": command,
        "created_utc": created,
        "git": {
            "head": git_head,
            "batch_ml_dirty": batch_ml_dirty,
            "batch_ml_dirty_at_end": batch_ml_dirty_at_end,
        },
        "machine": machine,
        "params": {
            "days": args.days,
            "start": START.isoformat(),
            "stores": args.stores,
            "items": args.items,
            "horizon": settings(floor_cfg).forecast.horizon,
            "first_model_week": settings(floor_cfg)
            .first_model_week(floor_cfg.start_date)
            .isoformat(),
            "full": full_counts,
            "batched_executor": "in_process (the project's code location)",
            "batched_days_per_run": batched_cfg.backfill.days_per_run,
            "batched_weeks_per_run": batched_cfg.backfill.weeks_per_run,
        },
        "all_backfills_succeeded": ok,
        "compute_floor": floor,
        "batched": batched,
        "per_partition": {arm["executor"]: arm},
        "total_seconds": total,
    }
    if batched:
        arm["ratios"] = arm_ratios(arm, batched["wall_seconds"])
        report["batched_over_floor"] = round(batched["wall_seconds"] / floor["seconds"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    written = [args.out]
    if batched:
        args.out.with_suffix(".md").write_text(markdown(report))
        written.append(args.out.with_suffix(".md"))
        log(f"ratios: {arm['ratios']}")
    if args.add_to:
        target = json.loads(args.add_to.read_text())
        arm |= {"separate_run": True, "result_file": args.out.name}
        arm["ratios"] = arm_ratios(arm, target["batched"]["wall_seconds"])
        target["per_partition"][arm["executor"]] = arm
        target["all_backfills_succeeded"] = target["all_backfills_succeeded"] and ok
        args.add_to.write_text(json.dumps(target, indent=2, default=str) + "\n")
        args.add_to.with_suffix(".md").write_text(markdown(target))
        written += [args.add_to, args.add_to.with_suffix(".md")]
        log(f"ratios vs {args.add_to.name}'s batched arm: {arm['ratios']}")
    log(f"wrote {', '.join(str(w) for w in written)}")
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"kept {tmp} (logs: logs_* folders, DAGSTER_HOME dagster_home in floor/ and batched/)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
