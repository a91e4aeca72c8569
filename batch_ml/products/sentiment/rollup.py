"""Sentiment per product and day, and the products whose share of negative reviews rose.

A product's recent window (the `recent_days` up to and including the day) is compared with
the `baseline_days` before it by a one-sided two-proportion z-test on the share of negative
reviews; a product is flagged when the recent share is higher with p < `alpha` and both
windows hold at least `min_reviews` reviews (a few reviews say nothing). Pure functions on
Polars frames.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import norm

NEGATIVE = "negative"


@dataclass(frozen=True)
class TrendConfig:
    recent_days: int = 7
    baseline_days: int = 28
    min_reviews: int = 10
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.recent_days < 1 or self.baseline_days < 1 or self.min_reviews < 1:
            raise ValueError("recent_days, baseline_days and min_reviews must be >= 1")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def lookback_days(self) -> int:
        """Days of predictions a day's roll-up reads, the day included."""
        return self.recent_days + self.baseline_days


def daily_counts(scored: pl.DataFrame, day_column: str) -> pl.DataFrame:
    """Reviews and negative reviews per product and `day` of scored reviews (`product_id`,
    `label`, and their day in `day_column`)."""
    return scored.group_by("product_id", pl.col(day_column).alias("day")).agg(
        reviews=pl.len().cast(pl.Int64),
        negative=(pl.col("label") == NEGATIVE).sum().cast(pl.Int64),
    )


def one_sided_p(successes_a, n_a, successes_b, n_b) -> np.ndarray:
    """P-values that share a is higher than share b (pooled two-proportion z-test), element
    by element of equal-length arrays (or scalars); 1 where both shares are 0 or 1, NaN
    where either count is 0."""
    sa, na, sb, nb = (np.asarray(x, dtype=np.float64) for x in (successes_a, n_a, successes_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (sa + sb) / (na + nb)
        variance = pooled * (1 - pooled) * (1 / na + 1 / nb)
        z = (sa / na - sb / nb) / np.sqrt(variance)
        p = norm.sf(z)
    return np.where((na > 0) & (nb > 0) & (variance == 0), 1.0, p)


def product_sentiment(counts: pl.DataFrame, day: dt.date, cfg: TrendConfig) -> pl.DataFrame:
    """One row per product reviewed on `day`: its reviews and negative share that day, over
    the recent window and over the baseline window, the change, the test's p-value and
    whether the rise is flagged. `counts`: `daily_counts` over at least the lookback."""
    recent_start = day - dt.timedelta(days=cfg.recent_days - 1)
    baseline_start = recent_start - dt.timedelta(days=cfg.baseline_days)
    window = counts.filter(pl.col("day").is_between(baseline_start, day))
    in_recent = pl.col("day") >= recent_start
    per_product = (
        window.group_by("product_id")
        .agg(
            reviews=pl.col("reviews").filter(pl.col("day") == day).sum(),
            negative=pl.col("negative").filter(pl.col("day") == day).sum(),
            recent_reviews=pl.col("reviews").filter(in_recent).sum(),
            recent_negative=pl.col("negative").filter(in_recent).sum(),
            baseline_reviews=pl.col("reviews").filter(~in_recent).sum(),
            baseline_negative=pl.col("negative").filter(~in_recent).sum(),
        )
        .filter(pl.col("reviews") > 0)
        .sort("product_id")
    )
    counts_of = ("recent_negative", "recent_reviews", "baseline_negative", "baseline_reviews")
    p_values = one_sided_p(*(per_product[c].to_numpy() for c in counts_of))
    share = lambda n, d: pl.when(pl.col(d) > 0).then(pl.col(n) / pl.col(d))  # noqa: E731
    enough = (pl.col("recent_reviews") >= cfg.min_reviews) & (
        pl.col("baseline_reviews") >= cfg.min_reviews
    )
    return (
        per_product.with_columns(
            pl.lit(day).alias("day"),
            share_negative=share("negative", "reviews"),
            recent_share_negative=share("recent_negative", "recent_reviews"),
            baseline_share_negative=share("baseline_negative", "baseline_reviews"),
            p_value=pl.Series(p_values, dtype=pl.Float64).fill_nan(None),
        )
        .with_columns(
            change=pl.col("recent_share_negative") - pl.col("baseline_share_negative"),
            negative_rising=(enough & (pl.col("p_value") < cfg.alpha)).fill_null(False),
        )
        .select(
            "day",
            "product_id",
            "reviews",
            "share_negative",
            "recent_reviews",
            "recent_share_negative",
            "baseline_reviews",
            "baseline_share_negative",
            "change",
            "p_value",
            "negative_rising",
        )
    )
