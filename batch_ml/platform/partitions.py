"""The one place partitions and partition mappings live (assets, jobs, schedules, sensors)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import dagster as dg

from batch_ml.config import ProjectConfig
from batch_ml.products.forecasting.training import VALIDATION_DAYS

# Run tags that make one run cover a range of partitions (what range backfills use).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _next_monday(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


@dataclass(frozen=True)
class Partitioning:
    """Daily source/feature partitions, weekly model partitions, daily forecast partitions."""

    daily: dg.DailyPartitionsDefinition
    weekly: dg.WeeklyPartitionsDefinition
    forecast_daily: dg.DailyPartitionsDefinition
    evaluation_daily: dg.DailyPartitionsDefinition
    lookback: dg.TimeWindowPartitionMapping
    training_window: dg.TimeWindowPartitionMapping
    forecasts_for_target: dg.TimeWindowPartitionMapping
    backtest_origins: dg.TimeWindowPartitionMapping
    backtest_targets: dg.TimeWindowPartitionMapping
    previous_week: dg.TimeWindowPartitionMapping
    # Backfill batching (`[backfill]` in the project config): daily and weekly assets.
    daily_backfill: dg.BackfillPolicy
    weekly_backfill: dg.BackfillPolicy

    @staticmethod
    def from_config(cfg: ProjectConfig) -> Partitioning:
        end = cfg.end_date.isoformat() if cfg.end_date else None
        tz = cfg.timezone
        first_week = cfg.first_model_week
        horizon = cfg.forecast.horizon
        return Partitioning(
            daily=dg.DailyPartitionsDefinition(
                start_date=cfg.start_date.isoformat(), end_date=end, timezone=tz
            ),
            # Mondays; the last week is the one holding the last day, so every forecast day has
            # a model and no week is left that nothing needs. A week's model learns only from
            # data before the week, so the running week exists (end_offset=1): without an end
            # date, Dagster would create it only once the week is over.
            weekly=dg.WeeklyPartitionsDefinition(
                start_date=first_week.isoformat(),
                day_offset=1,
                timezone=tz,
                end_offset=1,
                end_date=_next_monday(cfg.end_date).isoformat() if cfg.end_date else None,
            ),
            forecast_daily=dg.DailyPartitionsDefinition(
                start_date=first_week.isoformat(), end_date=end, timezone=tz
            ),
            # Target days with at least one forecast: the first forecast day is nobody's target.
            evaluation_daily=dg.DailyPartitionsDefinition(
                start_date=(first_week + dt.timedelta(days=1)).isoformat(),
                end_date=end,
                timezone=tz,
            ),
            # Features of day D read sales of [D - lookback + 1, D].
            lookback=dg.TimeWindowPartitionMapping(
                start_offset=-(cfg.forecast.lookback_days - 1),
                allow_nonexistent_upstream_partitions=True,
            ),
            # A model for week W learns from the `training_weeks` weeks before W, never W itself.
            training_window=dg.TimeWindowPartitionMapping(
                start_offset=-cfg.forecast.training_weeks,
                end_offset=-1,
                allow_nonexistent_upstream_partitions=True,
            ),
            # Day E is forecast by the origins E - horizon .. E - 1.
            forecasts_for_target=dg.TimeWindowPartitionMapping(
                start_offset=-horizon, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
            # The gate of week W scores forecasts whose targets lie in the VALIDATION_DAYS days
            # before W: their origins reach back VALIDATION_DAYS + horizon days (whole weeks).
            backtest_origins=dg.TimeWindowPartitionMapping(
                start_offset=-math.ceil((VALIDATION_DAYS + horizon) / 7),
                end_offset=-1,
                allow_nonexistent_upstream_partitions=True,
            ),
            backtest_targets=dg.TimeWindowPartitionMapping(
                start_offset=-math.ceil(VALIDATION_DAYS / 7),
                end_offset=-1,
                allow_nonexistent_upstream_partitions=True,
            ),
            # The gate of week W continues from its decision for week W - 1.
            previous_week=dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
            daily_backfill=dg.BackfillPolicy.multi_run(cfg.backfill.days_per_run),
            weekly_backfill=dg.BackfillPolicy.multi_run(cfg.backfill.weeks_per_run),
        )


def partition_dates(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days (or week starts) a run materializes: one, or a whole range in a backfill."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]
