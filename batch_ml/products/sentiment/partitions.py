"""How the sentiment assets' partitions map onto each other, built from the platform's window
helpers: a week's model reads the labels that arrived in its training window and the
features of the reviews they name (which arrived up to `label_lag_days` earlier); a day's
accuracy reads the predictions of the reviews whose labels arrived that day."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from batch_ml.config import ProjectConfig
from batch_ml.platform.partitions import preceding, trailing, weeks_spanning, window
from batch_ml.products.sentiment.config import settings


@dataclass(frozen=True)
class SentimentMappings:
    training_labels: dg.TimeWindowPartitionMapping
    training_features: dg.TimeWindowPartitionMapping
    backtest_labels: dg.TimeWindowPartitionMapping
    backtest_features: dg.TimeWindowPartitionMapping
    previous_week: dg.TimeWindowPartitionMapping
    labelled_days: dg.TimeWindowPartitionMapping
    labelled_weeks: dg.TimeWindowPartitionMapping
    trend_days: dg.TimeWindowPartitionMapping

    @staticmethod
    def from_config(cfg: ProjectConfig) -> SentimentMappings:
        sc = settings(cfg)
        lag = sc.sentiment.label_lag_days
        # The gate's backtest is the weekly model's validation window.
        training, backtest = sc.sentiment.training_days, sc.sentiment.validation_days
        return SentimentMappings(
            # The model of week W learns from labels that arrived in the whole weeks holding
            # the `training_days` before W (never W itself) ...
            training_labels=preceding(weeks_spanning(training)),
            # ... and reads the features of their reviews, which arrived up to `lag` earlier.
            training_features=preceding(weeks_spanning(training + lag)),
            backtest_labels=preceding(weeks_spanning(backtest)),
            backtest_features=preceding(weeks_spanning(backtest + lag)),
            # The gate of week W continues from its decision for week W - 1.
            previous_week=preceding(1),
            # The labels arriving on day D name reviews of D - lag .. D.
            labelled_days=trailing(lag + 1),
            # ... served by the weeks holding those days (their registry rows).
            labelled_weeks=window(-lag, 0),
            # A day's roll-up compares the recent window with the baseline before it.
            trend_days=trailing(sc.trend.lookback_days),
        )
