"""Shared wiring for the stage modules: build context, owners, cost metadata."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from batch_ml.config import ProjectConfig
from batch_ml.defs.partitions import Partitioning
from batch_ml.ingest.contract import Source, sources

OWNERS = ["team:forecasting"]
# Declarative automation (the daemon's automation sensor): once the landing sensor has
# loaded a new day, the latest model week, predictions, accuracy and the report follow as
# soon as everything they read is there. Backfills of past days stay explicit.
BRING_UP_TO_DATE = dg.AutomationCondition.eager()
# `champion_overrides` exists only once a person has pinned or rolled back a model, and eager()
# waits for every missing dependency: the gate and the predictions must not wait for it. A
# recorded override applies to the partitions materialized after it (docs/model-lifecycle.md).
BRING_UP_TO_DATE_DESPITE_OVERRIDES = BRING_UP_TO_DATE.ignore(
    dg.AssetSelection.assets("champion_overrides")
)
# Transient errors (I/O, a briefly locked warehouse) are retried with backoff; a file that
# breaks the contract raises `dg.Failure(allow_retries=False)` and is not retried.
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class BuildContext:
    cfg: ProjectConfig
    parts: Partitioning
    sources: dict[str, Source]

    @staticmethod
    def from_config(cfg: ProjectConfig) -> BuildContext:
        return BuildContext(cfg, Partitioning.from_config(cfg), sources(cfg.features))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def measured() -> Iterator[dict]:
    """Wall time and the process's peak RSS, as metadata for the cost of a partition."""
    cost: dict = {}
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost["duration_s"] = round(time.perf_counter() - start, 3)
        cost["peak_rss_mb"] = round(_peak_rss_mb(), 1)
