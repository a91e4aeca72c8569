"""Content digests of stored tables: the same inputs and seed must give the same digests.

A digest is the sha256 of a table's rows as CSV, sorted by every column, so it does not
depend on partition files, row order or Parquet encoding. Floats are written with 10
significant digits, and those within 1e-9 of zero as zero: parallel sums add in varying order
and differ in the last bits. Columns that record when, where or
by which run something happened (timestamps, paths, run ids, durations) are left out by the
caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from batch_ml.platform.storage.tables import PartitionedTable


def _rounded(column: str) -> pl.Expr:
    x = pl.col(column)
    return pl.when(x.abs() < 1e-9).then(0.0).otherwise(x.round_sig_figs(10)).alias(column)


def frame_digest(frame: pl.DataFrame, exclude: Iterable[str] = ()) -> str:
    kept = frame.select(
        _rounded(c) if frame.schema[c].is_float() else pl.col(c)
        for c in sorted(frame.columns)
        if c not in set(exclude)
    )
    text = kept.sort(kept.columns, nulls_last=True).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()


def table_digest(tables_root: Path, table: str, exclude: Iterable[str] = ()) -> dict:
    """{"rows": n, "sha256": digest} of every stored partition of `table` (absent: 0 rows)."""
    stored = PartitionedTable(Path(tables_root), table)
    if not stored.partitions():
        return {"rows": 0, "sha256": None}
    frame = stored.read()
    return {"rows": frame.height, "sha256": frame_digest(frame, exclude)}
