"""Feature engineering for direct multi-horizon demand forecasting (pure Polars, no Dagster).

One row per forecast origin D, series (store_id, item_id) and lead h in 1..H, describing
the target day D+h with only what is known at the end of day D:
- history features over the lookback window [D - lookback + 1, D]: recent lags, same-weekday
  lags, rolling means / std / zero share / max, days since last sale, series age and level;
- calendar features of the target day and per-day covariates from the calendar file;
- known-in-advance covariates from the plan published on D (price, promotion, opening);
- static store and product attributes.
Every feature of origin D depends only on data of days <= D inside the lookback window, so
computing one origin alone or a whole range of origins at once gives identical rows.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence

import polars as pl

from batch_ml.products.forecasting.sources import SERIES_KEYS, TARGET

ID_COLUMNS = ("forecast_date", "target_date", "lead", "store_id", "item_id")
BASELINE_COLUMNS = {
    "seasonal_naive": "baseline_seasonal_naive",
    "moving_average": "baseline_moving_average",
}
CATEGORICAL_SUFFIX = "_code"
RECENT_LAGS = 7  # lag_0 .. lag_6 are kept as features
SAME_WEEKDAY_WEEKS = 4
ACTIVE_DAYS = 28  # a series is forecast if it had a sales row in the last 28 days


CATEGORY_BUCKETS = 1021


def _category_code(value: str | None) -> int | None:
    # A stable code (same in every process and version, unlike a dictionary built from the
    # data seen so far) that stays small, as LightGBM's categorical splits need.
    return None if value is None else zlib.crc32(value.encode("utf-8")) % CATEGORY_BUCKETS


def encode_attributes(frame: pl.DataFrame, key: str, attributes: Sequence[str]) -> pl.DataFrame:
    """Keep `key` and the declared attributes; string attributes become `<name>_code`."""
    present = [a for a in attributes if a in frame.columns]
    out = frame.select(key, *present)
    for name in present:
        if out.schema[name] == pl.String():
            out = out.with_columns(
                pl.col(name).map_elements(_category_code, return_dtype=pl.Int64)
            ).rename({name: name + CATEGORICAL_SUFFIX})
        elif out.schema[name].is_numeric():
            out = out.with_columns(pl.col(name).cast(pl.Float64))
        else:
            out = out.drop(name)
    return out


def dense_history(
    sales: pl.LazyFrame, first_day: dt.date, last_day: dt.date, extra: Sequence[str] = ()
) -> pl.LazyFrame:
    """Sales on a daily grid per series from its first row (in the window) to `last_day`.

    Under the data contract a series missing from a day's file sold nothing that day.
    """
    window = sales.filter(pl.col("date").is_between(first_day, last_day)).select(
        "date", *SERIES_KEYS, TARGET, *extra
    )
    grid = (
        window.group_by(SERIES_KEYS)
        .agg(pl.col("date").min().alias("first"))
        .with_columns(date=pl.date_ranges("first", pl.lit(last_day)))
        .explode("date")
        .drop("first")
    )
    return (
        grid.join(window.with_columns(observed=pl.lit(True)), on=["date", *SERIES_KEYS], how="left")
        .with_columns(
            pl.col(TARGET).fill_null(0.0),
            pl.col("observed").fill_null(False),
        )
        .sort(*SERIES_KEYS, "date")
    )


def origin_features(history: pl.LazyFrame, lookback_days: int) -> pl.LazyFrame:
    """History features for every (series, day) of a dense history, as seen at that day."""
    y = pl.col(TARGET)
    by = list(SERIES_KEYS)
    max_lag = 7 * SAME_WEEKDAY_WEEKS
    exprs = [y.shift(k).over(by).alias(f"lag_{k}") for k in range(max_lag)]
    exprs += [
        y.rolling_mean(7, min_samples=1).over(by).round(6).alias("roll_mean_7"),
        y.rolling_mean(28, min_samples=1).over(by).round(6).alias("roll_mean_28"),
        # Sliding-window sums carry float error that depends on where the window started;
        # rounding keeps a feature identical whether one origin or a range is computed.
        y.rolling_std(28, min_samples=2).over(by).round(6).alias("roll_std_28"),
        y.rolling_max(28, min_samples=1).over(by).alias("roll_max_28"),
        (y == 0)
        .cast(pl.Float64)
        .rolling_mean(28, min_samples=1)
        .over(by)
        .round(6)
        .alias("zero_share_28"),
        y.rolling_mean(lookback_days, min_samples=1).over(by).round(6).alias("roll_mean_lookback"),
        pl.col("observed")
        .cast(pl.Int32)
        .rolling_sum(ACTIVE_DAYS, min_samples=1)
        .over(by)
        .alias("_observed_recently"),
        # Capped at the lookback so that a longer loaded history cannot change the value.
        (pl.col("date") - pl.when(y > 0).then(pl.col("date")).forward_fill().over(by))
        .dt.total_days()
        .fill_null(lookback_days)
        .clip(upper_bound=lookback_days)
        .cast(pl.Float64)
        .alias("days_since_sale"),
        (pl.col("date") - pl.col("date").min().over(by))
        .dt.total_days()
        .clip(upper_bound=lookback_days - 1)
        .cast(pl.Float64)
        .alias("series_age"),
    ]
    if "price" in history.collect_schema().names():
        exprs.append(
            pl.col("price")
            .forward_fill()
            .rolling_mean(28, min_samples=1)
            .over(by)
            .round(6)
            .alias("_recent_price")
        )
    return history.with_columns(exprs)


def _pick_by_lag(offset_weeks: int) -> pl.Expr:
    """Value of the most recent same weekday as the target, `offset_weeks` weeks further back."""
    k = (-pl.col("lead")) % 7
    return pl.coalesce(
        [pl.when(k == j).then(pl.col(f"lag_{j + 7 * offset_weeks}")) for j in range(7)]
    )


def build_features(
    sales: pl.LazyFrame,
    first_origin: dt.date,
    last_origin: dt.date,
    horizon: int,
    lookback_days: int,
    plans: pl.LazyFrame | None = None,
    calendar: pl.LazyFrame | None = None,
    products: pl.DataFrame | None = None,
    stores: pl.DataFrame | None = None,
    known_in_advance: Sequence[str] = (),
    calendar_columns: Sequence[str] = (),
    product_attributes: Sequence[str] = (),
    store_attributes: Sequence[str] = (),
) -> pl.LazyFrame:
    """Feature rows for every origin in [first_origin, last_origin] x active series x lead."""
    first_day = first_origin - dt.timedelta(days=lookback_days - 1)
    extra = [c for c in ("price",) if c in sales.collect_schema().names()]
    history = origin_features(dense_history(sales, first_day, last_origin, extra), lookback_days)
    origins = history.filter(
        pl.col("date").is_between(first_origin, last_origin), pl.col("_observed_recently") > 0
    ).rename({"date": "forecast_date"})

    leads = pl.LazyFrame({"lead": list(range(1, horizon + 1))}, schema={"lead": pl.Int32})
    rows = origins.join(leads, how="cross").with_columns(
        target_date=pl.col("forecast_date") + pl.duration(days=pl.col("lead")),
        **{f"same_weekday_{w + 1}": _pick_by_lag(w) for w in range(SAME_WEEKDAY_WEEKS)},
    )
    same_weekday = [f"same_weekday_{w + 1}" for w in range(SAME_WEEKDAY_WEEKS)]
    rows = rows.with_columns(
        same_weekday_mean=pl.mean_horizontal(same_weekday),
        target_dow=pl.col("target_date").dt.weekday().cast(pl.Float64),
        target_day_of_month=pl.col("target_date").dt.day().cast(pl.Float64),
        target_month=pl.col("target_date").dt.month().cast(pl.Float64),
        target_day_of_year=pl.col("target_date").dt.ordinal_day().cast(pl.Float64),
        lead_f=pl.col("lead").cast(pl.Float64),
    ).with_columns(
        # Baselines, computed from the same information as the model (evaluation compares them).
        baseline_seasonal_naive=pl.coalesce("same_weekday_1", "roll_mean_7", pl.lit(0.0)),
        baseline_moving_average=pl.col("roll_mean_28"),
    )

    if calendar is not None and calendar_columns:
        cal = calendar.select("date", *calendar_columns).rename({"date": "target_date"})
        rows = rows.join(cal, on="target_date", how="left")
    if plans is not None and known_in_advance:
        plan = plans.select(
            pl.col("plan_date").alias("forecast_date"),
            pl.col("date").alias("target_date"),
            *SERIES_KEYS,
            *[pl.col(c).alias(f"plan_{c}") for c in known_in_advance],
        )
        rows = rows.join(plan, on=["forecast_date", "target_date", *SERIES_KEYS], how="left")
        if "price" in known_in_advance and "_recent_price" in rows.collect_schema().names():
            # Null, not inf, after weeks of a zero price: features never hold inf.
            recent = pl.col("_recent_price")
            rows = rows.with_columns(
                plan_price_vs_recent=pl.when(recent > 0).then(pl.col("plan_price") / recent)
            )
    if products is not None and product_attributes:
        rows = rows.join(
            encode_attributes(products, "item_id", product_attributes).lazy(),
            on="item_id",
            how="left",
        )
    if stores is not None and store_attributes:
        rows = rows.join(
            encode_attributes(stores, "store_id", store_attributes).lazy(),
            on="store_id",
            how="left",
        )

    drop = [f"lag_{k}" for k in range(RECENT_LAGS, 7 * SAME_WEEKDAY_WEEKS)]
    drop += ["observed", "_observed_recently", TARGET, "_recent_price", *extra]
    names = rows.collect_schema().names()
    rows = rows.drop([c for c in drop if c in names])
    features = sorted(c for c in rows.collect_schema().names() if c not in ID_COLUMNS)
    return rows.select(*ID_COLUMNS, *features).sort("forecast_date", *SERIES_KEYS, "lead")


def feature_columns(columns: Sequence[str]) -> list[str]:
    """Model inputs: every column of a feature frame that is not an identifier or target."""
    return [c for c in columns if c not in ID_COLUMNS and c != TARGET]


def categorical_columns(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c.endswith(CATEGORICAL_SUFFIX)]
