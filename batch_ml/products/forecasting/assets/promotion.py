"""Stage `model`: forecasting's champion/challenger gate (the platform's gate assets with
forecasting's policy and backtest) and the people's overrides (pin, rollback)."""

import datetime as dt
from collections.abc import Mapping, Sequence

import dagster as dg

from batch_ml.platform.common import BuildContext
from batch_ml.platform.registry.assets import ROWS, GateSpec, Scoring, build_gate_assets
from batch_ml.platform.registry.gate import GatePolicy
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.features import BASELINE_COLUMNS
from batch_ml.products.forecasting.partitions import ForecastMappings
from batch_ml.products.forecasting.product import OVERRIDES
from batch_ml.products.forecasting.training import (
    VALIDATION_DAYS,
    backtest_examples,
    backtest_wapes,
    training_examples,
)

GROUP = "model"
REGISTRY = "demand_model"
GATE = "model_promotion"
METRIC = "wape"
# The gate table's columns before they were product-neutral (challenger_wape, ...): a data
# folder written before keeps its old partitions, new ones drop these columns.
OLD_GATE_COLUMNS = (
    "challenger_wape",
    "champion_wape",
    "seasonal_naive_wape",
    "moving_average_wape",
    "champion_after_wape",
)


def policy(margin: float) -> GatePolicy:
    """Lowest backtest WAPE wins; every model must beat both baselines."""
    return GatePolicy(
        metric=METRIC,
        higher_is_better=False,
        baselines=tuple(BASELINE_COLUMNS),
        margin=margin,
        backtest_days=VALIDATION_DAYS,
    )


def backtest_scores(
    scoring: Scoring, week: dt.date, versions: Sequence[str]
) -> Mapping[str, float | int | None]:
    """WAPE of the models and the baselines on the forecasts whose targets fall in the
    backtest days before `week`."""
    examples = backtest_examples(
        training_examples(scoring.inputs["demand_features"], scoring.inputs["sales"], week),
        week,
        days=scoring.policy.backtest_days,
    ).collect()
    models = {v: scoring.load_model(v) for v in versions}
    return {**backtest_wapes(examples, models), ROWS: examples.height}


def build(b: BuildContext) -> list:
    gate_policy = policy(settings(b.cfg).promotion.margin)
    maps = ForecastMappings.from_config(b.cfg)

    def pinnable(row: Mapping) -> bool:
        """The model beat the baselines on its own validation days."""
        baselines = {m: row[f"valid_wape_{m}"] for m in gate_policy.baselines}
        return gate_policy.beats_baselines(row["valid_wape_model"], baselines)

    return build_gate_assets(
        GateSpec(
            policy=gate_policy,
            registry_asset=REGISTRY,
            gate_asset=GATE,
            overrides_asset=OVERRIDES,
            score=backtest_scores,
            ins={
                "demand_features": dg.AssetIn(partition_mapping=maps.backtest_origins),
                "sales": dg.AssetIn(partition_mapping=maps.backtest_targets),
            },
            pinnable=pinnable,
            partitions_def=b.parts.weekly,
            previous_week=maps.previous_week,
            timezone=b.cfg.timezone,
            group=GROUP,
            kinds=frozenset({"lightgbm", "polars"}),
            code_version="promotion-v2",
            schema_changes={"dropped": list(OLD_GATE_COLUMNS)},
        )
    )
