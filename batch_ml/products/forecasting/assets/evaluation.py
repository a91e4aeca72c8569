"""Stage `evaluation`: accuracy of past forecasts against actuals and two baselines."""

import datetime as dt
import math
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    BRING_UP_TO_DATE,
    TRANSIENT_RETRY,
    BuildContext,
    finite_values_check,
    finite_values_spec,
    measured,
)
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.registry.gate import BASELINE_PREFIX
from batch_ml.platform.resources import ModelStore
from batch_ml.products.forecasting.config import settings
from batch_ml.products.forecasting.features import BASELINE_COLUMNS, SERIES_KEYS
from batch_ml.products.forecasting.metrics import evaluate_forecasts, roll_up
from batch_ml.products.forecasting.partitions import ForecastMappings
from batch_ml.products.forecasting.report import ReportInputs, write_evaluation_report

GROUP = "evaluation"


def _headline(frame: pl.DataFrame) -> dict[str, float]:
    overall = roll_up(frame, ["method"])
    return {
        f"wape_{m}": float(w)
        for m, w in overall.select("method", "wape").iter_rows()
        if w is not None
    }


def build(b: BuildContext) -> list:
    maps = ForecastMappings.from_config(b.cfg)
    horizon = settings(b.cfg).forecast.horizon
    keys = ["forecast_date", "target_date", *SERIES_KEYS]

    @dg.asset(
        name="forecast_accuracy",
        group_name=GROUP,
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"polars"},
        retry_policy=TRANSIENT_RETRY,
        code_version="evaluation-v2",
        automation_condition=BRING_UP_TO_DATE,
        metadata={"partition_column": "target_date"},
        check_specs=[finite_values_spec("forecast_accuracy")],
        ins={
            "predictions": dg.AssetIn(partition_mapping=maps.forecasts_for_target),
            "demand_features": dg.AssetIn(partition_mapping=maps.forecasts_for_target),
            "sales": dg.AssetIn(),
            "products": dg.AssetIn(),
        },
        description=(
            "For each day E whose actuals have arrived: WAPE, MAE, RMSE and bias of the "
            f"forecasts made for E (leads 1..{horizon}) by the champion and by two baselines "
            "computed from the same information (seasonal naive: same weekday last week; "
            "28-day moving average), one row per lead, method, store and product category, "
            "with additive sums (they roll up exactly to any coarser level)."
        ),
    )
    def forecast_accuracy(
        context: dg.AssetExecutionContext,
        predictions: pl.LazyFrame,
        demand_features: pl.LazyFrame,
        sales: pl.LazyFrame,
        products: pl.LazyFrame,
    ):
        days = partition_dates(context)
        with measured(len(days)) as cost:
            baselines = demand_features.select(*keys, *BASELINE_COLUMNS.values())
            forecasts = (
                predictions.join(baselines, on=keys, how="inner")
                .filter(pl.col("target_date").is_in(days))
                .join(_categories(products), on="item_id", how="left")
            )
            frame = evaluate_forecasts(forecasts, sales, groups=("store_id", "category"))
        yield from finite_values_check("forecast_accuracy", frame)
        if len(days) > 1:
            # One run covered many days: record each day's headline numbers as an observation
            # so the UI still plots accuracy per partition.
            for (day,), part in frame.partition_by("target_date", as_dict=True).items():
                context.log_event(
                    dg.AssetObservation(
                        asset_key=context.asset_key,
                        partition=day.isoformat(),
                        metadata=_headline(part),
                    )
                )
        yield dg.Output(
            frame,
            metadata={
                **cost,
                **_headline(frame),
                "days_evaluated": frame["target_date"].n_unique(),
            },
        )

    @dg.asset(
        name="accuracy_report",
        group_name=GROUP,
        kinds={"polars", "html"},
        retry_policy=TRANSIENT_RETRY,
        code_version="report-v2",
        automation_condition=BRING_UP_TO_DATE,
        ins={
            "forecast_accuracy": dg.AssetIn(),
            "predictions": dg.AssetIn(),
            "demand_features": dg.AssetIn(),
            "sales": dg.AssetIn(),
            "prediction_drift": dg.AssetIn(),
            "model_promotion": dg.AssetIn(),
        },
        description=(
            "The evaluation report (data/reports/evaluation_report.html, self-contained, with "
            "PNG plots beside it): accuracy per lead, store and category against the "
            "baselines, error over time with weekly and monthly roll-ups, actual vs forecast "
            "for the largest and worst series, the champion's feature importance, drift (PSI) "
            "and the champion/challenger decisions. The rows are the roll-up per method and "
            "lead; the headline numbers are metadata, so the UI plots them over time."
        ),
    )
    def accuracy_report(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        forecast_accuracy: pl.LazyFrame,
        predictions: pl.LazyFrame,
        demand_features: pl.LazyFrame,
        sales: pl.LazyFrame,
        prediction_drift: pl.LazyFrame,
        model_promotion: pl.LazyFrame,
    ):
        with measured() as cost:
            accuracy = forecast_accuracy.collect()
            if accuracy.is_empty():
                raise dg.Failure("no evaluated days yet: materialize forecast_accuracy first")
            last = accuracy["target_date"].max()
            recent = last - dt.timedelta(days=SERIES_DAYS - 1)
            decisions = model_promotion.collect().sort("model_week")
            champion = decisions["champion_version"][-1] if decisions.height else None
            inputs = ReportInputs(
                accuracy=accuracy,
                series=_lead_one_series(predictions, demand_features, sales, recent, last),
                drift=prediction_drift.select(
                    pl.col("forecast_date").alias("date"), "variable", "psi"
                ).collect(),
                importance=_importance(model_store, champion),
                decisions=decisions.select(
                    pl.col(column).alias(name) for name, column in DECISION_COLUMNS.items()
                ),
            )
            report = write_evaluation_report(inputs, Path(b.cfg.paths.reports))
        headline = {k: v for k, v in report.headline.items() if math.isfinite(v)}
        first = accuracy["target_date"].min()
        return dg.Output(
            report.tables["by_lead"],
            metadata={
                **cost,
                **headline,
                "first_day": str(first),
                "last_day": str(last),
                "champion_version": champion or "",
                "report": dg.MetadataValue.path(str(report.html_path)),
                "summary": dg.MetadataValue.md(_markdown(report.tables["overall"])),
            },
        )

    return [forecast_accuracy, accuracy_report]


SERIES_DAYS = 56  # actual vs forecast plots show the last eight weeks
# The report's names for the gate's columns (forecasting's gate scores are WAPEs).
DECISION_COLUMNS = {
    "model_week": "model_week",
    "challenger_version": "challenger_version",
    "decision": "decision",
    "challenger_wape": "challenger_score",
    "champion_wape": "champion_score",
    "seasonal_naive_wape": "seasonal_naive_score",
    "moving_average_wape": "moving_average_score",
    "champion_version": "champion_version",
    "reason": "reason",
}


def _lead_one_series(
    predictions: pl.LazyFrame,
    features: pl.LazyFrame,
    sales: pl.LazyFrame,
    first: dt.date,
    last: dt.date,
) -> pl.DataFrame:
    """Day-ahead forecasts of every method with the actuals, for target days first..last."""
    keys = ["target_date", *SERIES_KEYS]
    window = pl.col("target_date").is_between(first, last)
    model = predictions.filter(window, pl.col("lead") == 1).select(
        *keys, pl.col("prediction").alias("model")
    )
    baselines = features.filter(window, pl.col("lead") == 1).select(
        *keys, **{m: pl.col(c) for m, c in BASELINE_COLUMNS.items()}
    )
    actual = sales.filter(pl.col("date").is_between(first, last)).select(
        pl.col("date").alias("target_date"), *SERIES_KEYS, pl.col("units").alias("actual")
    )
    loaded = actual.select("target_date").unique()
    return (
        model.join(baselines, on=keys, how="left")
        .join(loaded, on="target_date", how="semi")
        .join(actual, on=keys, how="left")
        .with_columns(pl.col("actual").fill_null(0.0))
        .sort(keys)
        .collect()
    )


def _importance(model_store: ModelStore, champion: str | None) -> pl.DataFrame:
    empty = pl.DataFrame(schema={"feature": pl.String, "gain": pl.Float64})
    if not champion or champion.startswith(BASELINE_PREFIX):
        return empty
    shares = model_store.load_card(champion).get("importance", {})
    return pl.DataFrame(
        {"feature": list(shares), "gain": [float(v) for v in shares.values()]}, schema=empty.schema
    )


def _categories(products: pl.LazyFrame) -> pl.LazyFrame:
    """item_id -> category (null when the product file has no category column)."""
    if "category" in products.collect_schema().names():
        return products.select("item_id", pl.col("category").cast(pl.String)).unique("item_id")
    return products.select("item_id", pl.lit(None, dtype=pl.String).alias("category")).unique()


def _markdown(frame: pl.DataFrame) -> str:
    lines = ["| method | WAPE | MAE | RMSE | bias |", "|---|---|---|---|---|"]
    for r in frame.iter_rows(named=True):
        lines.append(
            f"| {r['method']} | {r['wape']:.3f} | {r['mae']:.3f} | {r['rmse']:.3f} | "
            f"{r['bias']:+.3f} |"
        )
    return "\n".join(lines)
