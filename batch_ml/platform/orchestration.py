"""Jobs, schedules and the landing sensor (first version; see docs/operations.md)."""

import datetime as dt
import functools
import json
import time
import uuid

import dagster as dg

from batch_ml.platform.common import BuildContext
from batch_ml.platform.partitions import RANGE_END, RANGE_START
from batch_ml.platform.resources import LandingZone, TableStore
from batch_ml.platform.sources.arrivals import (
    MAX_RUN_ATTEMPTS,
    RETRY,
    Arrival,
    IngestionRecords,
    Pending,
    RunOutcome,
    Seen,
    contiguous_ranges,
    find_arrivals,
    plan_retries,
)
from batch_ml.platform.sources.landing import content_hash, discover
from batch_ml.platform.sources.records import LOG_TABLE

# A burst of files becomes at most this many runs per tick, each a range of consecutive days.
MAX_RUNS_PER_TICK = 10
# Every run the landing sensor requests carries a fresh id in this tag: later ticks find the
# run (and re-executions of it) by it, to request a failed one again.
REQUEST_TAG = "batch_ml/request"
CURSOR_VERSION = 2


def build_jobs(b: BuildContext) -> dict:
    return {
        "reference_data_job": dg.define_asset_job(
            "reference_data_job",
            selection=[s.name for s in b.sources.values() if not s.daily],
            description="Load the static sources (calendar, products, stores).",
        ),
        "ingest_job": dg.define_asset_job(
            "ingest_job",
            selection=["sales", "plans", "demand_features"],
            description="Load a day's landing files and build that day's features.",
        ),
        "training_job": dg.define_asset_job(
            "training_job",
            selection=["demand_model", "model_promotion"],
            description="Train the weekly demand model and run the champion/challenger gate.",
        ),
        "champion_override_job": dg.define_asset_job(
            "champion_override_job",
            selection=["champion_overrides"],
            description="Record a person's pin, unpin or rollback of the champion model "
            "(config: action, model_version, effective_date, reason).",
        ),
        "forecast_job": dg.define_asset_job(
            "forecast_job",
            selection=["predictions", "prediction_drift"],
            description="Forecast the next days from day D with D's champion; measure drift.",
        ),
        "evaluation_job": dg.define_asset_job(
            "evaluation_job",
            selection=["forecast_accuracy"],
            description="Evaluate the forecasts made for day D against its actuals.",
        ),
        "report_job": dg.define_asset_job(
            "report_job",
            selection=["accuracy_report"],
            description="Roll up all evaluated days into the accuracy report.",
        ),
    }


def build_schedules(b: BuildContext, jobs: dict) -> list[dg.ScheduleDefinition]:
    tz = b.cfg.timezone
    return [
        dg.build_schedule_from_partitioned_job(
            jobs["forecast_job"],
            name="daily_forecast_schedule",
            hour_of_day=6,
            description="Every morning: forecast the next days from yesterday.",
        ),
        dg.build_schedule_from_partitioned_job(
            jobs["evaluation_job"],
            name="daily_evaluation_schedule",
            hour_of_day=6,
            minute_of_hour=15,
            description="Every morning: evaluate the forecasts made for yesterday.",
        ),
        dg.ScheduleDefinition(
            name="daily_report_schedule",
            job=jobs["report_job"],
            cron_schedule="30 6 * * *",
            execution_timezone=tz,
            description="Refresh the accuracy report after forecasting.",
        ),
        dg.build_schedule_from_partitioned_job(
            jobs["training_job"],
            name="weekly_training_schedule",
            hour_of_day=3,
            description="Every Monday: train the model for the new week.",
        ),
    ]


def _ingestion_records(tables: TableStore) -> IngestionRecords:
    """The ingestion log, read only when a tick needs it (a file the cursor does not know, or a
    requested file whose run failed)."""
    log = tables.table(LOG_TABLE)
    if not log.partitions():
        return IngestionRecords([])
    rows = log.scan().select("file", "sha256", "status", "ingested_at", "run_id").collect()
    return IngestionRecords(rows.iter_rows())


def _runs_of(instance: dg.DagsterInstance, requests: list[str]) -> dict[str, list[RunOutcome]]:
    """request id -> the instance's runs carrying it, newest first."""
    found: dict[str, list[RunOutcome]] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: requests})):
        found.setdefault(run.tags[REQUEST_TAG], []).append(RunOutcome(run.run_id, run.status.value))
    return found


def load_cursor(text: str | None) -> tuple[dict[str, Seen], dict[str, Pending]]:
    """The sensor's cursor: what it saw of each file, and the contents waiting for a run."""
    raw = json.loads(text or "{}")
    if raw.get("v") != CURSOR_VERSION:  # the first format, {file: [size, mtime_ns, sha256]}
        return {k: Seen.from_json(v) for k, v in raw.items()}, {}
    files = {k: Seen.from_json(v) for k, v in raw["files"].items()}
    return files, {k: Pending.from_json(v) for k, v in raw["pending"].items()}


def dump_cursor(files: dict[str, Seen], pending: dict[str, Pending]) -> str:
    return json.dumps(
        {
            "v": CURSOR_VERSION,
            "files": {k: v.to_json() for k, v in files.items()},
            "pending": {k: v.to_json() for k, v in pending.items()},
        },
        sort_keys=True,
    )


def _listing(items: list[str], limit: int = 900) -> str:
    """Run tags are short: the whole list, or its count, first and last."""
    text = ", ".join(items)
    return text if len(text) <= limit else f"{len(items)} files: {items[0]} ... {items[-1]}"


def _tags(arrivals: list[Arrival], request: str) -> dict[str, str]:
    return {
        "batch_ml/trigger": ", ".join(sorted({a.reason for a in arrivals})),
        "batch_ml/files": _listing(sorted(a.file for a in arrivals)),
        "batch_ml/sha256": _listing(sorted(f"{a.file}@{a.sha256[:12]}" for a in arrivals)),
        "batch_ml/attempt": str(max(a.attempt for a in arrivals)),
        REQUEST_TAG: request,
    }


def _range_request(
    first: dt.date, last: dt.date, arrivals: list[Arrival], request: str
) -> dg.RunRequest:
    tags = _tags(arrivals, request)
    if first == last:
        return dg.RunRequest(job_name="ingest_job", partition_key=first.isoformat(), tags=tags)
    return dg.RunRequest(
        job_name="ingest_job",
        tags={**tags, RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
    )


def build_landing_sensor(b: BuildContext, jobs: dict) -> dg.SensorDefinition:
    daily_keys = b.parts.daily
    settle = b.cfg.ingest.settle_seconds
    rehash = b.cfg.ingest.rehash_seconds

    @dg.sensor(
        name="landing_files_sensor",
        jobs=[jobs["ingest_job"], jobs["reference_data_job"]],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Starts runs for landing files with new or changed content (sha256), once they "
            f"have not changed for {settle:g} s: consecutive days become one range run (at "
            f"most {b.cfg.backfill.days_per_run} days, `[backfill] days_per_run`), at most "
            f"{MAX_RUNS_PER_TICK} runs per tick, the rest on the next ticks. Identical "
            "re-deliveries and files whose newest ingestion-log record is accepted or failed (a "
            "contract violation) start nothing. Bad "
            "file names are reported, not read. Content whose run failed before the ingestion "
            f"log recorded it (a killed worker, a transient error) is requested again, at most "
            f"{MAX_RUN_ATTEMPTS} runs per content; a contract violation never is."
        ),
    )
    def landing_files_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone, tables: TableStore
    ):
        # An ingestion killed after its commit point is finished before its log is trusted.
        tables.recover()
        cursor, pending = load_cursor(context.cursor)
        files, problems = [], []
        # Daily sources first, then static ones (the declarations' `daily` flag).
        for source in sorted(b.sources.values(), key=lambda s: not s.daily):
            found, bad = discover(landing.path, source)
            files += found
            problems += bad
        outside = [
            f
            for f in files
            if f.partition and not daily_keys.has_partition_key(f.partition.isoformat())
        ]
        problems += [f"{f.path}: {f.partition} is outside the partitions" for f in outside]
        files = [f for f in files if f not in outside]
        now_ns = time.time_ns()
        records = functools.cache(lambda: _ingestion_records(tables))
        arrivals = find_arrivals(
            files,
            cursor,
            recorded=records,
            hasher=content_hash,
            now_ns=now_ns,
            settle_seconds=settle,
            rehash_seconds=rehash,
        )
        retries = plan_retries(
            pending,
            files,
            arrivals,
            runs_of=lambda requests: _runs_of(context.instance, requests),
            recorded=records,
            now_ns=now_ns,
        )
        for arrival in retries.arrivals:
            arrivals.add(arrival)
        for problem in problems:
            context.log.warning(problem)
        for note in retries.notes:
            context.log.info(note)
        for note in retries.gave_up:
            context.log.warning(note)

        next_cursor = {**cursor, **arrivals.unchanged}
        next_pending = dict(retries.pending)

        def requested(batch: list[Arrival]) -> str:
            request = uuid.uuid4().hex[:16]
            for a in batch:
                next_cursor[a.file] = a.seen
                next_pending[a.file] = Pending(a.sha256, request, a.attempt, now_ns)
            return request

        requests = []
        if arrivals.static:
            request = requested(arrivals.static)
            requests.append(
                dg.RunRequest(job_name="reference_data_job", tags=_tags(arrivals.static, request))
            )
        ranges = contiguous_ranges(list(arrivals.daily), b.cfg.backfill.days_per_run)
        for i, (first, last) in enumerate(ranges):
            batch = [
                a
                for day, items in sorted(arrivals.daily.items())
                if first <= day <= last
                for a in items
            ]
            if i < MAX_RUNS_PER_TICK:
                requests.append(_range_request(first, last, batch, requested(batch)))
            else:  # next tick: a new arrival is found again, a retry stays pending
                next_pending.update({a.file: pending[a.file] for a in batch if a.reason == RETRY})
        deferred = max(0, len(ranges) - MAX_RUNS_PER_TICK)
        waiting = len(
            {p.request for p in next_pending.values()} - {r.tags[REQUEST_TAG] for r in requests}
        )
        if requests or deferred or arrivals.settling or problems or arrivals.hashed:
            context.log.info(
                f"{len(requests)} run(s) requested ({len(retries.arrivals)} file(s) again after "
                f"a failed run), {deferred} range(s) deferred to the next tick, "
                f"{len(arrivals.settling)} file(s) still settling, {len(problems)} bad file "
                f"name(s), {arrivals.hashed} file(s) hashed ({arrivals.rehashed} periodically), "
                f"{waiting} earlier request(s) waiting for their run"
            )
        cursor_text = dump_cursor(next_cursor, next_pending)
        if not requests:
            why = f"; waiting for {arrivals.settling[:3]} to settle" if arrivals.settling else ""
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no new or changed landing files{why}"),
                cursor=cursor_text,
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor_text)

    return landing_files_sensor
