"""Stage `evaluation`: accuracy of past forecasts against actuals and two baselines."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.defs.common import BRING_UP_TO_DATE, OWNERS, TRANSIENT_RETRY, BuildContext, measured
from batch_ml.defs.partitions import partition_dates
from batch_ml.ml.features import BASELINE_COLUMNS, SERIES_KEYS
from batch_ml.ml.metrics import evaluate_forecasts, roll_up
from batch_ml.reports.accuracy import write_accuracy_report

GROUP = "evaluation"


def _headline(frame: pl.DataFrame) -> dict[str, float]:
    overall = roll_up(frame, ["method"])
    return {
        f"wape_{m}": float(w)
        for m, w in overall.select("method", "wape").iter_rows()
        if w is not None
    }


def build(b: BuildContext) -> list:
    horizon = b.cfg.forecast.horizon
    keys = ["forecast_date", "target_date", *SERIES_KEYS]

    @dg.asset(
        name="forecast_accuracy",
        group_name=GROUP,
        partitions_def=b.parts.evaluation_daily,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
        kinds={"polars"},
        owners=OWNERS,
        retry_policy=TRANSIENT_RETRY,
        code_version="evaluation-v1",
        automation_condition=BRING_UP_TO_DATE,
        metadata={"partition_column": "target_date"},
        ins={
            "predictions": dg.AssetIn(partition_mapping=b.parts.forecasts_for_target),
            "demand_features": dg.AssetIn(partition_mapping=b.parts.forecasts_for_target),
            "sales": dg.AssetIn(),
        },
        description=(
            "For each day E whose actuals have arrived: WAPE, MAE, RMSE and bias of the "
            f"forecasts made for E (leads 1..{horizon}) by the model and by two baselines "
            "computed from the same information (seasonal naive: same weekday last week; "
            "28-day moving average), one row per lead and method, with additive sums."
        ),
    )
    def forecast_accuracy(
        context: dg.AssetExecutionContext,
        predictions: pl.LazyFrame,
        demand_features: pl.LazyFrame,
        sales: pl.LazyFrame,
    ):
        days = partition_dates(context)
        with measured() as cost:
            baselines = demand_features.select(*keys, *BASELINE_COLUMNS.values())
            forecasts = predictions.join(baselines, on=keys, how="inner").filter(
                pl.col("target_date").is_in(days)
            )
            frame = evaluate_forecasts(forecasts, sales)
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
        return dg.Output(
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
        owners=OWNERS,
        retry_policy=TRANSIENT_RETRY,
        code_version="report-v1",
        automation_condition=BRING_UP_TO_DATE,
        ins={"forecast_accuracy": dg.AssetIn()},
        description=(
            "Roll-up of all evaluated days: accuracy per method, per lead, per week and per "
            "month, written as an HTML report under data/reports/ and as a table."
        ),
    )
    def accuracy_report(context: dg.AssetExecutionContext, forecast_accuracy: pl.LazyFrame):
        daily = forecast_accuracy.collect()
        if daily.is_empty():
            raise dg.Failure("no evaluated days yet: materialize forecast_accuracy first")
        report_dir = Path(b.cfg.paths.reports)
        path, tables = write_accuracy_report(daily, report_dir)
        overall = tables["overall"]
        headline = _headline(daily)
        first, last = daily["target_date"].min(), daily["target_date"].max()
        return dg.Output(
            tables["by_lead"],
            metadata={
                **headline,
                "first_day": str(first),
                "last_day": str(last),
                "days": (last - first).days + 1 if isinstance(first, dt.date) else 0,
                "report": dg.MetadataValue.path(str(path)),
                "summary": dg.MetadataValue.md(_markdown(overall)),
            },
        )

    return [forecast_accuracy, accuracy_report]


def _markdown(frame: pl.DataFrame) -> str:
    lines = ["| method | WAPE | MAE | RMSE | bias |", "|---|---|---|---|---|"]
    for r in frame.iter_rows(named=True):
        lines.append(
            f"| {r['method']} | {r['wape']:.3f} | {r['mae']:.3f} | {r['rmse']:.3f} | "
            f"{r['bias']:+.3f} |"
        )
    return "\n".join(lines)
