"""A product's partitions: one daily and one weekly definition, window mappings between them,
and backfill batching. A product builds its own mappings from these helpers (e.g. "the 8
weeks before a model week"); this module knows no product."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import dagster as dg

from batch_ml.config import ProjectConfig, next_monday

# Run tags that make one run cover a range of partitions (what range backfills use).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DAYS_PER_WEEK = 7


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """The tags of one run over the partitions `first`..`last`."""
    return {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}


def week_of(day: dt.date) -> dt.date:
    """The Monday that starts the week holding `day` (its weekly partition key)."""
    return day - dt.timedelta(days=day.weekday())


def weeks_spanning(days: int) -> int:
    """Whole weeks that hold `days` days."""
    return math.ceil(days / DAYS_PER_WEEK)


def window(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    """The upstream partitions from `start_offset` to `end_offset` downstream periods around
    the downstream partition's time window; those before the upstream's first partition are
    left out (not an error), so the first days or weeks read what exists."""
    return dg.TimeWindowPartitionMapping(
        start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
    )


def trailing(periods: int) -> dg.TimeWindowPartitionMapping:
    """The partition itself and the `periods - 1` before it (a lookback)."""
    return window(-(periods - 1), 0)


def preceding(periods: int) -> dg.TimeWindowPartitionMapping:
    """The `periods` partitions before the partition, not the partition itself."""
    return window(-periods, -1)


def overlapping() -> dg.TimeWindowPartitionMapping:
    """The upstream partitions overlapping the partition (a day -> its week); none for a day
    before the upstream's first week."""
    return window(0, 0)


@dataclass(frozen=True)
class Partitioning:
    """Every daily asset of a product shares `daily` (so one run or one backfill run covers a
    day's whole chain), every weekly asset `weekly`; the batching of backfill runs."""

    daily: dg.DailyPartitionsDefinition
    weekly: dg.WeeklyPartitionsDefinition
    # Backfill batching (`[backfill]` in the project config): daily and weekly assets.
    daily_backfill: dg.BackfillPolicy
    weekly_backfill: dg.BackfillPolicy

    @property
    def first_week(self) -> dt.date:
        """The first weekly partition's start (even when the days end before it)."""
        return self.weekly.start.date()

    @staticmethod
    def from_config(cfg: ProjectConfig, first_week: dt.date) -> Partitioning:
        """Days from the project's start date; weeks from `first_week` (a Monday: the
        product's first week with enough history for a model)."""
        end = cfg.end_date.isoformat() if cfg.end_date else None
        tz = cfg.timezone
        return Partitioning(
            daily=dg.DailyPartitionsDefinition(
                start_date=cfg.start_date.isoformat(), end_date=end, timezone=tz
            ),
            # Mondays; the last week is the one holding the last day, so every day from the
            # first week on has its week and no week is left that no day needs. A week's
            # model learns only from data before the week, so the running week exists
            # (end_offset=1): without an end date, Dagster would create it only once over.
            weekly=dg.WeeklyPartitionsDefinition(
                start_date=first_week.isoformat(),
                day_offset=1,
                timezone=tz,
                end_offset=1,
                end_date=next_monday(cfg.end_date).isoformat() if cfg.end_date else None,
            ),
            daily_backfill=dg.BackfillPolicy.multi_run(cfg.backfill.days_per_run),
            weekly_backfill=dg.BackfillPolicy.multi_run(cfg.backfill.weeks_per_run),
        )


def partition_dates(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days (or week starts) a run materializes: one, or a whole range in a backfill."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]
