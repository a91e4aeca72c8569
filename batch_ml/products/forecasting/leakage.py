"""Point-in-time (leakage) checks for feature and training code (pure Polars, no Dagster).

The idea: replace every value that is not yet known at a day by seeded random values,
recompute, and compare. Whatever changes for rows that should only know the past is a leak.
Only values are perturbed, not which rows exist: a use of the mere presence of a future row
is not caught.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from batch_ml.products.forecasting.features import ID_COLUMNS
from batch_ml.products.forecasting.training import training_examples

ROWS = "<rows>"  # pseudo-column: the two frames hold different key sets
Frame = pl.DataFrame | pl.LazyFrame


def _random_values(rng: np.random.Generator, dtype: pl.DataType, n: int) -> pl.Series:
    if dtype == pl.Boolean:
        return pl.Series(rng.random(n) < 0.5)
    if dtype.is_integer():
        high = min(1_000_000, pl.select(dtype.max()).item())
        return pl.Series(rng.integers(0, high, n)).cast(dtype)
    return pl.Series(rng.uniform(0.0, 1_000.0, n)).cast(dtype)


def perturb_after(
    frame: pl.DataFrame,
    date_column: str,
    cutoff: dt.date,
    seed: int = 0,
    keep: Sequence[str] = (),
) -> pl.DataFrame:
    """`frame` with every numeric (and boolean) value of rows dated after `cutoff` replaced by
    seeded random values of the same dtype; nulls too. The date column, the feature id columns
    (forecast_date, target_date, lead, store_id, item_id) and `keep` are left alone, as are
    rows at or before `cutoff` (or without a date)."""
    skip = {date_column, *ID_COLUMNS, *keep}
    future = pl.col(date_column) > cutoff
    rng = np.random.default_rng(seed)
    replaced = [
        pl.when(future)
        .then(pl.lit(_random_values(rng, dtype, frame.height)))
        .otherwise(name)
        .alias(name)
        for name, dtype in frame.schema.items()
        if name not in skip and (dtype.is_numeric() or dtype == pl.Boolean)
    ]
    return frame.with_columns(replaced) if replaced else frame


def changed_columns(before: pl.DataFrame, after: pl.DataFrame, keys: Sequence[str]) -> list[str]:
    """Columns whose values differ on the same keys (exact, null-aware; a dtype change counts),
    then columns present in only one frame; `ROWS` first when the key sets differ."""
    keys = list(keys)
    for name, frame in (("before", before), ("after", after)):
        if frame.select(keys).is_duplicated().any():
            raise ValueError(f"{name}: keys {keys} are not unique")
    b, a = before.select(keys), after.select(keys)
    only_before = b.join(a, on=keys, how="anti", nulls_equal=True).height
    only_after = a.join(b, on=keys, how="anti", nulls_equal=True).height
    changed = [ROWS] if only_before or only_after else []
    common = [c for c in before.columns if c in after.columns and c not in keys]
    joined = before.select(*keys, *common).join(
        after.select(*keys, *common), on=keys, how="inner", suffix="__after", nulls_equal=True
    )
    for c in common:
        if before.schema[c] != after.schema[c] or not bool(
            joined[c].eq_missing(joined[c + "__after"]).all()
        ):
            changed.append(c)
    changed += [c for c in before.columns if c not in after.columns]
    changed += [c for c in after.columns if c not in before.columns]
    return changed


def _collect(frame: Frame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _perturb_input(frame: Frame, date_column: str, cutoff: dt.date, seed: int) -> Frame:
    out = perturb_after(_collect(frame), date_column, cutoff, seed)
    return out.lazy() if isinstance(frame, pl.LazyFrame) else out


def feature_leakage(
    build: Callable[..., Frame],
    inputs: Mapping[str, Frame],
    dated: Mapping[str, str],
    origin: dt.date,
    seed: int = 0,
) -> list[str]:
    """Feature columns of origins <= `origin` that change when the frames named in `dated`
    (name -> date column; plans by `plan_date`, the day they were published) are perturbed
    after `origin`. `build(**inputs)` returns the feature frame; [] = point-in-time correct."""
    missing = set(dated) - set(inputs)
    if missing:
        raise ValueError(f"dated frames {sorted(missing)} are not among the inputs")
    if not any(
        _collect(inputs[name]).filter(pl.col(column) > origin).height
        for name, column in dated.items()
    ):
        raise ValueError(f"no dated row after {origin}: the check would pass vacuously")
    perturbed = {
        name: _perturb_input(frame, dated[name], origin, seed + k) if name in dated else frame
        for k, (name, frame) in enumerate(inputs.items())
    }
    past = pl.col("forecast_date") <= origin
    before = _collect(build(**inputs)).filter(past)
    if before.is_empty():
        raise ValueError(f"the build gives no feature rows of origins <= {origin}")
    after = _collect(build(**perturbed)).filter(past)
    return changed_columns(before, after, ID_COLUMNS)


def perturb_training_data(
    features: pl.DataFrame, sales: pl.DataFrame, week: dt.date, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features and sales with everything not known before `week` perturbed: sales of days
    >= week, feature rows of origins >= week and feature rows of targets >= week."""
    last_known = week - dt.timedelta(days=1)
    features = perturb_after(features, "forecast_date", last_known, seed)
    features = perturb_after(features, "target_date", last_known, seed + 1)
    return features, perturb_after(sales, "date", last_known, seed + 2)


def _default_examples(features: pl.DataFrame, sales: pl.DataFrame, week: dt.date) -> pl.DataFrame:
    return training_examples(features.lazy(), sales.lazy(), cutoff=week).collect()


def training_leakage(
    features: pl.DataFrame,
    sales: pl.DataFrame,
    week: dt.date,
    examples: Callable[[pl.DataFrame, pl.DataFrame, dt.date], Frame] = _default_examples,
    seed: int = 0,
) -> list[str]:
    """Columns of the training set of the model of `week` that change when all data from `week`
    on is perturbed. `examples(features, sales, week)` selects the training set (default:
    `training_examples` with cutoff `week`); [] = the model only learns from the past."""
    before = _collect(examples(features, sales, week))
    if before.is_empty():
        raise ValueError(f"no training examples for the model of {week}")
    after = _collect(examples(*perturb_training_data(features, sales, week, seed), week))
    return changed_columns(before, after, ID_COLUMNS)
