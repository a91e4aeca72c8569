"""Benchmark suite (`make bench`): speed, memory and scale of batch_ml, in one run.

Sections (`--sections`, all by default), results in benchmarks/results/bench.json and
bench.md, and the summary table in README.md between the `bench:` markers:

- **scale** (per `--scales`, default 1k = 20 stores x 50 items and 30k = 100 x 300 series):
  generated data (the demo simulator, 3 years + 1 day; the new day D is a Monday), then
  - *daily incremental run*: D's landing files -> sales, plans -> demand_features ->
    predictions, prediction_drift -> forecast_accuracy, through Dagster (ONE run of
    forecasting_daily_job for partition D over its whole chain, as the landing sensor starts
    it live, executed in-process on the scale's DAGSTER_HOME, as a run worker executes it
    once started) and as its compute floor (the same pure functions and storage calls, no
    Dagster; timed in three parts) - each repeat in a fresh process, both kinds alternating;
  - *peak memory* of both, with 3 and with 1 year of sales history in storage
    (the sales partitions older than a year moved aside for the 1-year runs, the rest
    identical; 3-year and 1-year runs alternate);
  - *throughput* (rows/s) of the pure feature and inference code, and of training (the
    set-up's weekly forecasting_training_job runs, one a week, from their asset metadata).
  Set-up (untimed, recorded): sales history and the plans of the last weeks are written to
  storage directly, as ingestion writes them; then through Dagster the reference data, the
  features of the 6 weeks before D, the weekly models of D's and the two weeks before and
  their gates, and the 14 days of predictions before D (the forecasts D's evaluation scores).
- **storage**: partition write/read throughput (benchmarks.storage_io, smaller defaults).
- **backfill**: the full graph over 365 days through the real daemon, batched vs one run per
  partition (benchmarks.backfill at 1k series; the per-partition arm on fewer days,
  extrapolated).
- **sentiment**: scoring throughput of the sentiment product's `review_sentiment` step
  through Dagster vs the same model's plain predict, 100k reviews a day
  (benchmarks.sentiment_throughput, `--repeats` of each).

Every figure is the median of `--repeats` runs with min and max. Run one section:
`.venv/bin/python -m benchmarks.suite --sections scale --scales 1k` (results of the other
sections are kept from the previous bench.json).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from batch_ml.harness.project import write_config
from batch_ml.products.forecasting.config import settings
from benchmarks import event_store, facts
from benchmarks.facts import log, spread

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "bench.json"
README = REPO / "README.md"
SCALES = {"1k": (20, 50), "30k": (100, 300), "smoke": (2, 10)}  # smoke: tests only
DEFAULT_SCALES = ("1k", "30k")
NEW_DAY = dt.date(2026, 11, 30)  # a Monday: D's week gets its model in the set-up
HISTORY_DAYS = 3 * 365
HORIZON = 14
TRAINING_WEEKS = 4  # more than the 14 validation days; the demo uses 8
# The set-up trains the models of the 3 weeks the forecasts of D-14 .. D come from; the first
# of them learns from 4 weeks of features before it, its gate backtests on them.
MODEL_WEEKS = 3
# The 1k-series backfill project takes a year of days and all its model weeks per run: its
# features fit in memory many times over (docs/operations.md), so start-up is paid per stage.
BACKFILL_CHUNKS = {"days_per_run": 366, "weeks_per_run": 53}
FEATURE_DAYS = 7 * (TRAINING_WEEKS + MODEL_WEEKS - 1)
# The compute floor's parts, timed each (the Dagster side is one run of the daily job).
FLOOR_PARTS = ("sources_and_features", "predictions_and_drift", "accuracy")
# The set-up forecasts the 14 days before D (what D's accuracy scores) with these daily
# assets: the days' features are already stored and their landing files are not there.
SETUP_FORECASTS = ("predictions", "prediction_drift")
HISTORY_RUNS = "alternating (older sales partitions moved aside for the 1-year runs)"
TRAINING_METADATA = ("duration_s", "peak_rss_mb", "train_rows", "best_iteration")
PACKAGES = ("dagster", "dagster-webserver", "polars", "duckdb", "lightgbm", "numpy", "pyarrow")


# -- set-up ------------------------------------------------------------------------------------


def write_project(folder: Path, stores: int, items: int) -> Path:
    """The benchmark project: `stores` x `items` series, HISTORY_DAYS of history up to and
    with NEW_DAY, the repository's quarantine policy."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder,
        start=NEW_DAY - dt.timedelta(days=HISTORY_DAYS),
        days=HISTORY_DAYS + 1,
        horizon=HORIZON,
        n_stores=stores,
        n_items=items,
        training_weeks=TRAINING_WEEKS,
        min_history_days=84,
        sections={
            "ingest": {
                "quarantine": ["duplicate_row", "negative", "not_finite"],
                "max_quarantined_fraction": 0.01,
            }
        },
    )


def _landing(frames: dict, cfg, day: dt.date) -> None:
    """D's sales and plans files and the static files, as the retailer delivers them."""
    root = cfg.paths.landing
    for name in ("sales", "plans", "calendar", "products", "stores"):
        (root / name).mkdir(parents=True, exist_ok=True)
    import polars as pl

    frames["sales"].filter(pl.col("date") == day).write_csv(
        root / "sales" / f"sales_{day.isoformat()}.csv"
    )
    _plans_of(frames["plans"], day).write_parquet(
        root / "plans" / f"plans_{day.isoformat()}.parquet"
    )
    frames["calendar"].write_parquet(root / "calendar" / "calendar.parquet")
    for name in ("products", "stores"):
        records = frames[name].with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts()
        (root / name / f"{name}.json").write_text(json.dumps(records))


def _plans_of(plans, day: dt.date):
    import polars as pl

    return plans.filter(
        pl.col("date") > day, pl.col("date") <= day + dt.timedelta(days=HORIZON)
    ).sort("date", "store_id", "item_id")


def write_history(frames: dict, cfg) -> dict:
    """Sales of every day before D and plans of the feature window, stored as ingestion
    stores them (the contract's types, one partition a day), without the landing files."""
    import polars as pl

    from batch_ml.platform.resources import TableStore
    from batch_ml.platform.sources.contract import load_landing_file, with_contract_columns
    from batch_ml.products.forecasting.sources import PLAN_DATE, project_sources

    src = project_sources(cfg)
    day = NEW_DAY
    # The schema ingestion gives these rows: read D's own files through the contract.
    sales_schema = load_landing_file(
        cfg.paths.landing / "sales" / f"sales_{day}.csv", src["sales"], day
    ).rows.schema
    plans_schema = load_landing_file(
        cfg.paths.landing / "plans" / f"plans_{day}.parquet", src["plans"], day
    ).rows.schema
    store = TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))
    sales = with_contract_columns(frames["sales"].filter(pl.col("date") < day), src["sales"])
    sales = sales.cast(dict(sales_schema))
    by_day = {d: f for (d,), f in sales.partition_by("date", as_dict=True).items()}
    start = day - dt.timedelta(days=HISTORY_DAYS)
    every_day = [start + dt.timedelta(days=k) for k in range(HISTORY_DAYS)]
    # A day every store was closed has a header-only file: ingestion stores it empty.
    store.write("sales", {d.isoformat(): by_day.get(d, sales.clear()) for d in every_day})
    plan_days = [day - dt.timedelta(days=k) for k in range(FEATURE_DAYS, 0, -1)]
    plans = {
        d.isoformat(): with_contract_columns(_plans_of(frames["plans"], d), src["plans"])
        .cast(dict(plans_schema))
        .with_columns(pl.lit(d).alias(PLAN_DATE))
        for d in plan_days
    }
    store.write("plans", plans)
    return {"sales_days": len(every_day), "sales_rows": sales.height, "plans_days": len(plans)}


def set_up(folder: Path, stores: int, items: int) -> dict:
    """A project at this scale with its history, a model for D's week and the forecasts D's
    evaluation needs."""
    import dagster as dg

    from batch_ml.cli import QUIET_LOGS, ensure_dagster_home
    from batch_ml.config import load_config
    from batch_ml.definitions import build_definitions
    from batch_ml.platform.partitions import range_tags
    from batch_ml.products.forecasting.demo import simulate, spec_from_config
    from batch_ml.products.forecasting.product import PRODUCT

    cfg = load_config(write_project(folder, stores, items))
    shutil.copyfile(REPO / "dagster.yaml", folder / "dagster.yaml")
    ensure_dagster_home(folder)  # $DAGSTER_HOME, with the repository's dagster.yaml
    timings = {}
    started = time.perf_counter()
    frames = simulate(spec_from_config(cfg))
    timings["simulate"] = time.perf_counter() - started
    started = time.perf_counter()
    _landing(frames, cfg, NEW_DAY)
    history = write_history(frames, cfg)
    timings["write_history"] = time.perf_counter() - started
    del frames

    defs = dg.Definitions.merge(
        build_definitions(cfg),
        dg.Definitions(
            jobs=[dg.define_asset_job("bench_features_job", selection=["demand_features"])]
        ),
    )
    day = NEW_DAY
    weeks = [day - dt.timedelta(weeks=k) for k in range(MODEL_WEEKS - 1, -1, -1)]
    stages = [
        (PRODUCT.reference_data_job, None),
        ("bench_features_job", (day - dt.timedelta(days=FEATURE_DAYS), day - dt.timedelta(days=1))),
        # One run per week: each is a measurement of training through Dagster.
        *((f"{PRODUCT.training_job} {week}", (week, week)) for week in weeks),
        (
            f"{PRODUCT.daily_job} forecasts",
            (day - dt.timedelta(days=HORIZON), day - dt.timedelta(days=1)),
        ),
    ]
    training = []
    with dg.DagsterInstance.get() as instance:
        for name, window in stages:
            job = name.split()[0]
            tags = {} if window is None else range_tags(*window)
            started = time.perf_counter()
            stage = SETUP_FORECASTS if name.endswith(" forecasts") else None
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                tags=tags,
                run_config=QUIET_LOGS,
                asset_selection=[dg.AssetKey(a) for a in stage] if stage else None,
            )
            timings[name] = time.perf_counter() - started
            log(f"  set-up {name}: {timings[name]:.1f} s")
            if job == PRODUCT.training_job:
                md = result.asset_materializations_for_node("demand_model")[0].metadata
                training.append({k: md[k].value for k in TRAINING_METADATA})
    return {
        "history": history,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "training": training,
    }


@contextlib.contextmanager
def history(cfg, years: int) -> Iterator[int]:
    """Sales history of `years` years before D: older partitions are moved out of the table
    for the duration (and back after), so 3-year and 1-year runs can alternate."""
    from batch_ml.platform.storage.tables import PartitionedTable

    table = PartitionedTable(cfg.paths.tables, "sales")
    aside = table.folder.parent / "_older_sales"
    aside.mkdir(exist_ok=True)
    oldest = NEW_DAY - dt.timedelta(days=365 * years)
    older = [k for k in table.partitions() if dt.date.fromisoformat(k) < oldest]
    for key in older:
        table.path(key).rename(aside / table.path(key).name)
    try:
        yield sum(k < NEW_DAY.isoformat() for k in table.partitions())  # days before D
    finally:
        for path in aside.glob("*.parquet"):
            path.rename(table.folder / path.name)


# -- one daily run, in its own process -------------------------------------------------------


def daily_dagster(cfg) -> dict:
    """D as it runs live: ONE run of the product's daily job for partition D over its whole
    chain, on the scale's instance: its time and peak RSS, the events it stored, and each
    asset's own cost metadata."""
    import dagster as dg

    from batch_ml.cli import QUIET_LOGS
    from batch_ml.definitions import build_definitions
    from batch_ml.platform.common import peak_rss_mb, reset_peak_rss
    from batch_ml.products.forecasting.product import PRODUCT

    job = build_definitions(cfg).resolve_job_def(PRODUCT.daily_job)
    with dg.DagsterInstance.get() as instance:
        reset_peak_rss()
        started = time.perf_counter()
        with event_store.event_store_cost() as events:
            result = job.execute_in_process(
                instance=instance, partition_key=NEW_DAY.isoformat(), run_config=QUIET_LOGS
            )
        seconds, since_last_asset = time.perf_counter() - started, peak_rss_mb()
    assets = {}
    for event in result.get_asset_materialization_events():
        md = event.materialization.metadata
        assets[event.asset_key.to_user_string()] = {
            "seconds": md["duration_s"].value,
            "peak_rss_mb": md["peak_rss_mb"].value,
        }
    return {
        "seconds": seconds,
        # Every asset resets the process's high-water mark when it starts (`measured`), so the
        # run's peak is the largest of its assets' own peaks and of what followed the last one.
        "peak_rss_mb": max(since_last_asset, *(a["peak_rss_mb"] for a in assets.values())),
        "event_store": events.as_dict(),
        "assets": assets,
    }


def daily_floor(cfg) -> dict:
    """The same day with the same pure functions and storage calls, no Dagster."""
    import logging

    import polars as pl

    from batch_ml.platform.common import peak_rss_mb, reset_peak_rss
    from batch_ml.platform.monitoring.drift import PREDICTION, psi_table
    from batch_ml.platform.registry.assets import read_overrides
    from batch_ml.platform.registry.gate import BASELINE_PREFIX, serving_version
    from batch_ml.platform.resources import LandingZone, ModelStore, TableStore
    from batch_ml.platform.sources.assets import commit_ingestion, ingest_files
    from batch_ml.platform.sources.contract import QuarantinePolicy
    from batch_ml.platform.storage.tables import UNPARTITIONED
    from batch_ml.products.forecasting.assets.predictions import DRIFT_SCHEMA, KEYS
    from batch_ml.products.forecasting.features import BASELINE_COLUMNS, SERIES_KEYS, build_features
    from batch_ml.products.forecasting.metrics import evaluate_forecasts
    from batch_ml.products.forecasting.product import OVERRIDES
    from batch_ml.products.forecasting.sources import PLAN_DATE, project_sources
    from batch_ml.products.forecasting.training import predict

    day, key = NEW_DAY, NEW_DAY.isoformat()
    f, fc = settings(cfg).features, settings(cfg).forecast
    src = project_sources(cfg)
    tables = TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))
    models = ModelStore(root=str(cfg.paths.models))
    landing = LandingZone(root=str(cfg.paths.landing))
    policy = QuarantinePolicy.from_config(cfg.ingest)
    logger = logging.getLogger("batch_ml.bench.floor")
    stages, steps = {}, {}

    def scan(name: str, keys: list[str]) -> pl.LazyFrame:
        return tables.table(name).scan(keys)

    def days_before(n: int) -> list[str]:
        return [(day - dt.timedelta(days=k)).isoformat() for k in range(n, 0, -1)]

    def ingest(name: str, shape=lambda frame: frame) -> None:
        ingested = ingest_files(landing, tables, src[name], [day], policy, run_id="floor")
        commit_ingestion(tables, name, {key: shape(ingested.frames[day])}, ingested, logger)

    def stage(part: str):
        def wrap(body):
            reset_peak_rss()
            started = time.perf_counter()
            body()
            stages[part] = {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}

        return wrap

    @stage("sources_and_features")
    def _ingest():
        ingest("sales")
        ingest("plans", lambda frame: frame.with_columns(pl.lit(day).alias(PLAN_DATE)))
        started = time.perf_counter()
        frame = build_features(
            scan("sales", [*days_before(fc.lookback_days - 1), key]),
            day,
            day,
            fc.horizon,
            fc.lookback_days,
            plans=scan("plans", [key]),
            calendar=scan("calendar", [UNPARTITIONED]),
            products=scan("products", [UNPARTITIONED]).collect(),
            stores=scan("stores", [UNPARTITIONED]).collect(),
            known_in_advance=f.known_in_advance,
            calendar_columns=f.calendar,
            product_attributes=f.product_attributes,
            store_attributes=f.store_attributes,
        ).collect()
        steps["features"] = {"seconds": time.perf_counter() - started, "rows": frame.height}
        tables.write("demand_features", {key: frame})

    @stage("predictions_and_drift")
    def _forecast():
        gate = scan("model_promotion", [(day - dt.timedelta(days=day.weekday())).isoformat()])
        version = serving_version(
            gate.collect(), read_overrides(tables, OVERRIDES), day, BASELINE_PREFIX
        )
        features = scan("demand_features", [key]).collect()
        started = time.perf_counter()
        frame = predict(models.load(version), features, version)
        steps["inference"] = {"seconds": time.perf_counter() - started, "rows": frame.height}
        tables.write("predictions", {key: frame})
        reference = models.load_card(version)["profile"]
        joined = scan("demand_features", [key]).join(
            frame.lazy().select(*KEYS, PREDICTION), on=KEYS, how="inner"
        )
        drift = psi_table(joined.collect(), reference).with_columns(
            forecast_date=pl.lit(day), model_version=pl.lit(version)
        )
        tables.write("prediction_drift", {key: drift.select(DRIFT_SCHEMA.keys())})

    @stage("accuracy")
    def _evaluate():
        origins = days_before(fc.horizon)
        keys = ["forecast_date", "target_date", *SERIES_KEYS]
        baselines = scan("demand_features", origins).select(*keys, *BASELINE_COLUMNS.values())
        products = scan("products", [UNPARTITIONED])
        categories = products.select("item_id", pl.col("category").cast(pl.String)).unique(
            "item_id"
        )
        forecasts = (
            scan("predictions", origins)
            .join(baselines, on=keys, how="inner")
            .filter(pl.col("target_date") == day)
            .join(categories, on="item_id", how="left")
        )
        frame = evaluate_forecasts(forecasts, scan("sales", [key]), groups=("store_id", "category"))
        tables.write("forecast_accuracy", {key: frame})

    assert tuple(stages) == FLOOR_PARTS
    return {
        "seconds": sum(s["seconds"] for s in stages.values()),
        # Each part's high-water mark from its start: their maximum is the whole floor's.
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
        "stages": stages,
        "steps": steps,
    }


def output_digests(cfg) -> dict[str, str]:
    """Rows and content of D's partition of every table the daily run writes, so the floor is
    shown to do the same work. Floats are compared at float32 precision: summation order may
    differ in the last bits (decimal rounding would split values that sit on a half)."""
    import hashlib

    import polars as pl

    from batch_ml.platform.storage.tables import PartitionedTable
    from batch_ml.products.forecasting.product import PRODUCT

    digests = {}
    for asset in PRODUCT.daily:
        frame = PartitionedTable(cfg.paths.tables, asset).read([NEW_DAY.isoformat()])
        frame = frame.with_columns(pl.col(pl.Float64).cast(pl.Float32))
        frame = frame.sort(frame.columns)
        digest = hashlib.sha256(frame.hash_rows(seed=0).to_numpy().tobytes()).hexdigest()[:16]
        digests[asset] = f"{frame.height} rows {digest}"
    return digests


def daily_child(config: str, mode: str) -> int:
    from batch_ml.config import load_config

    cfg = load_config(config)
    result = daily_dagster(cfg) if mode == "dagster" else daily_floor(cfg)
    result["outputs"] = output_digests(cfg)  # after the timed part
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def run_child(*args: str, env: dict | None = None) -> dict:
    return facts.run_json("benchmarks.suite", *args, env=env)


def measure_daily(config: Path, repeats: int) -> dict[str, dict]:
    """`repeats` daily runs through Dagster and as the floor with 3 and with 1 year of sales
    history, a process each, all four kinds alternating so that a slower spell of a shared
    machine does not fall on one kind only."""
    from batch_ml.config import load_config

    cfg = load_config(config)
    kinds = [(years, mode) for years in (3, 1) for mode in ("dagster", "floor")]
    runs: dict[int, dict[str, list[dict]]] = {
        3: {"dagster": [], "floor": []},
        1: {"dagster": [], "floor": []},
    }
    days_stored: dict[int, int] = {}
    for r in range(repeats):
        for years, mode in kinds if r % 2 == 0 else kinds[::-1]:
            with history(cfg, years) as days:
                days_stored[years] = days
                runs[years][mode].append(run_child("_daily", str(config), mode))
    return {
        f"{years}y": {"sales_days_stored": days_stored[years], **summarize_daily(runs[years])}
        for years in (3, 1)
    }


def summarize_daily(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for mode, results in runs.items():
        summary[mode] = {
            "seconds": spread([res["seconds"] for res in results]),
            "peak_rss_mb": spread([res["peak_rss_mb"] for res in results], 1),
        }
        if mode == "dagster":
            summary[mode]["event_store"] = {
                "events": results[0]["event_store"]["events"],
                "seconds": spread([res["event_store"]["seconds"] for res in results]),
            }
            summary[mode]["assets"] = {
                asset: {
                    "seconds": spread([res["assets"][asset]["seconds"] for res in results]),
                    "peak_rss_mb": spread(
                        [res["assets"][asset]["peak_rss_mb"] for res in results], 1
                    ),
                }
                for asset in results[0]["assets"]
            }
        else:
            summary[mode]["stages"] = {
                part: {
                    "seconds": spread([res["stages"][part]["seconds"] for res in results]),
                    "peak_rss_mb": spread(
                        [res["stages"][part]["peak_rss_mb"] for res in results], 1
                    ),
                }
                for part in FLOOR_PARTS
            }
            summary[mode]["steps"] = {
                step: {
                    "seconds": spread([res["steps"][step]["seconds"] for res in results]),
                    "rows": results[0]["steps"][step]["rows"],
                    "rows_per_s": spread(
                        [
                            res["steps"][step]["rows"] / res["steps"][step]["seconds"]
                            for res in results
                        ],
                        0,
                    ),
                }
                for step in results[0]["steps"]
            }
    outputs = [res["outputs"] for mode_runs in runs.values() for res in mode_runs]
    summary["same_outputs"] = all(o == outputs[0] for o in outputs)
    summary["outputs"] = outputs[0]
    dagster, floor = summary["dagster"]["seconds"], summary["floor"]["seconds"]
    summary["ratio_dagster_over_floor"] = round(dagster["median"] / floor["median"], 3)
    # Dagster's overhead over the floor: the difference of the medians.
    summary["dagster_overhead_s"] = round(dagster["median"] - floor["median"], 3)
    return summary


# -- throughput of the pure code -------------------------------------------------------------


def throughput_child(config: str, repeats: int) -> int:
    """Features over one origin and over FEATURE_DAYS origins; inference with D's champion."""
    import polars as pl

    from batch_ml.config import load_config
    from batch_ml.platform.resources import ModelStore, TableStore
    from batch_ml.platform.storage.tables import UNPARTITIONED
    from batch_ml.products.forecasting.features import build_features
    from batch_ml.products.forecasting.training import predict

    cfg = load_config(config)
    fc, f = settings(cfg).forecast, settings(cfg).features
    tables = TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))
    models = ModelStore(root=str(cfg.paths.models))
    day = NEW_DAY
    sales = tables.table("sales").scan().collect().lazy()  # in memory: compute, not I/O
    plans = tables.table("plans").scan().collect().lazy()
    static = {n: tables.table(n).read([UNPARTITIONED]) for n in ("calendar", "products", "stores")}

    def features(first: dt.date, last: dt.date) -> pl.DataFrame:
        return build_features(
            sales,
            first,
            last,
            fc.horizon,
            fc.lookback_days,
            plans=plans,
            calendar=static["calendar"].lazy(),
            products=static["products"],
            stores=static["stores"],
            known_in_advance=f.known_in_advance,
            calendar_columns=f.calendar,
            product_attributes=f.product_attributes,
            store_attributes=f.store_attributes,
        ).collect()

    def timed(fn) -> tuple[float, object]:
        started = time.perf_counter()
        value = fn()
        return time.perf_counter() - started, value

    result: dict = {}
    first = day - dt.timedelta(days=FEATURE_DAYS)
    for name, (lo, hi) in {
        "features_1_day": (day, day),
        f"features_{FEATURE_DAYS}_days": (first, day - dt.timedelta(days=1)),
    }.items():
        times, frame = [], None
        for _ in range(repeats):
            seconds, frame = timed(lambda lo=lo, hi=hi: features(lo, hi))
            times.append(seconds)
        result[name] = {"seconds": times, "rows": frame.height}
    todays = features(day, day)
    # D's champion, as the daily run uses it.
    gate = tables.table("model_promotion").read([day.isoformat()])
    booster = models.load(gate["champion_version"][0] or gate["challenger_version"][0])
    times = []
    for _ in range(repeats):
        seconds, _ = timed(lambda: predict(booster, todays, "bench"))
        times.append(seconds)
    result["inference"] = {"seconds": times, "rows": todays.height}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def summarize_throughput(raw: dict) -> dict:
    return {
        name: {
            "seconds": spread(item["seconds"]),
            "rows": item["rows"],
            "rows_per_s": spread([item["rows"] / s for s in item["seconds"]], 0),
            **{k: v for k, v in item.items() if k not in ("seconds", "rows")},
        }
        for name, item in raw.items()
    }


# -- sections --------------------------------------------------------------------------------


def section_scale(name: str, repeats: int, tmp: Path) -> dict:
    stores, items = SCALES[name]
    folder = tmp / f"scale_{name}"
    log(f"scale {name}: {stores} x {items} series, set-up")
    env = {"DAGSTER_HOME": str(folder / "dagster_home")}
    os.environ.update(env)
    setup = set_up(folder, stores, items)
    config = folder / "batch_ml.toml"
    result = {
        "series": stores * items,
        "stores": stores,
        "items": items,
        "setup": setup,
        "history_runs": HISTORY_RUNS,
    }
    log(f"scale {name}: daily runs, 3 and 1 year of history alternating")
    daily = measure_daily(config, repeats)
    result["daily_3y"], result["daily_1y"] = daily["3y"], daily["1y"]
    log(f"scale {name}: throughput")
    result["throughput"] = summarize_throughput(run_child("_throughput", str(config), str(repeats)))
    runs = setup["training"]
    result["throughput"]["training"] = {
        "seconds": spread([r["duration_s"] for r in runs]),
        "rows": runs[-1]["train_rows"],
        "rows_per_s": spread([r["train_rows"] / r["duration_s"] for r in runs], 0),
        "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs], 1),
        "best_iteration": runs[-1]["best_iteration"],
        "measured": f"the {len(runs)} weekly training_job runs of the set-up (asset metadata)",
    }
    peak_3y = result["daily_3y"]["dagster"]["peak_rss_mb"]["median"]
    peak_1y = result["daily_1y"]["dagster"]["peak_rss_mb"]["median"]
    result["memory_3y_over_1y"] = round(peak_3y / peak_1y, 3)
    return result


def section_storage(tmp: Path) -> dict:
    from benchmarks import storage_io

    out = RESULTS / "bench_storage_io.json"
    storage_io.main(["--partitions", "40", "--rows", "30000", "--repeats", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    io = report["results"]["io_calls"]
    mine = "parquet_table (batch_ml)"
    summary = {"result_file": out.name, "params": report["params"] | {"notes": None}}
    for phase, arms in io.items():
        if mine in arms:
            arm = arms[mine]
            summary[phase] = {
                "seconds": {k: arm[f"{k}_s"] for k in ("median", "min", "max")},
                "rows": arm.get("rows"),
                "rows_per_s_median": arm.get("rows_per_s_median"),
            }
    return summary


def section_backfill(per_partition_days: int) -> dict:
    from benchmarks import backfill

    stores, items = SCALES["1k"]
    out = RESULTS / "bench_backfill.json"
    backfill.main(
        [
            "--days",
            "365",
            "--per-partition-days",
            str(per_partition_days),
            "--stores",
            str(stores),
            "--items",
            str(items),
            "--days-per-run",
            str(BACKFILL_CHUNKS["days_per_run"]),
            "--weeks-per-run",
            str(BACKFILL_CHUNKS["weeks_per_run"]),
            "--out",
            str(out),
        ]
    )
    return backfill_summary(json.loads(out.read_text()), out.name)


def section_sentiment(repeats: int) -> dict:
    from benchmarks import sentiment_throughput

    out = RESULTS / "bench_sentiment_throughput.json"
    sentiment_throughput.main(["--repeats", str(repeats), "--out", str(out)])
    report = json.loads(out.read_text())
    r = report["results"]
    return {
        "result_file": out.name,
        "rows": r["rows"],
        "family": report["setup"]["family"],
        "dagster_rows_per_s": r["dagster"]["rows_per_s"]["median"],
        "plain_rows_per_s": r["plain"]["rows_per_s"]["median"],
        "ratio": r["ratio"],
        "target": r["target"],
        "dagster_peak_rss_mb": r["dagster"]["peak_rss_mb"]["median"],
    }


def backfill_summary(report: dict, name: str) -> dict:
    """The headline figures of a benchmarks.backfill report (all of it is in `name`)."""
    from benchmarks.backfill import batched_chunks

    days_per_run, weeks_per_run = batched_chunks(report["params"])
    batched = report.get("batched") or {}
    arms = report.get("per_partition") or {}
    arm = arms.get("multiprocess") or next(iter(arms.values()), {})
    measured = arm.get("measured") or {}
    return {
        "result_file": name,
        "days": report["params"]["days"],
        "series": report["params"]["stores"] * report["params"]["items"],
        "succeeded": report.get("all_backfills_succeeded"),
        "batched_days_per_run": days_per_run,
        "batched_weeks_per_run": weeks_per_run,
        "compute_floor_stage_s": (report.get("compute_floor") or {}).get("stage_seconds"),
        "batched_wall_s": batched.get("wall_seconds"),
        "batched_runs": batched.get("runs"),
        "batched_waves": batched.get("submission_waves"),
        "batched_run_startup_median_s": batched.get("median_run_startup_seconds"),
        "batched_seconds_with_no_run_in_flight": batched.get("seconds_with_no_run_in_flight"),
        "per_partition_executor": arm.get("executor"),
        "per_partition_days": arm.get("per_partition_days"),
        "per_partition_measured_wall_s": measured.get("wall_seconds"),
        "per_partition_measured_runs": measured.get("runs"),
        "per_partition_extrapolated_runs": (arm.get("extrapolated") or {}).get("runs"),
        "per_partition_extrapolated_wall_s": (arm.get("extrapolated") or {}).get(
            "wall_seconds_saturated_queue"
        ),
        "ratio": (arm.get("ratios") or {}).get("saturated_queue"),
        "compute_floor_s": (report.get("compute_floor") or {}).get("seconds"),
    }


# -- report ----------------------------------------------------------------------------------


def machine() -> dict:
    # The results the run itself writes do not make the code dirty.
    dirty = facts.uncommitted(["batch_ml", "benchmarks", ":(exclude)benchmarks/results"])
    return {
        **facts.machine(),
        "loadavg_at_start": facts.loadavg(),
        "versions": facts.versions(PACKAGES),
        "git": facts.git("rev-parse", "--short=12", "HEAD") + ("+dirty" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_daily":
        return daily_child(argv[1], argv[2])
    if argv and argv[0] == "_throughput":
        return throughput_child(argv[1], int(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=("scale", "storage", "backfill", "sentiment"),
        default=["scale", "storage", "backfill", "sentiment"],
    )
    parser.add_argument("--scales", nargs="+", choices=list(SCALES), default=list(DEFAULT_SCALES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backfill-per-partition-days", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore")
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.setdefault("sections", {})
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="batch_ml_bench_"))
    try:
        if "scale" in args.sections:
            scales = report["sections"].setdefault("scale", {})
            for name in args.scales:
                scales[name] = {"machine": machine(), **section_scale(name, args.repeats, tmp)}
                save(report, args.out)
        if "storage" in args.sections:
            report["sections"]["storage"] = {"machine": machine(), **section_storage(tmp)}
            save(report, args.out)
        if "backfill" in args.sections:
            report["sections"]["backfill"] = {
                "machine": machine(),
                **section_backfill(args.backfill_per_partition_days),
            }
            save(report, args.out)
        if "sentiment" in args.sections:
            report["sections"]["sentiment"] = {
                "machine": machine(),
                **section_sentiment(args.repeats),
            }
            save(report, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.out == DEFAULT_OUT and update_readme(report):
        log("README.md: benchmark table updated")
    log(f"done in {time.perf_counter() - started:.0f} s: {args.out}")
    return 0


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _mmm(stat: dict, digits: int = 2) -> str:
    """median (min-max)"""
    return (
        f"{_fmt(stat['median'], digits)} ({_fmt(stat['min'], digits)}-{_fmt(stat['max'], digits)})"
    )


def _machine_line(m: dict) -> str:
    v = m["versions"]
    return (
        f"{m['cpus']} CPUs, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}; "
        + ", ".join(f"{k} {v[k]}" for k in v if v[k])
        + f"; git {m['git']}; load average at start {m['loadavg_at_start']}"
    )


def dagster_runs(daily: dict) -> int:
    """Dagster runs a measured day took: one since the day's chain is one run of the daily
    job; sections measured before that recorded three stage runs."""
    return len(daily["dagster"].get("stages", {})) or 1


def summary_table(report: dict) -> str:
    """The short table for the README: one line per figure the issue asks for."""
    from benchmarks.backfill import batched_chunks

    sections = report["sections"]
    rows = ["| figure | result | target |", "|---|---|---|"]
    for name, sc in sections.get("scale", {}).items():
        series = f"{sc['series']:,} series"
        for years in ("1y", "3y"):
            d = sc[f"daily_{years}"]
            target = "<= 1.3x" if name == "30k" else ""
            met = " (met)" if d["ratio_dagster_over_floor"] <= 1.3 else " (missed)"
            runs = dagster_runs(d)
            dagster, floor = d["dagster"]["seconds"]["median"], d["floor"]["seconds"]["median"]
            rows.append(
                f"| daily incremental run, {series}, {years[0]} year(s) of history: through "
                f"Dagster ({'one run' if runs == 1 else f'{runs} runs'} of the daily job) / "
                f"compute floor | {_fmt(dagster, 2)} s / {_fmt(floor, 2)} s = "
                f"**{d['ratio_dagster_over_floor']:.2f}x** (Dagster +{dagster - floor:.2f} s) "
                f"| {target}{met if target else ''} |"
            )
        m1 = sc["daily_1y"]["dagster"]["peak_rss_mb"]["median"]
        m3 = sc["daily_3y"]["dagster"]["peak_rss_mb"]["median"]
        ok = "met" if abs(sc["memory_3y_over_1y"] - 1) <= 0.10 else "missed"
        rows.append(
            f"| peak RSS of the daily run, {series}: 3 years / 1 year of history | "
            f"{m3:,.0f} MB / {m1:,.0f} MB = **{sc['memory_3y_over_1y']:.3f}** | within 10% ({ok}) |"
        )
        t = sc["throughput"]
        feats = {k: v for k, v in t.items() if k.startswith("features_")}
        rows.append(
            f"| feature engineering, {series} | "
            + ", ".join(
                f"{k.removeprefix('features_').replace('_', ' ')}: "
                f"{_fmt(v['rows_per_s']['median'])} rows/s ({v['rows']:,} rows)"
                for k, v in feats.items()
            )
            + " | |"
        )
        tr, inf = t["training"], t["inference"]
        rows.append(
            f"| training, {series} | {_fmt(tr['seconds']['median'], 1)} s for {tr['rows']:,} "
            f"examples ({_fmt(tr['rows_per_s']['median'])} rows/s, {tr['best_iteration']} "
            "rounds) | |"
        )
        rows.append(
            f"| inference, {series} | {_fmt(inf['rows_per_s']['median'])} rows/s "
            f"({inf['rows']:,} rows in {_fmt(inf['seconds']['median'], 2)} s) | |"
        )
    st = sections.get("storage")
    if st:
        for phase in ("write", "read_all_collect", "read_lookback_sum"):
            if phase in st:
                params, res = st["params"], st[phase]
                rows.append(
                    f"| storage {phase.replace('_', ' ')}, {params['partitions']} partitions x "
                    f"{params['rows']:,} rows | {_fmt(res['rows_per_s_median'])} rows/s "
                    f"({_fmt(res['seconds']['median'], 2)} s) | |"
                )
    bf = sections.get("backfill")
    if bf:
        # A bench.json written before the chunks were recorded still renders.
        days_per_run, weeks_per_run = batched_chunks(bf)
        rows.append(
            f"| full-graph backfill, {bf['days']} days, {bf['series']:,} series, through the "
            f"daemon | batched {_fmt(bf['batched_wall_s'])} s ({bf['batched_runs']} runs in "
            f"{bf['batched_waves']} daemon waves, "
            f"`[backfill]` {days_per_run} days / {weeks_per_run} weeks per run; compute floor "
            f"{_fmt(bf.get('compute_floor_s'))} s); "
            f"one run per partition ({bf['per_partition_executor']} executor) measured on "
            f"{bf['per_partition_days']} days, **extrapolated** to "
            f"{bf['per_partition_extrapolated_runs']:,} runs: "
            f"{_fmt(bf['per_partition_extrapolated_wall_s'])} s; **{_fmt(bf['ratio'], 1)}x** | "
            f">= 20x ({'met' if (bf['ratio'] or 0) >= 20 else 'missed'}); <= 120 s "
            f"({'met' if (bf['batched_wall_s'] or 1e9) <= 120 else 'missed'}) |"
        )
    se = sections.get("sentiment")
    if se:
        rows.append(
            f"| sentiment scoring, {se['rows']:,} reviews a day (`{se['family']}` champion): "
            f"`review_sentiment` through Dagster / plain predict | "
            f"{_fmt(se['dagster_rows_per_s'])} / {_fmt(se['plain_rows_per_s'])} rows/s = "
            f"**{se['ratio']:.2f}x** | >= {se['target']}x "
            f"({'met' if se['ratio'] >= se['target'] else 'missed'}) |"
        )
    return "\n".join(rows)


def _event_store_lines(sc: dict) -> list[str]:
    """What of the Dagster path's extra time is Dagster's event log (sections before it was
    recorded: nothing)."""
    lines = []
    for years in ("3y", "1y"):
        d = sc[f"daily_{years}"]
        ev = d["dagster"].get("event_store")
        if not ev:
            return []
        extra = d["dagster"]["seconds"]["median"] - d["floor"]["seconds"]["median"]
        lines.append(
            f"{years}: the Dagster path took {extra:.2f} s more than the floor (medians); "
            f"storing its {ev['events']} run events in the instance's SQLite event log took "
            f"{_mmm(ev['seconds'])} s of it"
        )
    return [
        "Dagster's share: " + "; ".join(lines) + f" ({event_store.STORAGE}).",
        "",
    ]


def markdown(report: dict) -> str:
    sections = report["sections"]
    lines = [
        "# batch_ml benchmark suite",
        "",
        f"`make bench` (python -m benchmarks.suite), last written {report['created_utc']}. "
        "Each figure: median (min-max) of the repeats. Machine of each section below.",
        "",
        summary_table(report),
        "",
    ]
    for sc in sections.get("scale", {}).values():
        lines += [
            f"## {sc['series']:,} series ({sc['stores']} stores x {sc['items']} items)",
            "",
            f"Machine: {_machine_line(sc['machine'])}.",
            "",
            f"Set-up (untimed): {sc['setup']['history']}; seconds {sc['setup']['seconds']}.",
            "",
            f"3-year and 1-year daily runs: {sc.get('history_runs', HISTORY_RUNS)}.",
            "",
            "| history | Dagster runs | through Dagster (s) | floor (s) | Dagster overhead (s) "
            "| ratio | peak RSS Dagster (MB) | peak RSS floor (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for years in ("3y", "1y"):
            d = sc[f"daily_{years}"]
            dagster, floor = d["dagster"], d["floor"]
            lines.append(
                f"| {years} | {dagster_runs(d)} | **{_mmm(dagster['seconds'])}** | "
                f"**{_mmm(floor['seconds'])}** | "
                f"{dagster['seconds']['median'] - floor['seconds']['median']:.2f} | "
                f"{d['ratio_dagster_over_floor']:.2f}x | {_mmm(dagster['peak_rss_mb'], 0)} | "
                f"{_mmm(floor['peak_rss_mb'], 0)} |"
            )
        same = all(sc[f"daily_{y}"].get("same_outputs") for y in ("3y", "1y"))
        lines += [
            "",
            "The Dagster runs and the floor wrote the same rows to D's partitions (row counts and "
            f"content hashes, every repeat): {'yes' if same else '**NO**'}: "
            + ", ".join(f"{k} {v}" for k, v in sc["daily_3y"].get("outputs", {}).items())
            + ".",
            "",
            *_event_store_lines(sc),
            "The floor's parts (3 years of history): "
            + ", ".join(
                f"{part.replace('_', ' ')} {_mmm(v['seconds'])} s / "
                f"{v['peak_rss_mb']['median']:.0f} MB"
                for part, v in sc["daily_3y"]["floor"]["stages"].items()
            )
            + ".",
            "",
            "Per asset, as recorded in its materialization metadata (3 years of history): "
            + ", ".join(
                f"{a} {v['seconds']['median']:.2f} s / {v['peak_rss_mb']['median']:.0f} MB"
                for a, v in sc["daily_3y"]["dagster"]["assets"].items()
            )
            + ".",
            "",
            "| pure code | rows | seconds | rows/s |",
            "|---|---:|---:|---:|",
        ]
        for step, t in sc["throughput"].items():
            lines.append(
                f"| {step} | {t['rows']:,} | {_mmm(t['seconds'])} | {_mmm(t['rows_per_s'], 0)} |"
            )
        lines.append("")
    for key in ("storage", "backfill", "sentiment"):
        if key in sections:
            lines += [
                f"## {key}",
                "",
                f"Machine: {_machine_line(sections[key]['machine'])}. "
                f"Full report: benchmarks/results/{sections[key]['result_file']} and its .md.",
                "",
            ]
    return "\n".join(lines) + "\n"


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def update_readme(report: dict) -> bool:
    """Replace the table between the README's bench markers; False when there are none."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    sections = [*report["sections"].get("scale", {}).values()] + [
        report["sections"][k]
        for k in ("storage", "backfill", "sentiment")
        if k in report["sections"]
    ]
    machines = {_machine_line(sec["machine"]).split("; git")[0] for sec in sections}
    commits = sorted({sec["machine"]["git"] for sec in sections})
    block = (
        f"{README_START}\nMeasured {report['created_utc'][:10]} on "
        + " / ".join(sorted(machines))
        + f" (git {', '.join(commits)}; details in benchmarks/results/bench.md).\n\n"
        + summary_table(report)
        + f"\n{README_END}"
    )
    README.write_text(head + block + tail)
    return True


def save(report: dict, out: Path) -> None:
    report["created_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    sys.exit(main())
