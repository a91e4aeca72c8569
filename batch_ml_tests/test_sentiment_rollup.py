"""Sentiment per product and day: counts, windows, the rise test (pure functions)."""

import datetime as dt
import math

import polars as pl
import pytest
from scipy.stats import norm

from batch_ml.products.sentiment.rollup import (
    TrendConfig,
    daily_counts,
    one_sided_p,
    product_sentiment,
)

pytestmark = pytest.mark.unit

DAY = dt.date(2025, 3, 31)


def _counts(rows):
    """rows: (product, days before DAY, reviews, negative)."""
    return pl.DataFrame(
        [
            {"product_id": p, "day": DAY - dt.timedelta(days=k), "reviews": n, "negative": neg}
            for p, k, n, neg in rows
        ]
    )


def test_daily_counts_count_reviews_and_negatives_per_product_and_day():
    scored = pl.DataFrame(
        {
            "product_id": ["a", "a", "a", "b"],
            "review_date": [DAY, DAY, DAY, DAY],
            "label": ["negative", "positive", "negative", "neutral"],
        }
    )
    counts = daily_counts(scored, "review_date").sort("product_id")
    assert counts.rows() == [("a", DAY, 3, 2), ("b", DAY, 1, 0)]
    # Counts feed the roll-up directly.
    assert product_sentiment(counts, DAY, TrendConfig())["reviews"].to_list() == [3, 1]


def test_one_sided_p_matches_the_pooled_two_proportion_z_test():
    # 30/100 vs 15/100: pooled 0.225, se = sqrt(.225 * .775 * .02) = 0.05906, z = 2.540.
    z = (0.30 - 0.15) / math.sqrt(0.225 * 0.775 * (1 / 100 + 1 / 100))
    assert one_sided_p(30, 100, 15, 100) == pytest.approx(norm.sf(z), rel=1e-9)
    assert one_sided_p(15, 100, 30, 100) == pytest.approx(norm.cdf(z), rel=1e-9)
    assert one_sided_p(0, 10, 0, 10) == 1.0  # no negatives anywhere: no evidence


def test_a_product_whose_negative_share_rose_is_flagged_and_a_steady_one_is_not():
    cfg = TrendConfig(recent_days=7, baseline_days=28, min_reviews=10, alpha=0.01)
    rows = []
    for k in range(35):
        recent = k < 7
        rows.append(("rising", k, 10, 5 if recent else 1))  # 50 % recent vs 10 % before
        rows.append(("steady", k, 10, 2))
    rows.append(("sparse", 0, 2, 2))  # all negative, but two reviews say nothing
    rows.append(("old", 40, 10, 10))  # outside the lookback: not reviewed on the day
    out = product_sentiment(_counts(rows), DAY, cfg)
    by_product = {r["product_id"]: r for r in out.iter_rows(named=True)}
    assert set(by_product) == {"rising", "steady", "sparse"}  # only products reviewed on DAY
    rising, steady, sparse = by_product["rising"], by_product["steady"], by_product["sparse"]
    assert rising["recent_reviews"] == 70 and rising["baseline_reviews"] == 280
    assert rising["recent_share_negative"] == pytest.approx(0.5)
    assert rising["baseline_share_negative"] == pytest.approx(0.1)
    assert rising["change"] == pytest.approx(0.4) and rising["negative_rising"]
    assert steady["change"] == pytest.approx(0.0) and not steady["negative_rising"]
    assert sparse["share_negative"] == 1.0 and not sparse["negative_rising"]
    assert sparse["p_value"] is None  # no baseline reviews: no test
    assert out["day"].unique().to_list() == [DAY]


def test_the_trend_settings_are_checked():
    with pytest.raises(ValueError, match="alpha"):
        TrendConfig(alpha=1.5)
    with pytest.raises(ValueError, match="recent_days"):
        TrendConfig(recent_days=0)
    assert TrendConfig(recent_days=7, baseline_days=28).lookback_days == 35
