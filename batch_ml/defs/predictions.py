"""Stage `predictions`: daily batch forecasts written to the warehouse `predictions` view."""

import dagster as dg
import polars as pl

from batch_ml.defs.common import BRING_UP_TO_DATE, OWNERS, TRANSIENT_RETRY, BuildContext, measured
from batch_ml.defs.partitions import partition_dates
from batch_ml.defs.resources import ModelStore
from batch_ml.ml.training import load_booster, predict

GROUP = "predictions"


def build(b: BuildContext) -> list:
    horizon = b.cfg.forecast.horizon

    @dg.asset(
        name="predictions",
        group_name=GROUP,
        partitions_def=b.parts.forecast_daily,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
        kinds={"lightgbm", "polars", "duckdb"},
        owners=OWNERS,
        retry_policy=TRANSIENT_RETRY,
        code_version="predictions-v1",
        automation_condition=BRING_UP_TO_DATE,
        metadata={"partition_column": "forecast_date"},
        ins={
            "demand_features": dg.AssetIn(),
            # The daily partition D maps to the weekly model whose week contains D: that model
            # was trained on data before the week began, so it was available on day D.
            "demand_model": dg.AssetIn(),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "finite_and_complete",
                asset="predictions",
                blocking=True,
                description="Every active series has all leads and every prediction is finite.",
            )
        ],
        description=(
            f"Forecasts made on day D for D+1..D+{horizon} for every active store x item, by "
            "the model of D's week. Warehouse view `predictions` (read-only for consumers): "
            "forecast_date, target_date, lead, store_id, item_id, prediction, model_version."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        demand_features: pl.LazyFrame,
        demand_model: pl.LazyFrame,
    ):
        registry = demand_model.collect()
        boosters: dict[str, object] = {}
        frames = []
        with measured() as cost:
            for day in partition_dates(context):
                version = _model_for(registry, day)
                if version not in boosters:
                    boosters[version] = load_booster(model_store.load(version))
                features = demand_features.filter(pl.col("forecast_date") == day).collect()
                frames.append(predict(boosters[version], features, version))
            frame = pl.concat(frames)
        leads = frame.group_by("forecast_date", "store_id", "item_id").len()
        incomplete = leads.filter(pl.col("len") != horizon).height
        non_finite = frame.filter(~pl.col("prediction").is_finite()).height
        if incomplete or non_finite:
            # Raised before the output is stored: a bad forecast never reaches the warehouse.
            raise dg.Failure(
                f"{incomplete} series lack some of the {horizon} leads and {non_finite} "
                "predictions are not finite: nothing was written"
            )
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "series": leads.select("store_id", "item_id").n_unique(),
                "model_versions": ", ".join(sorted(boosters)),
                "mean_prediction": float(frame["prediction"].mean() or 0.0),
            },
        )
        yield dg.AssetCheckResult(
            check_name="finite_and_complete",
            passed=incomplete == 0 and non_finite == 0,
            metadata={"series_missing_leads": incomplete, "non_finite": non_finite},
        )

    return [predictions]


def _model_for(registry: pl.DataFrame, day) -> str:
    """The model whose week started on or before `day` (the latest such week)."""
    usable = registry.filter(pl.col("model_week") <= day).sort("model_week")
    if usable.is_empty():
        raise dg.Failure(f"no trained model is available on {day}")
    return usable["model_version"][-1]
