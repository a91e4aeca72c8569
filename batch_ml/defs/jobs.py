"""Jobs, schedules and the landing sensor (first version; see docs/operations.md)."""

import datetime as dt
import json
import time

import dagster as dg
import polars as pl

from batch_ml.defs.common import BuildContext
from batch_ml.defs.partitions import RANGE_END, RANGE_START
from batch_ml.defs.resources import LandingZone, TableStore
from batch_ml.ingest.arrivals import Arrival, Seen, contiguous_ranges, find_arrivals
from batch_ml.ingest.landing import content_hash, discover
from batch_ml.ingest.records import LOG_TABLE

DAILY_SOURCES = ("sales", "plans")
STATIC_SOURCES = ("calendar", "products", "stores")
# A burst of files becomes at most this many runs per tick, each a range of consecutive days.
MAX_RUNS_PER_TICK = 10


def build_jobs(b: BuildContext) -> dict:
    return {
        "reference_data_job": dg.define_asset_job(
            "reference_data_job",
            selection=list(STATIC_SOURCES),
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


def _accepted_files(tables: TableStore) -> dict[str, set[str]]:
    """file -> content hashes the ingestion log accepted (read only when the cursor lacks one)."""
    log = tables.table(LOG_TABLE)
    if not log.partitions():
        return {}
    rows = (
        log.scan()
        .filter(pl.col("status") == "accepted")
        .select("file", "sha256")
        .unique()
        .collect()
    )
    accepted: dict[str, set[str]] = {}
    for file, digest in rows.iter_rows():
        accepted.setdefault(file, set()).add(digest)
    return accepted


def _listing(items: list[str], limit: int = 900) -> str:
    """Run tags are short: the whole list, or its count, first and last."""
    text = ", ".join(items)
    return text if len(text) <= limit else f"{len(items)} files: {items[0]} ... {items[-1]}"


def _range_request(first: dt.date, last: dt.date, arrivals: list[Arrival]) -> dg.RunRequest:
    tags = {
        "batch_ml/trigger": ", ".join(sorted({a.reason for a in arrivals})),
        "batch_ml/files": _listing(sorted(a.file for a in arrivals)),
        "batch_ml/sha256": _listing(sorted(f"{a.file}@{a.sha256[:12]}" for a in arrivals)),
    }
    if first == last:
        return dg.RunRequest(job_name="ingest_job", partition_key=first.isoformat(), tags=tags)
    return dg.RunRequest(
        job_name="ingest_job",
        tags={**tags, RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
    )


def build_landing_sensor(b: BuildContext, jobs: dict) -> dg.SensorDefinition:
    daily_keys = b.parts.daily
    settle = b.cfg.ingest.settle_seconds

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
            "re-deliveries and files the ingestion log already accepted start nothing. Bad "
            "file names are reported, not read."
        ),
    )
    def landing_files_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone, tables: TableStore
    ):
        cursor = {k: Seen.from_json(v) for k, v in json.loads(context.cursor or "{}").items()}
        files, problems = [], []
        for name in DAILY_SOURCES + STATIC_SOURCES:
            found, bad = discover(landing.path, b.sources[name])
            files += found
            problems += bad
        outside = [
            f
            for f in files
            if f.partition and not daily_keys.has_partition_key(f.partition.isoformat())
        ]
        problems += [f"{f.path}: {f.partition} is outside the partitions" for f in outside]
        files = [f for f in files if f not in outside]
        arrivals = find_arrivals(
            files,
            cursor,
            ingested=lambda: _accepted_files(tables),
            hasher=content_hash,
            now_ns=time.time_ns(),
            settle_seconds=settle,
        )
        for problem in problems:
            context.log.warning(problem)

        next_cursor = {**cursor, **arrivals.unchanged}
        requests = []
        if arrivals.static:
            requests.append(
                dg.RunRequest(
                    job_name="reference_data_job",
                    tags={
                        "batch_ml/trigger": ", ".join(sorted({a.reason for a in arrivals.static})),
                        "batch_ml/files": _listing([a.file for a in arrivals.static]),
                    },
                )
            )
            next_cursor.update({a.file: a.seen for a in arrivals.static})
        ranges = contiguous_ranges(list(arrivals.daily), b.cfg.backfill.days_per_run)
        for first, last in ranges[:MAX_RUNS_PER_TICK]:
            batch = [
                a
                for day, items in sorted(arrivals.daily.items())
                if first <= day <= last
                for a in items
            ]
            requests.append(_range_request(first, last, batch))
            next_cursor.update({a.file: a.seen for a in batch})
        deferred = len(ranges) - min(len(ranges), MAX_RUNS_PER_TICK)
        if requests or deferred or arrivals.settling or problems:
            context.log.info(
                f"{len(requests)} run(s) requested, {deferred} range(s) deferred to the next "
                f"tick, {len(arrivals.settling)} file(s) still settling, "
                f"{len(problems)} bad file name(s)"
            )
        if not requests:
            waiting = (
                f"; waiting for {arrivals.settling[:3]} to settle" if arrivals.settling else ""
            )
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no new or changed landing files{waiting}"),
                cursor=json.dumps({k: v.to_json() for k, v in next_cursor.items()}, sort_keys=True),
            )
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps({k: v.to_json() for k, v in next_cursor.items()}, sort_keys=True),
        )

    return landing_files_sensor
