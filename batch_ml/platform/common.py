"""Shared wiring of the asset factories: build context, automation, retries, cost metadata,
finite-value checks."""

from __future__ import annotations

import re
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.config import ProjectConfig
from batch_ml.platform.partitions import Partitioning
from batch_ml.platform.product import Product
from batch_ml.platform.sources.contract import Source

# Declarative automation (the daemon's automation sensor): once the landing sensor has
# loaded a new day, the latest model week, predictions, accuracy and the report follow as
# soon as everything they read is there. Backfills of past days stay explicit.
BRING_UP_TO_DATE = dg.AutomationCondition.eager()


def bring_up_to_date_ignoring(*assets: str) -> dg.AutomationCondition:
    """BRING_UP_TO_DATE, not waiting for `assets`: eager() waits for every missing dependency,
    and an asset that exists only once a person acted (a champion override) must not hold
    the others back. What it records applies to partitions materialized after it."""
    return BRING_UP_TO_DATE.ignore(dg.AssetSelection.assets(*assets))


# Transient errors (I/O, a briefly locked warehouse) are retried with backoff; a file that
# breaks the contract raises `dg.Failure(allow_retries=False)` and is not retried.
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class BuildContext:
    """What a product's asset factories build from: the project config, the product's
    declaration, its partitions and its landing sources."""

    cfg: ProjectConfig
    product: Product
    parts: Partitioning
    sources: dict[str, Source]

    @staticmethod
    def from_config(cfg: ProjectConfig, product: Product) -> BuildContext:
        parts = Partitioning.from_config(cfg, product.first_week(cfg))
        return BuildContext(cfg, product, parts, dict(product.sources(cfg)))


_PROC = Path("/proc/self")


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux); False where it cannot."""
    try:
        (_PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS since the last `reset_peak_rss` (Linux), else since the process started."""
    try:
        status = (_PROC / "status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    except (OSError, AttributeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def measured(partitions: int = 1) -> Iterator[dict]:
    """Wall time and peak RSS of a step, as metadata for the cost of its partitions.

    The peak is the step's own on Linux (the process's peak is reset when the step starts;
    a run executes its steps one after another); elsewhere it is the process's peak so far.
    A step over a range of partitions also records its time per partition.
    """
    cost: dict = {}
    own_peak = reset_peak_rss()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost["duration_s"] = round(time.perf_counter() - start, 3)
        if partitions > 1:
            cost["partitions_in_step"] = partitions
            cost["duration_per_partition_s"] = round(cost["duration_s"] / partitions, 4)
        cost["peak_rss_mb"] = round(peak_rss_mb(), 1)
        cost["peak_rss_scope"] = "step" if own_peak else "process"


def non_finite_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Column -> number of NaN or infinite values, for the float columns that have any
    (nulls are missing values, not errors)."""
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    if not floats or frame.is_empty():
        return {}
    counts = frame.select((~pl.col(c).is_finite()).sum() for c in floats).row(0, named=True)
    return {c: n for c, n in counts.items() if n}


FINITE_CHECK = "finite_values"


def finite_values_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        FINITE_CHECK,
        asset=asset,
        blocking=True,
        description="No NaN or infinite value is stored (the partition fails if one would be).",
    )


def finite_values_check(asset: str, frame: pl.DataFrame) -> Iterator[dg.AssetCheckResult]:
    """Yield the `finite_values` check of a frame about to be stored; raise a Failure (not
    retried: the same inputs give the same values) when a value is NaN or infinite, so that
    nothing non-finite is stored."""
    bad = non_finite_counts(frame)
    yield dg.AssetCheckResult(
        asset_key=asset,
        check_name=FINITE_CHECK,
        passed=not bad,
        metadata={
            "non_finite_values": sum(bad.values()),
            **{f"column_{c}": n for c, n in bad.items()},
        },
    )
    if bad:
        raise dg.Failure(
            description=f"{asset}: {sum(bad.values())} NaN or infinite value(s) would be "
            f"stored, by column: {bad}; the partition is not stored",
            metadata={"non_finite_values": sum(bad.values()), "columns": ", ".join(bad)},
            allow_retries=False,
        )
