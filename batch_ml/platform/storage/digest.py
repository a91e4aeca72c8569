"""Content digests of stored tables: the same inputs and seed must give the same digests.

A digest is the sha256 of a table's rows as CSV, sorted by every column, so it does not
depend on partition files, row order or Parquet encoding. Polars' parallel joins and sums add
the same values in varying order, so a sum differs in its last bits (about 1e-16 relative)
from run to run: floats are rounded to MANTISSA_BITS bits of mantissa (a relative step of
1e-6; decimal rounding would not do, as sums of the demo's values often sit exactly on a
decimal rounding boundary), and those within 1e-9 of zero count as zero. Columns that record
when, where or by which run something happened (timestamps, paths, run ids, durations) are
left out by the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from batch_ml.platform.storage.tables import PartitionedTable

MANTISSA_BITS = 20  # of float64's 52
ZERO = 1e-9
_LOW_BITS = np.uint64((1 << (52 - MANTISSA_BITS)) - 1)
_HALF = np.uint64(1 << (51 - MANTISSA_BITS))


def _coarse(values: pl.Series) -> pl.Series:
    """The float values rounded to the nearest value with MANTISSA_BITS bits of mantissa (a
    carry moves into the exponent, as it should; NaN and inf stay what they are). Nearest,
    not truncated: 44.0 and 43.99999999999999 must be equal."""
    array = values.to_numpy().astype(np.float64, copy=True)
    array[np.abs(array) < ZERO] = 0.0
    bits = (array.view(np.uint64) + _HALF) & ~_LOW_BITS
    return pl.Series(values.name, bits.view(np.float64))


def frame_digest(frame: pl.DataFrame, exclude: Iterable[str] = ()) -> str:
    kept = frame.select(c for c in sorted(frame.columns) if c not in set(exclude))
    kept = kept.with_columns(_coarse(kept[c]) for c in kept.columns if kept.schema[c].is_float())
    text = kept.sort(kept.columns, nulls_last=True).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()


def table_digest(tables_root: Path, table: str, exclude: Iterable[str] = ()) -> dict:
    """{"rows": n, "sha256": digest} of every stored partition of `table` (absent: 0 rows)."""
    stored = PartitionedTable(Path(tables_root), table)
    if not stored.partitions():
        return {"rows": 0, "sha256": None}
    frame = stored.read()
    return {"rows": frame.height, "sha256": frame_digest(frame, exclude)}
