"""Jobs, schedules and the landing sensor (first version; see docs/operations.md)."""

import json

import dagster as dg

from batch_ml.defs.common import BuildContext
from batch_ml.defs.resources import LandingZone
from batch_ml.ingest.landing import content_hash, discover

DAILY_SOURCES = ("sales", "plans")
STATIC_SOURCES = ("calendar", "products", "stores")
MAX_RUNS_PER_TICK = 50


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
            selection=["demand_model"],
            description="Train the weekly demand model.",
        ),
        "forecast_job": dg.define_asset_job(
            "forecast_job",
            selection=["predictions", "forecast_accuracy"],
            description="Forecast the next days from day D and evaluate forecasts made for D.",
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
            description="Every morning: forecast from yesterday and evaluate yesterday.",
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


def build_landing_sensor(b: BuildContext, jobs: dict) -> dg.SensorDefinition:
    daily_keys = b.parts.daily

    @dg.sensor(
        name="landing_files_sensor",
        jobs=[jobs["ingest_job"], jobs["reference_data_job"]],
        minimum_interval_seconds=30,
        description=(
            "Starts a run for each day whose landing files are new or changed (by content "
            "hash), and reloads static sources when their file changes."
        ),
    )
    def landing_files_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        changed_days: dict[str, list[tuple[str, str]]] = {}
        changed_static: list[tuple[str, str]] = []
        problems: list[str] = []
        for name in DAILY_SOURCES + STATIC_SOURCES:
            files, bad = discover(landing.path, b.sources[name])
            problems += bad
            for f in files:
                rel = f"{name}/{f.path.name}"
                digest = content_hash(f.path)
                if seen.get(rel) == digest:
                    continue
                if f.partition is None:
                    changed_static.append((rel, digest))
                elif daily_keys.has_partition_key(f.partition.isoformat()):
                    changed_days.setdefault(f.partition.isoformat(), []).append((rel, digest))
                else:
                    problems.append(f"{rel}: {f.partition} is outside the partitions")
        for p in problems:
            context.log.warning(p)
        requests = []
        if changed_static:
            requests.append(
                dg.RunRequest(
                    job_name="reference_data_job",
                    run_key="static:" + ",".join(f"{r}@{d[:12]}" for r, d in changed_static),
                    tags={"batch_ml/files": ", ".join(r for r, _ in changed_static)},
                )
            )
            seen.update(changed_static)
        for day in sorted(changed_days)[:MAX_RUNS_PER_TICK]:
            files = changed_days[day]
            requests.append(
                dg.RunRequest(
                    job_name="ingest_job",
                    partition_key=day,
                    run_key=f"{day}:" + ",".join(f"{r}@{d[:12]}" for r, d in sorted(files)),
                    tags={"batch_ml/files": ", ".join(r for r, _ in files)},
                )
            )
            seen.update(files)
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return landing_files_sensor
