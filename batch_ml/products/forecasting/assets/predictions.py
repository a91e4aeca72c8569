"""Stage `predictions`: daily batch forecasts written to the warehouse `predictions` view."""

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    BRING_UP_TO_DATE,
    TRANSIENT_RETRY,
    BuildContext,
    measured,
)
from batch_ml.platform.monitoring.drift import MIN_SERIES, PREDICTION, psi_table
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.registry.gate import BASELINE_PREFIX
from batch_ml.platform.registry.model import Model
from batch_ml.platform.resources import ModelStore
from batch_ml.platform.stages import PredictionStage, prediction_asset
from batch_ml.products.forecasting.assets.promotion import policy
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.features import ID_COLUMNS, SERIES_KEYS
from batch_ml.products.forecasting.product import OVERRIDES
from batch_ml.products.forecasting.training import predict, predict_baseline

GROUP = "predictions"
KEYS = list(ID_COLUMNS)
DRIFT_SCHEMA = {
    "forecast_date": pl.Date,
    "model_version": pl.String,
    "variable": pl.String,
    "psi": pl.Float64,
    "rows": pl.Int64,
}


PREDICTION_SCHEMA = {
    "forecast_date": pl.Date,
    "target_date": pl.Date,
    "lead": pl.Int32,
    "store_id": pl.String,
    "item_id": pl.String,
    "prediction": pl.Float64,
}


def _forecast(model: Model | None, served: str, day, inputs) -> pl.DataFrame:
    features = inputs["demand_features"].collect()
    return predict_baseline(features, served) if model is None else predict(model, features, served)


def build(b: BuildContext) -> list:
    horizon = settings(b.cfg).forecast.horizon
    promotion = settings(b.cfg).promotion
    psi_warn = promotion.drift_psi_warn

    def incomplete(frame: pl.DataFrame) -> dict[str, int]:
        leads = frame.group_by("forecast_date", *SERIES_KEYS).len()
        return {"series_missing_leads": leads.filter(pl.col("len") != horizon).height}

    def summary(frame: pl.DataFrame) -> dict:
        return {
            "series": frame.select(SERIES_KEYS).n_unique(),
            "mean_prediction": float(frame["prediction"].mean() or 0.0),
        }

    predictions = prediction_asset(
        b,
        PredictionStage(
            name="predictions",
            gate_asset="model_promotion",
            overrides_asset=OVERRIDES,
            policy=policy(promotion.margin),
            ins={"demand_features": dg.AssetIn()},
            predict=_forecast,
            schema=PREDICTION_SCHEMA,
            partition_column="forecast_date",
            incomplete=incomplete,
            summary=summary,
            kinds=frozenset({"lightgbm", "polars", "duckdb"}),
            description=(
                f"Forecasts made on day D for D+1..D+{horizon} for every active store x item, "
                "by the model that was champion on D (so a backfilled past day reproduces what "
                "was predicted then). Warehouse view `predictions` (read-only for consumers): "
                "forecast_date, target_date, lead, store_id, item_id, prediction, "
                f"model_version. Days before the first model week ({b.parts.first_week}) have "
                "no model and no gate decision: their partitions are stored empty (metadata "
                "`empty_reason`)."
            ),
        ),
    )

    @dg.asset(
        name="prediction_drift",
        group_name=GROUP,
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"polars"},
        retry_policy=TRANSIENT_RETRY,
        code_version="drift-v1",
        automation_condition=BRING_UP_TO_DATE,
        metadata={"partition_column": "forecast_date"},
        ins={"demand_features": dg.AssetIn(), "predictions": dg.AssetIn()},
        check_specs=[
            dg.AssetCheckSpec(
                name,
                asset="prediction_drift",
                description=f"Population stability of the {what} against the champion's "
                f"training data stays below {psi_warn} (WARN).",
            )
            for name, what in (
                ("feature_drift", "model's most important features"),
                ("prediction_drift", "predictions"),
            )
        ],
        description=(
            "Per forecast day: population stability index (PSI) of the champion's most "
            "important features and of its predictions against the model's training data "
            "(decile bins kept in the model card). < 0.1 stable, 0.1-0.25 watch, > 0.25 drift."
        ),
    )
    def prediction_drift(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        demand_features: dict[str, pl.LazyFrame],
        predictions: dict[str, pl.LazyFrame],
    ):
        frames = []
        series_days = []
        with measured(len(context.partition_keys)) as cost:
            for day in partition_dates(context):
                todays = predictions[day.isoformat()].collect()
                series_days.append(todays.select(SERIES_KEYS).n_unique())
                for version in sorted(todays["model_version"].unique().to_list()):
                    if version.startswith(BASELINE_PREFIX):
                        continue  # a baseline has no training data to drift from
                    reference = model_store.load_card(version)["profile"]
                    rows = todays.filter(pl.col("model_version") == version)
                    features = demand_features[day.isoformat()].join(
                        rows.lazy().select(*KEYS, PREDICTION), on=KEYS, how="inner"
                    )
                    frames.append(
                        psi_table(features.collect(), reference).with_columns(
                            forecast_date=pl.lit(day), model_version=pl.lit(version)
                        )
                    )
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=DRIFT_SCHEMA)
        frame = frame.select(DRIFT_SCHEMA.keys())
        worst = frame.group_by("variable").agg(pl.col("psi").max()).sort("psi", descending=True)
        features_worst = worst.filter(pl.col("variable") != PREDICTION)
        prediction_psi = worst.filter(pl.col("variable") == PREDICTION)["psi"].max() or 0.0
        feature_psi = features_worst["psi"].max() or 0.0
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "psi_prediction": float(prediction_psi),
                "psi_max_feature": float(feature_psi),
                "most_drifted_feature": features_worst["variable"][0]
                if features_worst.height
                else "",
            },
        )
        # PSI of a handful of series is noise (empty bins), not drift: recorded, not judged.
        series = min(series_days, default=0)
        judged = series >= MIN_SERIES
        drifted = features_worst.filter(pl.col("psi") > psi_warn) if judged else features_worst[:0]
        note = {} if judged else {"not_judged": f"{series} series a day < {MIN_SERIES}"}
        yield dg.AssetCheckResult(
            check_name="feature_drift",
            passed=drifted.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "psi_max": float(feature_psi),
                "drifted": ", ".join(drifted["variable"].to_list()),
                **note,
            },
        )
        yield dg.AssetCheckResult(
            check_name="prediction_drift",
            passed=not judged or prediction_psi <= psi_warn,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"psi": float(prediction_psi), **note},
        )

    return [predictions, prediction_drift]
