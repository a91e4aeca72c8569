"""Benchmark: stock `DuckDBPolarsIOManager` vs this project's `ParquetTableIOManager`.

Same data for both: a daily-partitioned asset with R rows per partition (store x item series:
date, store_id, item_id, units, price, on_promo) over N partitions. Measured, K repeats each,
every repeat in fresh temporary directories:

- materialize: N one-partition runs through `dg.materialize` (ephemeral instance), a rewrite
  of the same N partitions, a downstream run reading all N partitions (AllPartitionMapping)
  and summing a column, and a downstream run reading a 56-day lookback window for one day
  (TimeWindowPartitionMapping). A no-op IO manager gives the per-run Dagster overhead.
- io_calls: the same work calling `handle_output` / `load_input` directly (no run overhead).
- parallel: W OS processes (spawn) each materialize N/W different partitions at the same
  time; wall time, partitions that failed with a lock error, lock conflicts the managers
  retried internally (counted by wrapping `duckdb.connect`), and rows stored afterwards.
- observation: does the stock manager swap values of a frame whose columns are reordered?

Run: `.venv/bin/python -m benchmarks.storage_io [--partitions N --rows R --repeats K --out P]`
(or `make bench-storage`). Writes P (JSON) and P with suffix .md (Markdown summary).
"""

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl

try:
    from dagster_duckdb_polars import DuckDBPolarsIOManager
except ImportError as exc:  # the `bench` dependency group is not installed by default
    raise SystemExit(
        "dagster-duckdb-polars is missing: `make bench-storage`, or first "
        "`.tools/bin/uv sync --frozen --group bench`"
    ) from exc

from batch_ml.platform.resources import ParquetTableIOManager
from benchmarks.facts import git, loadavg, uncommitted, version

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", module="dagster")

START = dt.date(2024, 1, 1)
ASSET = "sales"
COLUMNS = ["date", "store_id", "item_id", "units", "price", "on_promo"]
METADATA = {"partition_column": "date", "partition_expr": "date"}
N_STORES = 50
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
STOCK, PARQUET, NOOP = "duckdb_polars (stock)", "parquet_table (batch_ml)", "noop (run overhead)"
MANAGERS = (STOCK, PARQUET)
DEFAULT_OUT = Path("benchmarks/results/storage_io.json")
# The code under test, fingerprinted at the start and the end of a run.
STORAGE_CODE = ("batch_ml/platform/storage", "batch_ml/platform/resources.py")

# Lock conflicts seen by duckdb.connect in this process (see `count_lock_conflicts`).
LOCK_CONFLICTS = 0


# -- data -----------------------------------------------------------------------------------


def partition_keys(n: int) -> list[str]:
    return [(START + dt.timedelta(days=i)).isoformat() for i in range(n)]


def daily_partitions(n: int) -> dg.DailyPartitionsDefinition:
    end = START + dt.timedelta(days=n)
    return dg.DailyPartitionsDefinition(start_date=START.isoformat(), end_date=end.isoformat())


def make_frames(keys: list[str], rows: int) -> dict[str, pl.DataFrame]:
    """One frame per partition key: `rows` store x item series, deterministic per key."""
    items = -(-rows // N_STORES)
    idx = np.arange(rows)
    series = pl.DataFrame(
        {
            "store_id": [f"S{s:03d}" for s in idx // items],
            "item_id": [f"I{i:05d}" for i in idx % items],
        }
    )
    frames = {}
    for key in keys:
        day = dt.date.fromisoformat(key)
        rng = np.random.default_rng(day.toordinal())
        frames[key] = series.select(
            pl.lit(day, dtype=pl.Date).alias("date"),
            "store_id",
            "item_id",
            pl.Series("units", rng.poisson(5.0, rows).astype(np.float64)),
            pl.Series("price", rng.uniform(1.0, 20.0, rows).round(2)),
            pl.Series("on_promo", (rng.random(rows) < 0.1).astype(np.float64)),
        )
    return frames


# -- assets and IO managers -----------------------------------------------------------------


class NoopIOManager(dg.ConfigurableIOManager):
    """Stores nothing: a run with it costs only Dagster's own overhead."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        return pl.DataFrame({"units": [0.0]})


def build_assets(n: int, frames: dict[str, pl.DataFrame], lookback: int) -> dict[str, object]:
    daily = daily_partitions(n)

    @dg.asset(name=ASSET, partitions_def=daily, metadata=METADATA)
    def sales(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return frames[context.partition_key]

    @dg.asset(ins={ASSET: dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
    def sales_total(sales) -> dg.MaterializeResult:
        total = sales.lazy().select(pl.col("units").sum()).collect().item()
        return dg.MaterializeResult(metadata={"units_sum": float(total)})

    @dg.asset(
        partitions_def=daily,
        ins={
            ASSET: dg.AssetIn(
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-(lookback - 1))
            )
        },
    )
    def sales_lookback(sales) -> dg.MaterializeResult:
        out = sales.lazy().select(pl.col("units").sum(), pl.len()).collect()
        return dg.MaterializeResult(
            metadata={"units_sum": float(out["units"][0]), "rows": int(out["len"][0])}
        )

    return {"sales": sales, "sales_total": sales_total, "sales_lookback": sales_lookback}


def make_manager(kind: str, root: Path) -> dg.ConfigurableIOManagerFactory:
    if kind == STOCK:
        return DuckDBPolarsIOManager(database=str(root / "stock.duckdb"))
    if kind == PARQUET:
        return ParquetTableIOManager(
            tables_root=str(root / "tables"), warehouse_path=str(root / "warehouse.duckdb")
        )
    return NoopIOManager()


def io_manager_and_config(kind: str, root: Path) -> tuple[dg.IOManager, dict | None]:
    """The IOManager object and the resource config its contexts need, for direct calls."""
    factory = make_manager(kind, root)
    if isinstance(factory, DuckDBPolarsIOManager):
        config = {"database": factory.database, "connection_config": {}, "schema": None}
        return factory.create_io_manager(None), config
    return factory, None


def stored_rows(kind: str, root: Path) -> int:
    try:
        if kind == STOCK:
            with duckdb.connect(str(root / "stock.duckdb"), read_only=True) as con:
                sql = f"SELECT count(*) FROM public.{ASSET}"  # noqa: S608 - constant name
                return con.execute(sql).fetchone()[0]
        files = root / "tables" / ASSET / "*.parquet"
        return pl.scan_parquet(files).select(pl.len()).collect().item()
    except (duckdb.Error, pl.exceptions.PolarsError, OSError):
        return 0  # nothing stored at all


# -- measuring ------------------------------------------------------------------------------


def is_lock_error(text: str) -> bool:
    text = text.lower()
    return "could not set lock" in text or "conflicting lock" in text or "lock on file" in text


def count_lock_conflicts() -> None:
    """Wrap `duckdb.connect` so that every lock conflict is counted, also ones retried."""
    original = duckdb.connect

    def connect(*args, **kwargs):
        global LOCK_CONFLICTS
        try:
            return original(*args, **kwargs)
        except Exception as exc:
            if is_lock_error(str(exc)):
                LOCK_CONFLICTS += 1
            raise

    duckdb.connect = connect


def run_error(result: dg.ExecuteInProcessResult) -> str:
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(f"{error.cls_name}: {error.message.strip()}")
            error = error.cause or error.context
    return " | ".join(texts) or "run failed"


def materialize(
    assets: list, select: str, kind_root: tuple[str, Path], key: str | None
) -> tuple[float, dg.ExecuteInProcessResult]:
    """One in-process run; returns seconds and the result. Raises on failure."""
    kind, root = kind_root
    t0 = time.perf_counter()
    result = dg.materialize(
        assets,
        selection=[select],
        partition_key=key,
        resources={"io_manager": make_manager(kind, root)},
        run_config=QUIET,
        raise_on_error=False,
    )
    elapsed = time.perf_counter() - t0
    if not result.success:
        raise RuntimeError(f"{kind}: materializing {select} {key}: {run_error(result)}")
    return elapsed, result


def stats(seconds: list[float], rows: int) -> dict:
    median = statistics.median(seconds)
    return {
        "seconds": [round(s, 4) for s in seconds],
        "median_s": round(median, 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "rows": rows,
        "rows_per_s_median": round(rows / median) if median > 0 else None,
    }


def materialize_repeat(kind: str, root: Path, n: int, rows: int, lookback: int, frames) -> dict:
    """Write, rewrite, read-all and lookback-read through `dg.materialize`; seconds each."""
    assets = build_assets(n, frames, lookback)
    every = list(assets.values())
    keys = partition_keys(n)
    out = {}
    # A no-op rewrite is the same work as a no-op write: measured once.
    for phase in ("write",) if kind == NOOP else ("write", "rewrite"):
        out[phase] = sum(materialize(every, ASSET, (kind, root), k)[0] for k in keys)
    out["read_all_sum"], total = materialize(every, "sales_total", (kind, root), None)
    out["read_lookback_sum"], back = materialize(every, "sales_lookback", (kind, root), keys[-1])
    if kind != NOOP:  # check what the runs read against the data written
        expected = sum(frames[k]["units"].sum() for k in keys)
        total = total.asset_materializations_for_node("sales_total")[0].metadata
        back = back.asset_materializations_for_node("sales_lookback")[0].metadata
        out["checks"] = {
            "read_all_sum_matches": abs(total["units_sum"].value - expected) <= 1e-9 * expected,
            "lookback_rows_match": back["rows"].value == rows * lookback,
        }
    return out


def io_calls_repeat(kind: str, root: Path, n: int, lookback: int, frames) -> dict:
    """The same work as `materialize_repeat`, calling the IO manager directly."""
    manager, config = io_manager_and_config(kind, root)
    daily = daily_partitions(n)
    keys = partition_keys(n)
    out = {}
    for phase in ("write", "rewrite"):
        total = 0.0
        for key in keys:
            context = dg.build_output_context(
                asset_key=ASSET,
                partition_key=key,
                asset_partitions_def=daily,
                definition_metadata=METADATA,
                resource_config=config,
            )
            t0 = time.perf_counter()
            manager.handle_output(context, frames[key])
            total += time.perf_counter() - t0
        out[phase] = total

    def input_context(first: str, last: str) -> dg.InputContext:
        upstream = dg.build_output_context(
            asset_key=ASSET,
            asset_partitions_def=daily,
            definition_metadata=METADATA,
            resource_config=config,
        )
        return dg.build_input_context(
            asset_key=ASSET,
            upstream_output=upstream,
            dagster_type=dg.PythonObjectDagsterType(pl.DataFrame),
            asset_partition_key_range=dg.PartitionKeyRange(first, last),
            asset_partitions_def=daily,
            resource_config=config,
        )

    def timed_load(first: str, last: str, compute: Callable[[pl.LazyFrame], object]) -> float:
        context = input_context(first, last)  # built outside the timed section
        t0 = time.perf_counter()
        compute(manager.load_input(context).lazy())
        return time.perf_counter() - t0

    def units_sum(frame: pl.LazyFrame) -> object:
        return frame.select(pl.col("units").sum()).collect()

    out["read_all_sum"] = timed_load(keys[0], keys[-1], units_sum)
    out["read_all_collect"] = timed_load(keys[0], keys[-1], pl.LazyFrame.collect)
    out["read_lookback_sum"] = timed_load(keys[-lookback], keys[-1], units_sum)
    return out


# -- parallel writers -----------------------------------------------------------------------


def parallel_worker(kind, root, n, rows, keys, barrier, results) -> None:
    """One OS process: imports once, warms up, then materializes its partitions in turn."""
    try:
        count_lock_conflicts()
        frames = make_frames(keys, rows)
        assets = list(build_assets(n, frames, 1).values())
        with tempfile.TemporaryDirectory() as warm:  # first run pays one-off import costs
            materialize(assets, ASSET, (NOOP, Path(warm)), keys[0])
        barrier.wait(timeout=600)
        failures, t0 = [], time.perf_counter()
        for key in keys:
            try:
                materialize(assets, ASSET, (kind, Path(root)), key)
            except Exception as exc:
                failures.append({"partition": key, "error": str(exc)[:600]})
        results.put(
            {
                "pid": os.getpid(),
                "seconds": time.perf_counter() - t0,
                "failures": failures,
                "lock_conflicts": LOCK_CONFLICTS,
            }
        )
    except Exception:
        results.put({"pid": os.getpid(), "crash": traceback.format_exc()[-2000:]})


def parallel_repeat(kind: str, root: Path, n: int, rows: int, workers: int) -> dict:
    keys = partition_keys(n)
    chunks = [list(c) for c in np.array_split(np.array(keys), workers) if len(c)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(chunks) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=parallel_worker, args=(kind, str(root), n, rows, chunk, barrier, results)
        )
        for chunk in chunks
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=600)
    t0 = time.perf_counter()
    reports = [results.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=60)
    crashes = [r["crash"] for r in reports if "crash" in r]
    if crashes:
        raise RuntimeError(f"{kind}: parallel worker crashed:\n{crashes[0]}")
    failures = [f for r in reports for f in r["failures"]]
    lock_failures = [f for f in failures if is_lock_error(f["error"])]
    return {
        "wall_s": wall,
        "worker_s": sorted(round(r["seconds"], 3) for r in reports),
        "failed_partitions": len(failures),
        "lock_error_partitions": len(lock_failures),
        "lock_conflicts_retried_or_failed": sum(r["lock_conflicts"] for r in reports),
        "rows_stored": stored_rows(kind, root),
        "rows_expected": n * rows,
        "error_samples": sorted({f["error"][:300] for f in failures})[:3],
    }


# -- observation: reordered columns ---------------------------------------------------------


def reordered_columns_observation(kind: str, root: Path, rows: int) -> dict:
    """Write day 1, then day 2 with `units` and `price` swapped in column order; read day 2."""
    keys = partition_keys(2)
    frames = make_frames(keys, rows)
    manager, config = io_manager_and_config(kind, root)
    daily = daily_partitions(2)

    def write(key: str, frame: pl.DataFrame) -> None:
        context = dg.build_output_context(
            asset_key=ASSET,
            partition_key=key,
            asset_partitions_def=daily,
            definition_metadata=METADATA,
            resource_config=config,
        )
        manager.handle_output(context, frame)

    reordered = ["date", "store_id", "item_id", "price", "units", "on_promo"]
    try:
        write(keys[0], frames[keys[0]])
        write(keys[1], frames[keys[1]].select(reordered))
        upstream = dg.build_output_context(
            asset_key=ASSET, definition_metadata=METADATA, resource_config=config
        )
        context = dg.build_input_context(
            asset_key=ASSET,
            upstream_output=upstream,
            dagster_type=dg.PythonObjectDagsterType(pl.DataFrame),
            partition_key=keys[1],
            asset_partitions_def=daily,
            resource_config=config,
        )
        back = manager.load_input(context).lazy().collect()
    except Exception as exc:
        return {
            "values_swapped_silently": False,
            "error": f"{type(exc).__name__}: {str(exc)[:300]}",
            "description": "the reordered write raised an error (nothing swapped silently)",
        }
    sent = frames[keys[1]]
    swapped = back["units"].equals(sent["price"]) and back["price"].equals(sent["units"])
    intact = back["units"].equals(sent["units"]) and back["price"].equals(sent["price"])
    if swapped:
        text = "values swapped: the column `units` now holds the prices, `price` the units"
    elif intact:
        text = "columns matched by name: values read back intact"
    else:
        text = "values read back differ from those written, but are not a plain swap"
    return {"values_swapped_silently": swapped, "values_intact": intact, "description": text}


# -- report ---------------------------------------------------------------------------------


def filesystem_of(path: Path) -> str | None:
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    best = max(
        (m for m in mounts if str(path.resolve()).startswith(m[1])),
        key=lambda m: len(m[1]),
        default=None,
    )
    return best[2] if best else None


def git_facts() -> dict:
    digest = hashlib.sha256()
    for path in sorted(p for s in STORAGE_CODE for p in Path(s).rglob("*.py")):
        digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "head": git("rev-parse", "HEAD") or None,
        "uncommitted_storage_changes": uncommitted(STORAGE_CODE),
        "storage_code_sha256": digest.hexdigest(),
    }


def machine_facts(tmp: Path) -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "tmp_filesystem": filesystem_of(tmp),
        "loadavg_1_5_15_at_start": loadavg(),
        "versions": {
            d: version(d)
            for d in ("dagster", "dagster-duckdb", "dagster-duckdb-polars", "duckdb", "polars")
        }
        | {"pyarrow": version("pyarrow")},
    }


def fmt_rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def markdown(report: dict) -> str:
    p, m = report["params"], report["machine"]
    lines = [
        "# Storage IO benchmark",
        "",
        f"`{report['command']}` at {report['created_utc']} (git {str(report['git']['head'])[:12]}"
        + (", uncommitted storage changes" if report["git"]["uncommitted_storage_changes"] else "")
        + (
            ", STORAGE CODE CHANGED DURING RUN"
            if report["git"]["storage_code_changed_during_run"]
            else ""
        )
        + ").",
        f"{p['partitions']} daily partitions x {p['rows']:,} rows, {p['repeats']} repeats "
        f"(median, min, max in seconds); lookback {p['lookback']} partitions; "
        f"{p['workers']} parallel processes.",
        f"Machine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"temp on {m['tmp_filesystem']}, load average (1 min) {m['loadavg_1_5_15_at_start'][0]} "
        f"at start, {m['loadavg_1_5_15_at_end'][0]} at end; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        "",
    ]
    for section, title in (
        ("materialize", "Through `dg.materialize` (one run per partition, ephemeral instance)"),
        ("io_calls", "Direct `handle_output` / `load_input` calls (no run overhead)"),
    ):
        lines += [
            f"## {title}",
            "",
            "| phase | IO manager | median s | min s | max s | rows/s (median) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for phase, by_manager in report["results"][section].items():
            for kind, s in by_manager.items():
                lines.append(
                    f"| {phase} | {kind} | {s['median_s']:.3f} | {s['min_s']:.3f} | "
                    f"{s['max_s']:.3f} | {fmt_rate(s['rows_per_s_median'])} |"
                )
        lines.append("")
    lines += [
        f"## Parallel write ({p['workers']} processes x {p['partitions'] // p['workers']} "
        "partitions, fresh store)",
        "",
        "| IO manager | wall median s | min s | max s | failed partitions (lock) per repeat | "
        "lock conflicts (incl. retried) per repeat | rows stored / expected |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for kind, s in report["results"]["parallel"].items():
        w = s["wall"]
        lines.append(
            f"| {kind} | {w['median_s']:.3f} | {w['min_s']:.3f} | {w['max_s']:.3f} | "
            + ", ".join(
                f"{a} ({b})" for a, b in zip(s["failed_partitions"], s["lock_errors"], strict=True)
            )
            + " | "
            + ", ".join(str(c) for c in s["lock_conflicts"])
            + " | "
            + ", ".join(f"{r:,}/{s['rows_expected']:,}" for r in s["rows_stored"])
            + " |"
        )
    lines += ["", "## Reordered columns written to an existing table", ""]
    for kind, obs in report["observations"]["reordered_columns"].items():
        lines.append(
            f"- {kind}: values_swapped_silently={obs['values_swapped_silently']} - "
            f"{obs['description']}"
        )
    checks = report["results"]["checks"]
    lines += ["", f"Read checks (sums and lookback row counts match the data): {checks}", ""]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--lookback", type=int, default=56)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.partitions < args.workers or args.repeats < 1 or args.rows < 1:
        parser.error("need partitions >= workers, repeats >= 1, rows >= 1")
    n, rows, lookback = args.partitions, args.rows, min(args.lookback, args.partitions)
    total_rows = n * rows
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {text}", flush=True)

    git_start = git_facts()
    frames = make_frames(partition_keys(n), rows)
    log(f"data: {n} partitions x {rows:,} rows ({total_rows:,} rows)")
    with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
        warm = build_assets(n, frames, lookback)
        materialize(list(warm.values()), ASSET, (NOOP, Path(tmp)), partition_keys(n)[0])
        machine = machine_facts(Path(tmp))

    runs: dict[str, dict[str, list]] = {"materialize": {}, "io_calls": {}}
    checks: dict[str, list] = {}
    for rep in range(args.repeats):
        order = (NOOP, *MANAGERS) if rep % 2 == 0 else (NOOP, *reversed(MANAGERS))
        for kind in order:
            with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
                res = materialize_repeat(kind, Path(tmp), n, rows, lookback, frames)
            if "checks" in res:
                checks.setdefault(kind, []).append(res.pop("checks"))
            for phase, seconds in res.items():
                runs["materialize"].setdefault(phase, {}).setdefault(kind, []).append(seconds)
            log(f"repeat {rep + 1} materialize {kind}: " + _brief(res))
            if kind == NOOP:
                continue
            with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
                res = io_calls_repeat(kind, Path(tmp), n, lookback, frames)
            for phase, seconds in res.items():
                runs["io_calls"].setdefault(phase, {}).setdefault(kind, []).append(seconds)
            log(f"repeat {rep + 1} io calls    {kind}: " + _brief(res))

    rows_of = {
        "write": total_rows,
        "rewrite": total_rows,
        "read_all_sum": total_rows,
        "read_all_collect": total_rows,
        "read_lookback_sum": lookback * rows,
    }
    results: dict = {
        section: {
            phase: {kind: stats(secs, rows_of[phase]) for kind, secs in phases[phase].items()}
            for phase in rows_of  # a fixed order of phases
            if phase in phases
        }
        for section, phases in runs.items()
    }

    parallel: dict[str, dict] = {}
    for rep in range(args.repeats):
        for kind in MANAGERS:
            with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
                res = parallel_repeat(kind, Path(tmp), n, rows, args.workers)
            entry = parallel.setdefault(
                kind,
                {
                    "walls": [],
                    "failed_partitions": [],
                    "lock_errors": [],
                    "lock_conflicts": [],
                    "rows_stored": [],
                    "rows_expected": res["rows_expected"],
                    "worker_s": [],
                    "error_samples": [],
                },
            )
            entry["walls"].append(res["wall_s"])
            entry["failed_partitions"].append(res["failed_partitions"])
            entry["lock_errors"].append(res["lock_error_partitions"])
            entry["lock_conflicts"].append(res["lock_conflicts_retried_or_failed"])
            entry["rows_stored"].append(res["rows_stored"])
            entry["worker_s"].append(res["worker_s"])
            for sample in res["error_samples"]:
                if sample not in entry["error_samples"] and len(entry["error_samples"]) < 3:
                    entry["error_samples"].append(sample)
            log(
                f"repeat {rep + 1} parallel {kind}: {res['wall_s']:.2f}s wall, "
                f"{res['failed_partitions']} failed ({res['lock_error_partitions']} lock), "
                f"{res['lock_conflicts_retried_or_failed']} lock conflicts, "
                f"{res['rows_stored']:,}/{res['rows_expected']:,} rows"
            )
    for entry in parallel.values():
        entry["wall"] = stats(entry.pop("walls"), total_rows)
    results["parallel"] = parallel
    results["checks"] = {
        kind: all(all(c.values()) for c in per_rep) for kind, per_rep in checks.items()
    }

    observations = {}
    for kind in MANAGERS:
        with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
            observations[kind] = reordered_columns_observation(kind, Path(tmp), min(rows, 1000))
        log(f"reordered columns {kind}: {observations[kind]['description']}")

    git_end = git_facts()
    changed = git_end["storage_code_sha256"] != git_start["storage_code_sha256"]
    report = {
        "benchmark": "storage_io",
        "command": "python -m benchmarks.storage_io "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(time.perf_counter() - started, 1),
        "params": {
            "partitions": n,
            "rows": rows,
            "repeats": args.repeats,
            "workers": args.workers,
            "lookback": lookback,
            "columns": COLUMNS,
            "notes": (
                "Seconds are totals per phase per repeat; every repeat starts from empty "
                "storage in a fresh temporary directory. materialize = in-process "
                "dg.materialize with an ephemeral instance, one run per partition; the noop IO "
                "manager gives the per-run overhead. read_all_sum / read_lookback_sum load "
                "the input and sum `units` (a LazyFrame for parquet_table, so only that "
                "column is read); read_all_collect loads every column. parallel = spawned "
                "processes, each materializing its own contiguous chunk of partitions; lock "
                "conflicts count every failed duckdb.connect on a lock (both managers retry "
                "these internally), lock errors are partitions whose run failed on one."
            ),
        },
        "machine": machine | {"loadavg_1_5_15_at_end": loadavg()},
        "git": git_start
        | {"head_at_end": git_end["head"], "storage_code_changed_during_run": changed},
        "results": results,
        "observations": {"reordered_columns": observations},
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    log(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _brief(res: dict) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in res.items())


if __name__ == "__main__":
    sys.exit(main())
