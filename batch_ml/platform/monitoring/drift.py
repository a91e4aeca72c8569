"""Population stability (PSI) of features and predictions against a model's training data.

At training time a profile is kept per variable: decile edges of the training values and the
share of training rows in each bin (nulls are a bin of their own). A day's PSI is
sum((p - q) * ln(p / q)) over the bins, with shares floored at EPSILON so that an empty bin
does not make it infinite. Rule of thumb: < 0.1 stable, 0.1-0.25 watch, > 0.25 drift.

PSI of a small sample is large even without drift (empty bins): with fewer than
MIN_SERIES series in a day, the value is recorded but not judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

BINS = 10
EPSILON = 1e-4
WATCH = 0.1
DRIFT = 0.25
PREDICTION = "prediction"
MIN_SERIES = 100


def _shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of values per bin: (-inf, e1], (e1, e2], ..., (ek, inf), then null."""
    total = len(values)
    if total == 0:
        return [0.0] * (len(edges) + 2)
    finite = values[~np.isnan(values)]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges), finite, side="left"), minlength=len(edges) + 1
    )
    shares = [float(c) / total for c in counts]
    return [*shares, float(total - len(finite)) / total]


def _values(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame[column].cast(pl.Float64).fill_nan(None).to_numpy(allow_copy=True).astype(float)


def profile(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, dict]:
    """Reference profile of each column: bin edges and training shares."""
    out = {}
    for column in columns:
        values = _values(frame, column)
        finite = values[~np.isnan(values)]
        if len(finite):
            qs = np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])
            edges = sorted({round(float(q), 9) for q in qs})
        else:
            edges = []
        out[column] = {"edges": edges, "shares": _shares(values, edges)}
    return out


def psi(reference: dict, values: np.ndarray) -> float:
    expected = reference["shares"]
    actual = _shares(values, reference["edges"])
    total = 0.0
    for a, e in zip(actual, expected, strict=True):
        a, e = max(a, EPSILON), max(e, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def psi_table(frame: pl.DataFrame, reference: dict[str, dict]) -> pl.DataFrame:
    """PSI of every profiled column present in `frame` (variable, psi, rows)."""
    rows = [
        {"variable": name, "psi": round(psi(ref, _values(frame, name)), 6), "rows": frame.height}
        for name, ref in reference.items()
        if name in frame.columns
    ]
    return pl.DataFrame(
        rows, schema={"variable": pl.String, "psi": pl.Float64, "rows": pl.Int64}
    ).sort("variable")
