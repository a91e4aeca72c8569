"""The sentiment chain after the predictions: accuracy on the day's arriving labels, the
per-product roll-up, drift of the text and of the predicted class mix, and the report."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    BRING_UP_TO_DATE,
    TRANSIENT_RETRY,
    BuildContext,
    measured,
)
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.registry.gate import BASELINE_PREFIX
from batch_ml.platform.resources import ModelStore
from batch_ml.platform.stages import DailyStage, product_assets
from batch_ml.products.sentiment import model as sentiment_model
from batch_ml.products.sentiment.assets.pipeline import FEATURES, GATE, PREDICTIONS, REGISTRY
from batch_ml.products.sentiment.config import settings
from batch_ml.products.sentiment.evaluation import accuracy_schema, day_accuracy
from batch_ml.products.sentiment.partitions import SentimentMappings
from batch_ml.products.sentiment.report import write_report
from batch_ml.products.sentiment.rollup import daily_counts, product_sentiment
from batch_ml.products.sentiment.sources import ARRIVAL, LABELLED, LABELS

ACCURACY = "sentiment_accuracy"
ROLLUP = "product_sentiment"
DRIFT = "sentiment_drift"
REPORT = "sentiment_report"
DECISION_COLUMNS = (
    "model_week",
    "challenger_version",
    "decision",
    "challenger_score",
    "champion_score",
    "lexicon_score",
    "majority_score",
    "champion_version",
    "reason",
)
DRIFT_SCHEMA = {
    ARRIVAL: pl.Date,
    "model_version": pl.String,
    "variable": pl.String,
    "psi": pl.Float64,
    "value": pl.Float64,
    "rows": pl.Int64,
}


def build(b: BuildContext) -> list:
    sc = settings(b.cfg)
    classes = sc.sentiment.classes
    maps = SentimentMappings.from_config(b.cfg)
    psi_warn = sc.promotion.drift_psi_warn

    def accuracy(days: list[dt.date], inputs) -> pl.DataFrame:
        labels = inputs[LABELS].collect()
        predictions, features = inputs[PREDICTIONS].collect(), inputs[FEATURES].collect()
        registry = inputs[REGISTRY].collect()
        frames = [
            day_accuracy(
                day,
                labels.filter(pl.col(LABELLED) == day),
                predictions,
                features,
                registry,
                classes,
            )
            for day in days
        ]
        return pl.concat([pl.DataFrame(schema=accuracy_schema(classes)), *frames])

    def rollup(days: list[dt.date], inputs) -> pl.DataFrame:
        counts = daily_counts(inputs[PREDICTIONS].collect(), ARRIVAL)
        return pl.concat([product_sentiment(counts, day, sc.trend) for day in days])

    stages = [
        DailyStage(
            name=ACCURACY,
            stage="evaluation",
            ins={
                LABELS: dg.AssetIn(),
                PREDICTIONS: dg.AssetIn(partition_mapping=maps.labelled_days),
                FEATURES: dg.AssetIn(partition_mapping=maps.labelled_days),
                REGISTRY: dg.AssetIn(partition_mapping=maps.labelled_weeks),
            },
            compute=accuracy,
            partition_column=LABELLED,
            description=(
                "Per day D, on the labels that arrived on D (their reviews arrived up to "
                f"{sc.sentiment.label_lag_days} days earlier and were scored then): macro-F1, "
                "accuracy, per-class precision/recall/F1 and the confusion counts "
                "(n_<true>_as_<predicted>) of the served predictions and of the baselines "
                "(lexicon, majority class) on the same reviews. Scores of any window are those "
                "of its summed counts."
            ),
        ),
        DailyStage(
            name=ROLLUP,
            stage="evaluation",
            ins={PREDICTIONS: dg.AssetIn(partition_mapping=maps.trend_days)},
            compute=rollup,
            partition_column="day",
            description=(
                "Per product reviewed on day D: reviews, share negative, the share over the "
                f"last {sc.trend.recent_days} days vs the {sc.trend.baseline_days} before, and "
                "`negative_rising`: a one-sided two-proportion z-test with p < "
                f"{sc.trend.alpha} and at least {sc.trend.min_reviews} reviews in each window."
            ),
        ),
    ]

    @dg.asset(
        name=DRIFT,
        group_name="predictions",
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds={"polars"},
        retry_policy=TRANSIENT_RETRY,
        code_version="sentiment-drift-v1",
        automation_condition=BRING_UP_TO_DATE,
        metadata={"partition_column": ARRIVAL},
        ins={FEATURES: dg.AssetIn(), PREDICTIONS: dg.AssetIn()},
        check_specs=[
            dg.AssetCheckSpec(
                "text_drift",
                asset=DRIFT,
                description=f"Population stability of text length, word count and the "
                f"predicted class mix against the champion's training data stays below "
                f"{psi_warn} (WARN).",
            )
        ],
        description=(
            "Per day and serving model: PSI of text length, word count and the predicted class "
            "mix against the model's training data, and the unknown-token rate (the share of "
            "the day's word n-grams the model never saw in training; `value`, with the "
            "training window's own rate as reference in the card)."
        ),
    )
    def sentiment_drift(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        review_features: dict[str, pl.LazyFrame],
        review_sentiment: dict[str, pl.LazyFrame],
    ):
        frames = []
        with measured(len(context.partition_keys)) as cost:
            for day in partition_dates(context):
                scored = review_sentiment[day.isoformat()].collect()
                features = review_features[day.isoformat()].collect()
                for version in sorted(scored["model_version"].unique().to_list()):
                    if version.startswith(BASELINE_PREFIX):
                        continue  # a baseline has no training data to drift from
                    card = model_store.load_card(version)
                    rows = features.join(
                        scored.filter(pl.col("model_version") == version).select(
                            "review_id", "label"
                        ),
                        on="review_id",
                    )
                    frames.append(
                        sentiment_model.drift_rows(rows, card, classes).with_columns(
                            pl.lit(day).alias(ARRIVAL), pl.lit(version).alias("model_version")
                        )
                    )
        frame = pl.concat([pl.DataFrame(schema=DRIFT_SCHEMA), *frames], how="diagonal_relaxed")
        frame = frame.select(list(DRIFT_SCHEMA))
        worst = frame.filter(pl.col("psi").is_not_null()).sort("psi", descending=True)
        drifted = worst.filter(pl.col("psi") > psi_warn)
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "psi_max": float(worst["psi"].max() or 0.0),
                "most_drifted": worst["variable"][0] if worst.height else "",
            },
        )
        yield dg.AssetCheckResult(
            check_name="text_drift",
            passed=drifted.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "psi_max": float(worst["psi"].max() or 0.0),
                "drifted": ", ".join(sorted(set(drifted["variable"].to_list()))),
            },
        )

    @dg.asset(
        name=REPORT,
        group_name="evaluation",
        kinds={"html", "polars"},
        retry_policy=TRANSIENT_RETRY,
        code_version="sentiment-report-v1",
        automation_condition=BRING_UP_TO_DATE,
        ins={
            ACCURACY: dg.AssetIn(),
            ROLLUP: dg.AssetIn(),
            DRIFT: dg.AssetIn(),
            GATE: dg.AssetIn(),
        },
        description=(
            "data/reports/sentiment_report.html (self-contained, PNG plots beside it): "
            "macro-F1 and per-class precision/recall/F1 of the served model and the baselines "
            "over every evaluated day and per week, the confusion matrix, the gate's decisions, "
            "products whose negative share rose, drift. Rows: the scores per scorer; the "
            "headline numbers are metadata, so the UI plots them over time."
        ),
    )
    def sentiment_report(
        context: dg.AssetExecutionContext,
        sentiment_accuracy: pl.LazyFrame,
        product_sentiment: pl.LazyFrame,
        sentiment_drift: pl.LazyFrame,
        review_gate: pl.LazyFrame,
    ):
        with measured() as cost:
            decisions = review_gate.collect()
            report = write_report(
                sentiment_accuracy.collect(),
                product_sentiment.collect(),
                sentiment_drift.collect(),
                decisions.sort("model_week").select(DECISION_COLUMNS)
                if decisions.width
                else decisions,
                classes,
                Path(b.cfg.paths.reports),
            )
        if report.overall.is_empty():
            raise dg.Failure(f"no labelled reviews evaluated yet: materialize {ACCURACY} first")
        champion = (
            decisions.sort("model_week")["champion_version"][-1] if decisions.height else None
        )
        return dg.Output(
            report.overall,
            metadata={
                **cost,
                **report.headline,
                "champion_version": champion or "",
                "report": dg.MetadataValue.path(str(report.html_path)),
            },
        )

    return [*product_assets(b, stages), sentiment_drift, sentiment_report]
