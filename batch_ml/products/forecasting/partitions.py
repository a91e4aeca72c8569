"""How the forecasting assets' partitions map onto each other (lookback, training window,
backtest, forecasts of a target day), built from the platform's window helpers."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from batch_ml.config import ProjectConfig
from batch_ml.platform.partitions import overlapping, preceding, trailing, weeks_spanning
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.training import VALIDATION_DAYS


@dataclass(frozen=True)
class ForecastMappings:
    lookback: dg.TimeWindowPartitionMapping
    training_window: dg.TimeWindowPartitionMapping
    forecasts_for_target: dg.TimeWindowPartitionMapping
    backtest_origins: dg.TimeWindowPartitionMapping
    backtest_targets: dg.TimeWindowPartitionMapping
    previous_week: dg.TimeWindowPartitionMapping
    week_of_day: dg.TimeWindowPartitionMapping

    @staticmethod
    def from_config(cfg: ProjectConfig) -> ForecastMappings:
        fc = settings(cfg).forecast
        horizon = fc.horizon
        return ForecastMappings(
            # Features of day D read sales of [D - lookback + 1, D].
            lookback=trailing(fc.lookback_days),
            # A model for week W learns from the `training_weeks` weeks before W, never W itself.
            training_window=preceding(fc.training_weeks),
            # Day E is forecast by the origins E - horizon .. E - 1.
            forecasts_for_target=preceding(horizon),
            # The gate of week W scores forecasts whose targets lie in the VALIDATION_DAYS days
            # before W: their origins reach back VALIDATION_DAYS + horizon days (whole weeks).
            backtest_origins=preceding(weeks_spanning(VALIDATION_DAYS + horizon)),
            backtest_targets=preceding(weeks_spanning(VALIDATION_DAYS)),
            # The gate of week W continues from its decision for week W - 1.
            previous_week=preceding(1),
            # Forecast day D is served by the gate's decision for its week; a day before the
            # first model week has none (its predictions partition is stored empty).
            week_of_day=overlapping(),
        )
