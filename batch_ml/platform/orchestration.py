"""A product's Dagster definitions, generated from its declaration (`Product`): its assets with
the platform's defaults, its jobs, schedules and landing sensor; see docs/operations.md."""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
import uuid
from dataclasses import dataclass

import dagster as dg

from batch_ml.config import ProjectConfig
from batch_ml.platform.common import BuildContext
from batch_ml.platform.partitions import range_tags, week_of
from batch_ml.platform.product import Product
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
# Schedules (execution timezone: the project's). The model of week W learns from every day
# before W, Sunday's included, which Monday's daily run loads: training runs after it, and
# the report after both.
DAILY_HOUR = 6
TRAINING_HOUR = 7
REPORT_CRON = "30 7 * * *"


def build_jobs(b: BuildContext, product: Product) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """The product's jobs by name: one per role it declares assets for."""
    jobs = [
        dg.define_asset_job(
            product.daily_job,
            selection=list(product.daily),
            description=f"A day's whole chain ({' -> '.join(product.daily)}), or a range of "
            "days in one run (range tags); the landing sensor starts it for new files. A day "
            "before the first week stores its partitions of the assets that read the weekly "
            "ones empty, with the reason; a later day whose week is not decided yet fails "
            f"those steps (run {product.training_job} for that week first).",
        ),
    ]
    if product.reference:
        jobs.append(
            dg.define_asset_job(
                product.reference_data_job,
                selection=list(product.reference),
                description=f"Load the reference data ({', '.join(product.reference)}).",
            )
        )
    if product.weekly:
        jobs.append(
            dg.define_asset_job(
                product.training_job,
                selection=list(product.weekly),
                description=f"The weekly assets ({', '.join(product.weekly)}) of a week, or a "
                "range of weeks in one run.",
            )
        )
    if product.override:
        jobs.append(
            dg.define_asset_job(
                product.champion_override_job,
                selection=[product.override],
                description="Record a person's pin, unpin or rollback of the champion model "
                "(config: action, model_version, effective_date, reason).",
            )
        )
    if product.reports:
        jobs.append(
            dg.define_asset_job(
                product.report_job,
                selection=list(product.reports),
                description=f"Roll up every day into {', '.join(product.reports)}.",
            )
        )
    return {job.name: job for job in jobs}


def build_schedules(b: BuildContext, product: Product, jobs: dict) -> list[dg.ScheduleDefinition]:
    """Stopped until switched on: the landing sensor already runs the daily job for each day
    whose files arrive; the daily schedule is for deployments that are not file-driven."""
    schedules = [
        dg.build_schedule_from_partitioned_job(
            jobs[product.daily_job],
            name=product.daily_schedule,
            hour_of_day=DAILY_HOUR,
            description=f"Every morning at {DAILY_HOUR:02}:00: yesterday's whole daily chain.",
        )
    ]
    if product.weekly:
        schedules.append(
            dg.build_schedule_from_partitioned_job(
                jobs[product.training_job],
                name=product.training_schedule,
                hour_of_day=TRAINING_HOUR,
                description=f"Every Monday at {TRAINING_HOUR:02}:00, after the daily run of "
                "Sunday: the weekly assets of the new week.",
            )
        )
    if product.reports:
        schedules.append(
            dg.ScheduleDefinition(
                name=product.report_schedule,
                job=jobs[product.report_job],
                cron_schedule=REPORT_CRON,
                execution_timezone=b.cfg.timezone,
                description="Refresh the reports after the daily and weekly runs.",
            )
        )
    return schedules


@dataclass(frozen=True)
class Stage:
    """One run of a catch-up: a job (or a subset of its assets) over a range of partitions."""

    job: str
    assets: tuple[str, ...] | None = None  # None: every asset of the job
    first: dt.date | None = None
    last: dt.date | None = None

    @property
    def tags(self) -> dict[str, str]:
        if self.first is None:
            return {}
        return range_tags(self.first, self.last)

    @property
    def label(self) -> str:
        return self.job + (f" [{', '.join(self.assets)}]" if self.assets else "")


def catch_up_stages(
    product: Product, graph, first_day: dt.date, last_day: dt.date, first_week: dt.date
) -> list[Stage]:
    """The runs that materialize every partition of `first_day..last_day` (and their weeks)
    in the fewest runs: a step over a range of partitions computes the same as one run per
    partition. The weekly assets read daily ones (a model learns from earlier days) and other
    daily ones read the weekly ones (a day is served by its week's model): so the daily chain
    splits into the assets upstream of the weekly ones, over all days, then every week, then
    the rest of the chain over all days. `graph`: the definitions' asset graph."""
    stages = [Stage(product.reference_data_job)] if product.reference else []
    daily = list(product.daily)
    feeding: list[str] = []
    if product.weekly and last_day >= first_week:
        upstream = dg.AssetSelection.assets(*product.weekly).upstream().resolve(graph)
        feeding = [a for a in daily if dg.AssetKey(a) in upstream]
    if feeding:
        stages.append(Stage(product.daily_job, tuple(feeding), first_day, last_day))
        stages.append(Stage(product.training_job, None, first_week, week_of(last_day)))
    rest = tuple(a for a in daily if a not in feeding)
    if not feeding:
        stages.append(Stage(product.daily_job, None, first_day, last_day))
    elif rest:
        stages.append(Stage(product.daily_job, rest, first_day, last_day))
    if product.reports:
        stages.append(Stage(product.report_job))
    return stages


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
    job: str, first: dt.date, last: dt.date, arrivals: list[Arrival], request: str
) -> dg.RunRequest:
    tags = _tags(arrivals, request)
    if first == last:
        return dg.RunRequest(job_name=job, partition_key=first.isoformat(), tags=tags)
    return dg.RunRequest(job_name=job, tags={**tags, **range_tags(first, last)})


def build_landing_sensor(b: BuildContext, product: Product, jobs: dict) -> dg.SensorDefinition:
    """Runs the daily job for the days whose source files arrive (the whole chain of those
    days), and the reference data job when a reference file arrives."""
    daily_keys = b.parts.daily
    settle = b.cfg.ingest.settle_seconds
    rehash = b.cfg.ingest.rehash_seconds
    daily_sources = tuple(a for a in product.daily if a in b.sources)
    static_sources = tuple(a for a in product.reference if a in b.sources)

    @dg.sensor(
        name=product.landing_sensor,
        jobs=[
            jobs[name] for name in (product.daily_job, product.reference_data_job) if name in jobs
        ],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Starts {product.daily_job} runs (a day's whole chain) for daily landing files "
            f"({', '.join(daily_sources)})"
            + (
                f" and {product.reference_data_job} runs for reference files "
                f"({', '.join(static_sources)})"
                if static_sources
                else ""
            )
            + " with new or changed content (sha256), once they "
            f"have not changed for {settle:g} s: consecutive days become one range run (at "
            f"most {b.cfg.backfill.days_per_run} days, `[backfill] days_per_run`), at most "
            f"{MAX_RUNS_PER_TICK} runs per tick, the rest on the next ticks. Identical "
            "re-deliveries and files whose newest ingestion-log record is accepted or failed (a "
            "contract violation) start nothing. Bad "
            "file names, and two files of one day, are reported, not read. Content whose run "
            "failed before the ingestion "
            f"log recorded it (a killed worker, a transient error) is requested again, at most "
            f"{MAX_RUN_ATTEMPTS} runs per content; a contract violation never is."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone, tables: TableStore
    ):
        # An ingestion killed after its commit point is finished before its log is trusted.
        tables.recover()
        cursor, pending = load_cursor(context.cursor)
        files, problems = [], []
        for name in daily_sources + static_sources:
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
                dg.RunRequest(
                    job_name=product.reference_data_job, tags=_tags(arrivals.static, request)
                )
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
                requests.append(
                    _range_request(product.daily_job, first, last, batch, requested(batch))
                )
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

    return landing_sensor


def product_definitions(cfg: ProjectConfig, product: Product) -> dg.Definitions:
    """Everything of one product: its assets (groups, owners and tag from the platform), its
    jobs, schedules and landing sensor. No resources: the code location binds them."""
    b = BuildContext.from_config(cfg, product)
    jobs = build_jobs(b, product)
    defs = dg.Definitions(
        assets=product.assets(b),
        jobs=list(jobs.values()),
        schedules=build_schedules(b, product, jobs),
        sensors=[build_landing_sensor(b, product, jobs)],
    )
    return defs.map_asset_specs(func=product.with_defaults)
