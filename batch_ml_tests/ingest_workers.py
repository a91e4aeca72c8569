"""Ingestion processes for the commit kill-sweep and the correction-race tests.

Each runs the real ingestion of the `sales` source (`ingest_files` then `commit_ingestion`,
what the `sales` asset does) on a small project, in a child process a test can SIGKILL or
hold between reading and committing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import signal
import sys
from pathlib import Path

import polars as pl

from batch_ml.config import load_config
from batch_ml.platform.common import BuildContext
from batch_ml.platform.resources import LandingZone, TableStore
from batch_ml.platform.sources.assets import commit_ingestion, ingest_files
from batch_ml.platform.sources.contract import QuarantinePolicy
from batch_ml.platform.sources.records import LOG_TABLE, QUARANTINE_TABLE
from batch_ml.platform.storage.tables import PartitionedTable
from batch_ml.products.forecasting.product import PRODUCT

# Python's audit events of the file-system calls an ingestion makes: every one is a moment a
# SIGKILL can land between two steps of the commit (Polars' own writes happen between them).
FILE_EVENTS = frozenset({"open", "os.rename", "os.remove", "os.mkdir", "os.listdir", "os.scandir"})
TABLES = ("sales", LOG_TABLE, QUARANTINE_TABLE)


def _stores(config: Path):
    cfg = load_config(config)
    b = BuildContext.from_config(cfg, PRODUCT)
    landing = LandingZone(root=str(cfg.paths.landing))
    tables = TableStore(tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse))
    return cfg, b, landing, tables


def ingest_sales(config: Path, days: list[dt.date], run_id: str) -> None:
    """Read, validate and commit the sales files of `days` (one step of the `sales` asset)."""
    cfg, b, landing, tables = _stores(config)
    policy = QuarantinePolicy.from_config(cfg.ingest)
    ingested = ingest_files(landing, tables, b.sources["sales"], days, policy, run_id=run_id)
    partitions = {d.isoformat(): f for d, f in ingested.frames.items()}
    commit_ingestion(tables, "sales", partitions, ingested, logging.getLogger(run_id))


def count_file_events(config: Path, days: list[dt.date], counts) -> None:
    """How many file-system audit events one ingestion makes (the kill sweep's range)."""
    seen = 0

    def hook(event, _args):
        nonlocal seen
        if event in FILE_EVENTS:
            seen += 1

    sys.addaudithook(hook)
    ingest_sales(config, days, run_id="probe")
    counts.put(seen)


def die_at_event(config: Path, days: list[dt.date], nth: int) -> None:
    """Ingest, and SIGKILL this process at its `nth` file-system audit event."""
    seen = 0

    def hook(event, _args):
        nonlocal seen
        if event in FILE_EVENTS:
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)  # this child only: audit hooks cannot be removed
    ingest_sales(config, days, run_id=f"killed-at-{nth}")


def read_then_commit(config: Path, day: dt.date, run_id: str, have_read, go, outcome) -> None:
    """Read and validate the day's file, say so, wait for `go`, then commit: a run that is
    slow between reading a file and storing it, while a correction arrives."""
    cfg, b, landing, tables = _stores(config)
    policy = QuarantinePolicy.from_config(cfg.ingest)
    ingested = ingest_files(landing, tables, b.sources["sales"], [day], policy, run_id=run_id)
    have_read.set()
    go.wait(60)
    try:
        partitions = {d.isoformat(): f for d, f in ingested.frames.items()}
        commit_ingestion(tables, "sales", partitions, ingested, logging.getLogger(run_id))
        outcome.put("stored")
    except Exception as exc:  # noqa: BLE001 - the test asserts on the outcome
        outcome.put(f"refused: {exc}")


def ingest_until(config: Path, day: dt.date, run_id: str, stop, outcomes) -> None:
    """Ingest the day over and over until told to stop; send how often each outcome came."""
    counts: dict[str, int] = {}
    n = 0
    while not stop.is_set():
        n += 1
        try:
            ingest_sales(config, [day], run_id=f"{run_id}-{n}")
            outcome = "stored"
        except Exception as exc:  # noqa: BLE001 - counted, the test asserts on them
            outcome = "superseded" if "newer content" in str(exc) else f"error: {exc}"[:300]
        counts[outcome] = counts.get(outcome, 0) + 1
    outcomes.put(counts)


def table_digests(tables_root: Path) -> dict[str, str]:
    """Content hash of every stored partition of the ingestion's tables (sorted rows)."""
    out = {}
    for name in TABLES:
        table = PartitionedTable(tables_root, name)
        for key in table.partitions():
            frame = table.read([key])
            ordered = frame.select(sorted(frame.columns)).sort(sorted(frame.columns))
            digest = hashlib.sha256(ordered.write_csv().encode()).hexdigest()
            out[f"{name}/{key}"] = digest
    return out


def sales_units(tables_root: Path, day: dt.date) -> pl.DataFrame:
    return PartitionedTable(tables_root, "sales").read([day.isoformat()])
