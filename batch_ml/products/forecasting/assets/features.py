"""Stage `features`: point-in-time features per forecast origin, series and lead."""

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    TRANSIENT_RETRY,
    BuildContext,
    finite_values_check,
    finite_values_spec,
    measured,
)
from batch_ml.platform.partitions import partition_dates
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.features import build_features
from batch_ml.products.forecasting.partitions import ForecastMappings

GROUP = "features"


def build(b: BuildContext) -> list:
    maps = ForecastMappings.from_config(b.cfg)
    fc = settings(b.cfg).forecast
    f = settings(b.cfg).features

    @dg.asset(
        name="demand_features",
        group_name=GROUP,
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"polars"},
        retry_policy=TRANSIENT_RETRY,
        code_version="features-v1",
        metadata={"partition_column": "forecast_date"},
        check_specs=[finite_values_spec("demand_features")],
        ins={
            "sales": dg.AssetIn(partition_mapping=maps.lookback),
            "plans": dg.AssetIn(),
            "calendar": dg.AssetIn(),
            "products": dg.AssetIn(),
            "stores": dg.AssetIn(),
        },
        description=(
            "One row per forecast origin D, active series and lead 1..horizon with features "
            "known at the end of D: lags, same-weekday lags, rolling statistics over the "
            f"{fc.lookback_days}-day lookback (a partition mapping on `sales`), "
            "calendar, planned price/promotion, store and product attributes, and the two "
            "baseline forecasts (seasonal naive, 28-day moving average)."
        ),
    )
    def demand_features(
        context: dg.AssetExecutionContext,
        sales: pl.LazyFrame,
        plans: pl.LazyFrame,
        calendar: pl.LazyFrame,
        products: pl.LazyFrame,
        stores: pl.LazyFrame,
    ):
        days = partition_dates(context)
        with measured(len(context.partition_keys)) as cost:
            frame = build_features(
                sales,
                days[0],
                days[-1],
                fc.horizon,
                fc.lookback_days,
                plans=plans,
                calendar=calendar,
                products=products.collect(),
                stores=stores.collect(),
                known_in_advance=f.known_in_advance,
                calendar_columns=f.calendar,
                product_attributes=f.product_attributes,
                store_attributes=f.store_attributes,
            ).collect()
        yield from finite_values_check("demand_features", frame)
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "series": frame.select("store_id", "item_id").n_unique(),
                "feature_count": frame.width - 5,
            },
        )

    return [demand_features]
