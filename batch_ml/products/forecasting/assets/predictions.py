"""Stage `predictions`: daily batch forecasts written to the warehouse `predictions` view."""

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    BRING_UP_TO_DATE,
    TRANSIENT_RETRY,
    BuildContext,
    bring_up_to_date_ignoring,
    measured,
)
from batch_ml.platform.monitoring.drift import MIN_SERIES, PREDICTION, psi_table
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.registry.assets import gate_schema, read_overrides
from batch_ml.platform.registry.gate import UndecidedWeekError, serving_version
from batch_ml.platform.registry.model import Model
from batch_ml.platform.resources import ModelStore, TableStore
from batch_ml.products.forecasting.assets.promotion import policy
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.features import ID_COLUMNS, SERIES_KEYS
from batch_ml.products.forecasting.partitions import ForecastMappings
from batch_ml.products.forecasting.product import OVERRIDES
from batch_ml.products.forecasting.training import BASELINE_PREFIX, predict, predict_baseline

GROUP = "predictions"
KEYS = list(ID_COLUMNS)
DRIFT_SCHEMA = {
    "forecast_date": pl.Date,
    "model_version": pl.String,
    "variable": pl.String,
    "psi": pl.Float64,
    "rows": pl.Int64,
}


def no_predictions(features: pl.DataFrame) -> pl.DataFrame:
    """The predictions' columns, no rows (a day no gate decision can serve)."""
    return (
        features.select(ID_COLUMNS)
        .clear()
        .with_columns(prediction=pl.lit(None, pl.Float64), model_version=pl.lit(None, pl.String))
    )


def build(b: BuildContext) -> list:
    maps = ForecastMappings.from_config(b.cfg)
    horizon = settings(b.cfg).forecast.horizon
    promotion = settings(b.cfg).promotion
    first_week = b.parts.first_week

    @dg.asset(
        name="predictions",
        group_name=GROUP,
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"lightgbm", "polars", "duckdb"},
        retry_policy=TRANSIENT_RETRY,
        code_version="predictions-v1",
        automation_condition=bring_up_to_date_ignoring(OVERRIDES),
        metadata={"partition_column": "forecast_date"},
        ins={
            "demand_features": dg.AssetIn(),
            # The daily partition D maps to the gate's decision for the week that contains D
            # (made from data before the week began); overrides effective up to D apply on top.
            "model_promotion": dg.AssetIn(partition_mapping=maps.week_of_day),
        },
        deps=[OVERRIDES],
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
            "the model that was champion on D (so a backfilled past day reproduces what was "
            "predicted then). Warehouse view `predictions` (read-only for consumers): "
            "forecast_date, target_date, lead, store_id, item_id, prediction, model_version. "
            f"Days before the first model week ({first_week}) have no model and no gate "
            "decision: their partitions are stored empty (metadata `empty_reason`)."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        tables: TableStore,
        demand_features: dict[str, pl.LazyFrame],
        model_promotion: pl.LazyFrame,
    ):
        gate = model_promotion.collect()
        if not gate.width:  # no week decided yet: nothing stored to read
            gate = pl.DataFrame(schema=gate_schema(policy(promotion.margin)))
        overrides = read_overrides(tables, OVERRIDES)
        boosters: dict[str, Model] = {}
        frames = []
        empty_days = 0
        with measured(len(context.partition_keys)) as cost:
            for day in partition_dates(context):
                if day < first_week:
                    empty_days += 1
                    frames.append(no_predictions(demand_features[day.isoformat()].collect()))
                    continue
                try:
                    version = serving_version(gate, overrides, day, BASELINE_PREFIX)
                except UndecidedWeekError as exc:
                    # Waiting would not help: the week's model and gate must be run. Earlier
                    # steps of the run (the day's sources and features) stay stored.
                    raise dg.Failure(
                        f"{exc}: predictions of {day} need it; run {b.product.training_job} for "
                        f"the week of {day}, then this day again",
                        allow_retries=False,
                    ) from exc
                features = demand_features[day.isoformat()].collect()
                if version.startswith(BASELINE_PREFIX):
                    frames.append(predict_baseline(features, version))
                    continue
                if version not in boosters:
                    boosters[version] = model_store.load(version)
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
        empty = {"empty_days": empty_days}
        if empty_days:
            empty["empty_reason"] = f"before the first model week {first_week}"
        yield dg.Output(
            frame,
            metadata={
                **cost,
                **empty,
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

    psi_warn = promotion.drift_psi_warn

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
