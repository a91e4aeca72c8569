"""Forecast accuracy metrics (pure Polars, no Dagster).

Metrics are stored as additive sums (count, sum of actuals, absolute, squared and signed
errors) so that daily results roll up exactly to weeks, months, leads or methods:
WAPE = sum|e| / sum(y), MAE = sum|e| / n, RMSE = sqrt(sum e^2 / n), bias = sum(e) / sum(y).
"""

from __future__ import annotations

import math

import polars as pl

SUM_COLUMNS = ("n", "sum_actual", "sum_abs_error", "sum_sq_error", "sum_error")


def error_sums(actual: pl.Expr, forecast: pl.Expr) -> list[pl.Expr]:
    error = forecast - actual
    return [
        pl.len().cast(pl.Int64).alias("n"),
        actual.sum().alias("sum_actual"),
        error.abs().sum().alias("sum_abs_error"),
        (error**2).sum().alias("sum_sq_error"),
        error.sum().alias("sum_error"),
    ]


def ratios() -> list[pl.Expr]:
    """WAPE, MAE, RMSE and bias from summed columns (null where undefined)."""
    n = pl.col("n")
    actual = pl.col("sum_actual")
    return [
        pl.when(actual > 0).then(pl.col("sum_abs_error") / actual).alias("wape"),
        pl.when(n > 0).then(pl.col("sum_abs_error") / n).alias("mae"),
        pl.when(n > 0).then((pl.col("sum_sq_error") / n).sqrt()).alias("rmse"),
        pl.when(actual > 0).then(pl.col("sum_error") / actual).alias("bias"),
    ]


def roll_up(sums: pl.LazyFrame | pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Aggregate stored sums by the given columns and recompute the ratios."""
    return (
        sums.lazy()
        .group_by(by)
        .agg(pl.col(c).sum() for c in SUM_COLUMNS)
        .with_columns(ratios())
        .sort(by)
        .collect()
    )


def accuracy(frame: pl.DataFrame, forecast: str, actual: str = "units") -> dict[str, float]:
    """Scalar metrics of one forecast column against the actuals."""
    row = frame.select(error_sums(pl.col(actual), pl.col(forecast))).with_columns(ratios())
    out = row.row(0, named=True)
    return {
        k: (float("nan") if v is None else float(v))
        for k, v in out.items()
        if k in ("wape", "mae", "rmse", "bias", "n")
    }


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


METHOD_COLUMNS = {
    "model": "prediction",
    "seasonal_naive": "baseline_seasonal_naive",
    "moving_average": "baseline_moving_average",
}
EVAL_KEYS = ("target_date", "lead", "method")


def evaluate_forecasts(
    forecasts: pl.LazyFrame,
    actuals: pl.LazyFrame,
    keys: tuple[str, ...] = ("store_id", "item_id"),
    groups: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Accuracy per target day, lead, method (and `groups` columns of `forecasts`, e.g. store
    and category) for forecasts whose actuals have arrived.

    `forecasts` holds one row per (forecast_date, target_date, lead, series) with a column per
    method (see METHOD_COLUMNS). A series absent from a loaded day's sales sold nothing.
    """
    loaded_days = actuals.select(pl.col("date").unique().alias("target_date"))
    truth = actuals.select(pl.col("date").alias("target_date"), *keys, "units")
    scored = (
        forecasts.join(loaded_days, on="target_date", how="semi")
        .join(truth, on=["target_date", *keys], how="left")
        .with_columns(pl.col("units").fill_null(0.0))
    )
    long = scored.unpivot(
        index=["target_date", "lead", *groups, "units"],
        on=list(METHOD_COLUMNS.values()),
        variable_name="column",
        value_name="forecast",
    ).with_columns(
        method=pl.col("column").replace_strict({v: k for k, v in METHOD_COLUMNS.items()})
    )
    by = [*EVAL_KEYS, *groups]
    return (
        long.group_by(by)
        .agg(error_sums(pl.col("units"), pl.col("forecast")))
        .with_columns(ratios())
        .sort(by, nulls_last=True)
        .collect()
    )
